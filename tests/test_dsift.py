"""DSIFT: values and frames against VLFeat's vl_dsift, gradients, and properties that need no reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import grey, stats

from preimage.errors import PreimageError
from preimage.representations import load
from preimage.representations.dsift import DSIFT


@pytest.fixture(scope="module")
def vl_dsift():
    return pytest.importorskip("cyvlfeat.sift", reason="VLFeat reference needs libvlfeat-dev and cyvlfeat").dsift


def vlfeat_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """VLFeat's vl_fast_atan2_f (error up to ~0.005 rad), to check the rest of the pipeline exactly."""
    ay = y.abs() + 1.1920929e-07
    r = torch.where(x >= 0, (x - ay) / (x + ay), (x + ay) / (ay - x))
    a = torch.where(x >= 0, math.pi / 4, 3 * math.pi / 4) + (0.1821 * r * r - 0.9675) * r
    return torch.where(y < 0, -a, a)


def reference(vl_dsift, im: np.ndarray, b: int, fast: bool, window_size: float) -> tuple[np.ndarray, np.ndarray]:
    """VLFeat frames (F×2, rows/cols) and float descriptors (F×128) on our frames: upper-left bin centre at
    b−1 and every bin's pooling support inside the image."""
    h, w = im.shape
    frames, d = vl_dsift(im, step=3 * b, size=b, bounds=[b - 1, b - 1, h - b, w - b], window_size=window_size,
                         fast=fast, float_descriptors=True)
    return frames, d / 512.0  # cyvlfeat scales descriptors by 512 (and clips at 255, never reached here)


def flat(net: DSIFT, im: np.ndarray, unnormalized: bool = False) -> np.ndarray:
    x = torch.from_numpy(im)[None, None]
    y = net.unnormalized(x) if unnormalized else net(x)
    return y[0].permute(1, 2, 0).reshape(-1, y.shape[1]).numpy()  # frames in row-major order, as VLFeat


def vlfeat_postprocess(d: np.ndarray) -> np.ndarray:
    """VLFeat's normalize, clamp at 0.2, renormalize."""
    d = d / (np.linalg.norm(d, axis=1, keepdims=True) + 1.19e-7)
    d = np.minimum(d, 0.2)
    return d / (np.linalg.norm(d, axis=1, keepdims=True) + 1.19e-7)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_matches_vlfeat_gaussian_window(vl_dsift, monkeypatch, name: str) -> None:
    im = grey(name)[30:190, 50:250]  # 160×200 → 6×7 descriptors
    frames, ref = reference(vl_dsift, im, 8, fast=False, window_size=2.0)
    net = DSIFT(8, window="pixel", window_size=2.0, renormalize=True)
    ys, xs = net.centers(*im.shape)
    assert len(frames) == len(ys) * len(xs) == 42
    assert np.array_equal(frames, np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2))
    corr, rel = stats(flat(net, im), ref)
    assert corr > 0.9999 and rel < 1e-2, (corr, rel)  # what's left is VLFeat's approximate atan2 ...
    monkeypatch.setattr(torch, "atan2", vlfeat_atan2)
    corr, rel = stats(flat(net, im), ref)
    assert rel < 2e-5, rel  # ... with it, the two agree to float rounding


def test_paper_window_against_vlfeat_fast(vl_dsift, monkeypatch) -> None:
    # dsift_net weights each bin by the Gaussian at its centre; VLFeat's fast mode by the Gaussian's mean
    # over the bin's (2b−1)-pixel window. Otherwise the two are the same descriptor.
    im = grey("astronaut")[100:260, 100:300]
    _, ref = reference(vl_dsift, im, 8, fast=True, window_size=1.5)
    net = DSIFT(8)  # the paper's: bin window, σ = 1.5 bins, no renormalization after the clamp
    paper = flat(net, im)
    # Without VLFeat's renormalization the descriptors are shorter than 1 by a per-descriptor factor.
    assert stats(paper, ref)[0] > 0.97
    renorm = flat(DSIFT(8, renormalize=True), im)
    assert np.allclose(renorm, paper / np.linalg.norm(paper, axis=1, keepdims=True), atol=1e-6)
    corr, rel = stats(renorm, ref)
    assert corr > 0.998 and rel < 0.04, (corr, rel)
    monkeypatch.setattr(torch, "atan2", vlfeat_atan2)
    x = np.arange(-7, 8)
    mean_w = np.array([np.exp(-0.5 * ((x - 8 * (i - 1.5)) / 12) ** 2).mean() for i in range(4)])
    point_w = np.exp(-0.5 * ((8 * (np.arange(4) - 1.5)) / 12) ** 2)
    ratio = np.repeat(np.outer(mean_w / point_w, mean_w / point_w).ravel(), 8)  # channel 32·by + 8·bx + t
    assert stats(vlfeat_postprocess(flat(net, im, unnormalized=True) * ratio), ref)[1] < 2e-5


