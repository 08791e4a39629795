"""HOG / HOGb: values against VLFeat's vl_hog (UoCTTI), gradients, and properties that need no reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import grey, stats

from preimage.errors import PreimageError
from preimage.representations import load
from preimage.representations.hog import HOG, orientation_histogram


@pytest.fixture(scope="module")
def vl_hog():
    return pytest.importorskip("cyvlfeat.hog", reason="VLFeat reference needs libvlfeat-dev and cyvlfeat").hog


def ours(im: np.ndarray, variant: str, **kw: object) -> np.ndarray:
    """Our features as H×W×D, VLFeat's layout in cyvlfeat."""
    out = HOG(8, variant, texture=True, **kw)(torch.from_numpy(im)[None, None])
    return out[0].permute(1, 2, 0).numpy()


# Rel. error reached: ~1e-7 (hog: same float32 arithmetic), ~1e-5 (hogb: acos in VLFeat, atan2 here).
@pytest.mark.parametrize("variant,tol", [("hog", 1e-6), ("hogb", 1e-4)])
@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera"])  # camera: 8-bit, exact ties
def test_matches_vlfeat_on_all_cells(vl_hog, name: str, variant: str, tol: float) -> None:
    im = grey(name)[40:168, 60:220]  # 128×160: H, W multiples of the cell, so both grids are 16×20
    ref = vl_hog(im, 8, variant="UoCTTI", bilinear_interpolation=variant == "hogb")
    got = ours(im, variant)
    assert got.shape == ref.shape == (16, 20, 31)
    corr, rel = stats(got, ref)
    assert corr > 0.99999 and rel < tol, (corr, rel)
    corr, rel = stats(got[1:-1, 1:-1], ref[1:-1, 1:-1])
    assert corr > 0.99999 and rel < tol, (corr, rel)
    # Each group of channels agrees on its own: the channel order is VLFeat's.
    for sl in (slice(0, 18), slice(18, 27), slice(27, 31)):
        assert stats(got[..., sl], ref[..., sl])[1] < tol


@pytest.mark.parametrize("width", [162, 165])
def test_matches_vlfeat_when_size_is_not_a_multiple(vl_hog, width: int) -> None:
    # VLFeat has round(W/8) cells, we have floor(W/8): for 165 it has one more column, whose norms reach
    # our last column (we replicate ours); every other cell agrees.
    im = grey("coffee")[:99, :width]
    ref = vl_hog(im, 8, variant="UoCTTI")
    got = ours(im, "hog")
    assert got.shape == (12, 20, 31)
    assert ref.shape[:2] == ((12, 20) if width == 162 else (12, 21))
    cols = 20 if width == 162 else 19
    assert stats(got[:, :cols], ref[:12, :cols])[1] < 1e-6


def test_shapes_dtypes_batch_and_registry() -> None:
    x = torch.rand(3, 1, 70, 75, dtype=torch.float64) * 255
    for variant in ("hog", "hogb"):
        net = HOG(8, variant)
        y = net(x)
        assert y.shape == (3, 27, 8, 9) and y.dtype == torch.float64
        assert torch.allclose(net(x[1:2]), y[1:2], atol=1e-12)  # batch items are independent
        y32 = net(x.float())
        assert y32.dtype == torch.float32 and torch.allclose(y32.double(), y, atol=1e-4)
        assert HOG(4, variant, texture=True)(x).shape == (3, 31, 17, 18)
    for name in ("hog", "hogb"):
        rep = load(name)
        assert rep.channels == 1 and rep.spec.input_size is None
        img = torch.rand(2, 1, 64, 64) * 255
        # mean 0, std 1/255: the module receives the image in 0–255 unchanged.
        assert torch.allclose(rep(img), HOG(8, name)(img))
        assert rep(img).shape == (2, 27, 8, 8)
    assert load("hog", cell_size=4, texture=True)(torch.rand(1, 1, 32, 32) * 255).shape == (1, 31, 8, 8)
    with pytest.raises(PreimageError):
        HOG(8)(torch.rand(1, 1, 7, 30))
    with pytest.raises(PreimageError, match="two HOG cells"):
        HOG(8)(torch.rand(1, 1, 15, 40))  # one cell high: no block to normalize it
    assert HOG(8)(torch.rand(1, 1, 16, 40)).shape == (1, 27, 2, 5)
    with pytest.raises(PreimageError):
        HOG(8, "dalal")  # type: ignore[arg-type]


