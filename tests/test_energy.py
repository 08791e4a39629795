"""The paper's energy and optimizer: regularizer gradients, one update by hand, jitter bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from preimage.engine.optimize import Energy, PaperStep, noise_init
from preimage.engine.regularizers import alpha_norm, project_ball, tv_beta
from preimage.engine.rng import ProblemRNG
from preimage.engine.schedules import Stage, scale_schedule
from preimage.engine.transforms import (
    canvas_size,
    centre_crop,
    centre_offset,
    place_on_canvas,
    random_offsets,
    windows,
)
from preimage.representations import Geometry


def _fd_grad(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    flat, gf = x.view(-1), g.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = f(x).sum().item()
        flat[i] = old - eps
        down = f(x).sum().item()
        flat[i] = old
        gf[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("alpha", [2.0, 6.0])
def test_alpha_norm_gradient_matches_finite_differences_and_formula(alpha: float) -> None:
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(alpha_norm(xr, alpha).sum(), xr)
    torch.testing.assert_close(g, _fd_grad(lambda t: alpha_norm(t, alpha), x.clone()), rtol=1e-5, atol=1e-7)
    # docs/paper-notes.md §1.1: ∂/∂x = (α/(HW)) · x · ‖x(u,v,:)‖^(α−2)
    norm = x.pow(2).sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(g, alpha / 20 * x * norm.pow(alpha - 2))


@pytest.mark.parametrize("beta", [1.5, 2.0])
def test_tv_gradient_matches_finite_differences_and_formula(beta: float) -> None:
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 10
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(tv_beta(xr, beta).sum(), xr)
    torch.testing.assert_close(g, _fd_grad(lambda t: tv_beta(t, beta), x.clone()), rtol=1e-5, atol=1e-6)
    # docs/paper-notes.md §1.1: (β/HW)·(D1ᵀ(w·d1) + D2ᵀ(w·d2)), w = (d1²+d2²)^(β/2−1), per channel
    d1 = torch.zeros_like(x)
    d2 = torch.zeros_like(x)
    d1[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    d2[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    w = (d1 ** 2 + d2 ** 2).pow(beta / 2 - 1)
    a, b = w * d1, w * d2
    expect = torch.zeros_like(x)
    expect[..., :, 1:] += a[..., :, :-1]
    expect[..., :, :-1] -= a[..., :, :-1]
    expect[..., 1:, :] += b[..., :-1, :]
    expect[..., :-1, :] -= b[..., :-1, :]
    torch.testing.assert_close(g, beta / 20 * expect)


def test_tv_is_zero_on_constant_images_and_per_channel() -> None:
    assert float(tv_beta(torch.full((1, 3, 6, 6), 7.0)).max()) == 0.0
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, :, 2:] = 1.0  # one vertical edge in one channel: 4 rows × 1 unit jump, averaged over 16 pixels
    assert tv_beta(x).item() == pytest.approx(4 / 16)


def test_energy_constants_are_the_papers() -> None:
    e = Energy()
    assert e.lambda_alpha == pytest.approx(3.8147e-12, rel=1e-4)
    assert e.lambda_beta == pytest.approx(6.6016e-3, rel=1e-4)
    assert e.lr0 == pytest.approx(53.3333, rel=1e-5)
    assert e.V == pytest.approx(12.3077, rel=1e-4)
    off = Energy(regularize=False)
    assert off.lambda_alpha == 0 and off.lambda_beta == 0 and off.bound == math.inf


def test_one_paper_step_by_hand() -> None:
    x = torch.tensor([[[[10.0, -20.0]], [[0.0, 5.0]], [[3.0, 0.0]]]])  # 1×3×1×2
    g = torch.tensor([[[[2.0, -1.0]], [[0.5, 0.0]], [[-4.0, 3.0]]]])
    eta = 1 * 2 * 53.3333
    step = PaperStep(x, eta)
    x1 = x.clone()
    step(x1, g)
    # G = g², Δ = −g/(1/η + |g|), x ← x + Δ
    torch.testing.assert_close(x1, x - g / (1 / eta + g.abs()))
    g2 = torch.full_like(g, 1.0)
    x2 = x1.clone()
    step(x2, g2)
    G = 0.9 * g * g + g2 * g2
    D = 0.9 * (-g / (1 / eta + g.abs())) - g2 / (1 / eta + G.sqrt())
    torch.testing.assert_close(x2, x1 + D)


def test_projection_bounds_each_pixel_colour_norm() -> None:
    x = torch.tensor([[[[300.0, 1.0]], [[400.0, 1.0]], [[0.0, 1.0]]]])
    project_ball(x, 160.0)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([96.0, 128.0, 0.0]))  # 500 → 160, same direction
    torch.testing.assert_close(x[0, :, 0, 1], torch.tensor([1.0, 1.0, 1.0]))  # inside: unchanged


def test_noise_init_quantile_scaling() -> None:
    x = noise_init(3, (20, 20), 80.0, ProblemRNG([0, 1, 2]))
    q = torch.quantile(x.flatten(1), 0.95, dim=1)
    torch.testing.assert_close(q, torch.full((3,), 80 / math.sqrt(3)))
    assert not torch.equal(x[0], x[1])


@pytest.mark.parametrize("stride,J", [(1, 1), (2, 1), (4, 1), (6, 2), (8, 2), (10, 3), (16, 4), (32, 8)])
def test_jitter_from_stride_rounds_halves_up(stride: int, J: int) -> None:
    assert Geometry((1,), (stride, stride), (1, 1)).jitter == J


def test_canvas_bookkeeping_and_gradient_window() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    for J in (1, 2, 4, 5):
        canvas = place_on_canvas(x, J)
        assert canvas.shape[-2:] == canvas_size((4, 5), J)
        o = centre_offset(J)
        assert float(canvas[..., :o, :].abs().sum()) == 0.0
        torch.testing.assert_close(centre_crop(canvas, (4, 5)), x)
    canvas = place_on_canvas(x, 4).requires_grad_(True)
    rng = ProblemRNG([3])
    seen = set()
    for _ in range(50):
        crop = windows(canvas, *random_offsets(1, 4, rng), (4, 5))
        assert crop.shape == x.shape
        (g,) = torch.autograd.grad(crop.sum(), canvas)
        rows = torch.nonzero(g[0, 0].sum(1)).flatten()
        cols = torch.nonzero(g[0, 0].sum(0)).flatten()
        assert len(rows) == 4 and len(cols) == 5  # gradient lands exactly in the H×W window
        seen.add((int(rows[0]), int(cols[0])))
    assert seen == {(a, b) for a in range(4) for b in range(4)}  # offsets cover {0..J−1}²


def test_schedule_scaling_keeps_proportions() -> None:
    sched = (Stage(300, 1.0, True), Stage(50, 0.1, False))
    assert scale_schedule(sched, None) == sched
    s = scale_schedule(sched, 70)
    assert [st.iters for st in s] == [60, 10] and s[1].lr_scale == 0.1 and not s[1].jitter
    assert sum(st.iters for st in scale_schedule(sched, 3)) == 3