def test_shapes_dtypes_batch_and_registry() -> None:
    x = torch.rand(2, 1, 64, 90, dtype=torch.float64) * 255
    net = DSIFT(8)
    assert net.support == 39 and net.dim == 128
    y = net(x)
    assert y.shape == (2, 128, 2, 3) and y.dtype == torch.float64
    assert torch.allclose(net(x[1:]), y[1:], atol=1e-12)
    assert torch.allclose(net(x.float()).double(), y, atol=1e-5)
    assert y.max() <= 0.2 and torch.all(y >= 0)
    assert torch.all((y * y).sum(1) <= 1 + 1e-9)
    assert DSIFT(5, step=2)(x).shape == (2, 128, 21, 34)
    rep = load("dsift")
    img = torch.rand(2, 1, 64, 64) * 255
    assert rep.channels == 1 and torch.allclose(rep(img), DSIFT(8)(img))
    assert rep(img).shape == (2, 128, 2, 2)
    assert load("dsift", cell_size=4, step=4)(img).shape == (2, 128, 12, 12)
    with pytest.raises(PreimageError):
        net(torch.rand(1, 1, 38, 60))
    with pytest.raises(PreimageError):
        net(torch.rand(1, 3, 64, 64))


def test_vertical_edge_fills_orientation_zero() -> None:
    x = torch.zeros(1, 1, 39, 39)
    x[..., 20:] = 200.0  # gradient along +x: orientation 0 of the two middle bin columns
    d = DSIFT(8)(x)[0, :, 0, 0].view(4, 4, 8)  # (by, bx, t)
    assert torch.all(d[:, 1:3, 0] > 0.05) and torch.all(d[:, :, 1:].abs() < 1e-6)
    assert torch.all(d[:, 0, 0] < d[:, 1, 0])
    d = DSIFT(8)(200.0 - x)[0, :, 0, 0].view(4, 4, 8)
    assert torch.all(d[:, 1:3, 4] > 0.05) and d[:, :, :4].abs().max() < 1e-6  # bright left: t = 4 (180°)


def test_translation_by_one_step_shifts_the_map() -> None:
    torch.manual_seed(0)
    big = torch.rand(1, 1, 100, 172) * 255
    a, b = big[..., :, :148], big[..., :, 24:]
    ya, yb = DSIFT(8)(a), DSIFT(8)(b)
    assert ya.shape == yb.shape == (1, 128, 3, 5)
    # Descriptors whose support avoids the image's first and last column (one-sided gradients there).
    assert torch.allclose(ya[..., 2:], yb[..., 1:-1], atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"window": "pixel", "renormalize": True}])
def test_gradcheck(kw: dict) -> None:
    torch.manual_seed(2)
    x = (torch.rand(1, 1, 23, 27, dtype=torch.float64) * 255).requires_grad_()
    net = DSIFT(4, step=4, **kw)
    assert net(x).shape == (1, 128, 2, 3)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradient_is_finite_on_flat_and_step_images() -> None:
    x = torch.full((2, 1, 40, 40), 100.0)
    x[1, :, :, 20:] = 0.0
    xv = x.requires_grad_()
    y = DSIFT(8)(xv)
    (g,) = torch.autograd.grad((y * torch.rand_like(y)).sum(), xv)
    assert torch.isfinite(g).all() and torch.all(y[0] == 0)