def test_vertical_edge_fills_the_expected_orientation() -> None:
    x = torch.zeros(1, 1, 48, 48)
    x[..., 24:] = 200.0  # dark left, bright right: gradient along +x, directed bin 0 (undirected 18)
    for variant in ("hog", "hogb"):
        y = HOG(8, variant)(x)[0]
        edge = y[:, 2, 2:4]  # the cells whose support straddles column 24
        assert edge[0].min() > 0.1
        assert torch.all(edge[1:18].abs() < 1e-6)  # horizontal gradients fall in one bin, even for hogb
        assert torch.allclose(edge[18], edge[0]) and torch.all(edge[19:27].abs() < 1e-6)
        flipped = HOG(8, variant)(200.0 - x)[0][:, 2, 2:4]  # bright left: opposite direction, bin 9
        assert torch.allclose(flipped[9], edge[0]) and torch.allclose(flipped[18], edge[18])
        assert torch.all(y[:, :, 0] == 0)  # far from the edge: nothing


def test_bilinear_and_hard_orientation_histogram() -> None:
    ang = torch.tensor([0.0, 10.0, 25.0, 90.0, 270.0, 359.0]) * torch.pi / 180
    gx, gy = torch.cos(ang).view(1, 1, 1, -1), torch.sin(ang).view(1, 1, 1, -1)
    gx[..., 3:5] = 0.0  # exactly vertical
    soft = orientation_histogram(gx, gy, 18, hard=False)[0, :, 0]
    assert torch.allclose(soft.sum(0), torch.ones(6))
    assert torch.allclose(soft[:, 1], torch.tensor([0.5, 0.5] + [0.0] * 16), atol=1e-6)  # 10°: half 0°, half 20°
    assert torch.allclose(soft[1, 2], torch.tensor(0.75)) and torch.allclose(soft[2, 2], torch.tensor(0.25))
    hard = orientation_histogram(gx, gy, 18, hard=True)[0, :, 0].argmax(0)
    # 90° and 270° fall exactly between two bins: VLFeat keeps the lower axis (bins 4 and 13).
    assert hard.tolist() == [0, 0, 1, 4, 13, 0]


def test_translation_by_one_cell_shifts_the_map() -> None:
    torch.manual_seed(0)
    big = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 84, 92) * 255, 5, 1)  # 80×88, smooth-ish
    a, b = big[..., :, :80], big[..., :, 8:]
    for variant in ("hog", "hogb"):
        ya, yb = HOG(8, variant)(a), HOG(8, variant)(b)
        # Away from the borders (block norms reach two cells in), the map moves by exactly one cell.
        assert torch.allclose(ya[..., 2:-2, 3:-2], yb[..., 2:-2, 2:-3], atol=1e-5)


@pytest.mark.parametrize("variant", ["hog", "hogb"])
def test_gradcheck(variant: str) -> None:
    torch.manual_seed(1)
    x = (torch.rand(1, 1, 24, 24, dtype=torch.float64) * 255).requires_grad_()
    # The exact gradient (the surrogate's is another function's, by design: see the surrogate test).
    net = HOG(8, variant, texture=True, exact_gradient=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_is_finite_on_flat_and_step_images() -> None:
    x = torch.full((2, 1, 32, 32), 128.0)
    x[1, :, :, 16:] = 0.0  # exact horizontal gradients: on a bin centre, where acos' is infinite
    for variant in ("hog", "hogb"):
        xv = x.clone().requires_grad_()
        y = HOG(8, variant)(xv)
        (g,) = torch.autograd.grad((y * torch.rand_like(y)).sum(), xv)
        assert torch.isfinite(g).all()
        assert torch.all(y[0] == 0) and g[0].abs().max() == 0


def test_surrogate_forward_is_exact_and_backward_is_the_bilinear_binnings(vl_hog) -> None:
    im = grey("coffee")[40:168, 60:220]
    x = torch.from_numpy(im)[None, None].clone().requires_grad_()
    exact, sur, hogb = HOG(8, "hog", exact_gradient=True), HOG(8, "hog"), HOG(8, "hogb")
    # Forward: bit for bit the hard binning's (with autograd recording), hence still VLFeat's UoCTTI HOG.
    y = sur(x)
    assert torch.equal(y, exact(x))
    assert stats(ours(im, "hog", exact_gradient=False), vl_hog(im, 8, variant="UoCTTI"))[1] < 1e-6
    # Backward of the binning: exactly what HOGb's bilinear binning gives, not the hard one's.
    w = torch.rand(1, 18, 16, 20, generator=torch.Generator().manual_seed(0))
    (g_sur,) = torch.autograd.grad((sur.cell_histograms(x) * w).sum(), x)
    (g_bil,) = torch.autograd.grad((hogb.cell_histograms(x) * w).sum(), x)
    (g_hard,) = torch.autograd.grad((exact.cell_histograms(x) * w).sum(), x)
    assert torch.equal(g_sur, g_bil)
    assert (g_sur - g_hard).norm() > 0.3 * g_hard.norm()
    # Through the whole HOG: the chain rule on the hard histogram's values with the bilinear Jacobian.
    (g,) = torch.autograd.grad((y * torch.rand_like(y)).sum(), x)
    assert torch.isfinite(g).all() and g.abs().max() > 0

