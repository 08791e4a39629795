"""Batched L-BFGS (``engine.lbfgs``): independent problems, exact minima of quadratics, monotone accepted energies,
one evaluation per iteration; and its use as a stage optimizer (the fast style's second stage)."""

from __future__ import annotations

import json

import pytest
import torch

from preimage.cli import main
from preimage.engine.lbfgs import LBFGSStep
from preimage.engine.optimize import Energy, optimize
from preimage.engine.schedules import Stage
from preimage.engine.styles import describe, get_style
from preimage.errors import PreimageError
from preimage.images import load_image


def quadratic(xs: list[torch.Tensor], scales: list[torch.Tensor], centres: list[torch.Tensor]
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """f_n = ½ Σ a·(x − c)² per problem n over two tensors, and its gradient."""
    f = sum((0.5 * a * (x - c) ** 2).flatten(1).sum(1) for x, a, c in zip(xs, scales, centres, strict=True))
    return f, [a * (x - c) for x, a, c in zip(xs, scales, centres, strict=True)]


def run(xs, scales, centres, iters, **kw):
    step = LBFGSStep(**kw)
    accepted = []
    for _ in range(iters):
        f, g = quadratic(xs, scales, centres)
        accepted.append(step(xs, g, f))
    step.restore(xs)
    return step, torch.stack(accepted)


def problems(n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # Per problem and coordinate, curvatures spread over two decades: badly conditioned for gradient descent.
    shapes = [(n, 3, 4, 4), (n, 3, 2, 2)]
    scales = [10 ** (2 * torch.rand(s, generator=gen, dtype=torch.float64)) for s in shapes]
    centres = [torch.randn(s, generator=gen, dtype=torch.float64) * 5 for s in shapes]
    return scales, centres


def test_lbfgs_solves_each_problem_of_a_batch_as_if_alone() -> None:
    scales, centres = problems(3)
    xs = [torch.zeros_like(c) for c in centres]
    step, accepted = run(xs, scales, centres, 100, first=1.0)
    for x, c in zip(xs, centres, strict=True):
        assert torch.allclose(x, c, atol=1e-4)  # the exact minimum, 60 unknowns per problem, condition number ~10²
    assert bool((accepted[1:] <= accepted[:-1] + 1e-9).all())  # accepted energies never rise
    # Problem 1 alone follows the same path: problems share nothing (no common step length or memory).
    alone = [torch.zeros_like(c[1:2]) for c in centres]
    run(alone, [a[1:2] for a in scales], [c[1:2] for c in centres], 30, first=1.0)
    again = [torch.zeros_like(c) for c in centres]
    run(again, scales, centres, 30, first=1.0)
    for a, b in zip(alone, again, strict=True):
        assert torch.allclose(a[0], b[1], atol=1e-5)


def test_lbfgs_beats_gradient_descent_and_rejects_overshooting_steps() -> None:
    scales, centres = problems(2, seed=1)
    xs = [torch.zeros_like(c) for c in centres]
    # A first step 1000× too long: rejected, halved along the same direction until Armijo's condition holds.
    step, accepted = run(xs, scales, centres, 40, first=1e3)
    assert step.rejected > 0
    assert bool((accepted[1:] <= accepted[:-1] + 1e-9).all())
    f_lbfgs, _ = quadratic(xs, scales, centres)
    # Plain gradient descent at the largest stable step (1/max curvature), same number of evaluations.
    gd = [torch.zeros_like(c) for c in centres]
    lr = 1 / max(float(a.max()) for a in scales)
    for _ in range(40):
        _, g = quadratic(gd, scales, centres)
        for x, gg in zip(gd, g, strict=True):
            x.sub_(lr * gg)
    f_gd, _ = quadratic(gd, scales, centres)
    assert bool((f_lbfgs < 1e-3 * f_gd).all())


def test_restore_returns_the_last_accepted_point_not_the_unevaluated_proposal() -> None:
    scales, centres = problems(1, seed=2)
    xs = [torch.zeros_like(c) for c in centres]
    step = LBFGSStep(first=1.0)
    for _ in range(3):
        f, g = quadratic(xs, scales, centres)
        last = step(xs, g, f)
    proposed = [x.clone() for x in xs]
    step.restore(xs)
    assert not all(torch.equal(a, b) for a, b in zip(proposed, xs, strict=True))
    assert torch.allclose(quadratic(xs, scales, centres)[0], last)


def tiny():
    from test_natural import tiny_rep

    torch.manual_seed(0)  # tiny_net draws its first layer before seeding
    return tiny_rep(bn=False)


def test_fast_style_is_adam_then_lbfgs_and_lbfgs_refuses_a_random_energy() -> None:
    from preimage.engine.objectives import Inversion
    from preimage.tasks.inversion import invert

    rep = tiny()
    img = load_image("sample:coffee", 32)
    res = invert(rep, img, style="fast", iters=30)
    assert [(s["iters"], s["optimizer"]) for s in res.info["stages"]] == [(2, "adam"), (28, "lbfgs")]
    assert res.info["optimizer"] == "adam+lbfgs"
    assert describe(get_style("fast"), (Stage(3, 1.0, True),)) ["optimizer"] == "adam"  # stages without their own
    # The recorded energy is that of accepted points: it never rises during the L-BFGS stage.
    e = res.energy[2:, 0]
    assert bool((e[1:] <= e[:-1] + 1e-6 * e[:-1].abs()).all())
    # Against the same stages with Adam throughout: a lower energy in the same number of evaluations.
    adam = invert(rep, img, style="fast", iters=30, optimizer="adam")
    assert res.energy[-1].item() < 0.97 * adam.energy[-1].item()
    # Random transforms change the energy from step to step: L-BFGS's acceptance test would compare noise.
    x0 = rep.to_paper_units(img)
    obj = Inversion(rep(x0), torch.tensor([100.0]))
    for kw in ({"param": "pixel"}, {"param": "pyramid"}):
        with pytest.raises(PreimageError, match="lbfgs optimizer needs the same energy"):
            optimize(rep, obj, 1, (32, 32), (Stage(2, 1.0, True),), optimizer="lbfgs", energy=Energy(), jitter=4, **kw)


def test_cli_lbfgs_needs_a_stage_without_jitter(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    base = ["invert", "sample:coffee", "--model", "timm:test_resnet", "--random-weights", "--layer", "layer2",
            "--size", "32",
            "--iters", "4", "--out", str(out)]
    rc = main([*base, "--optimizer", "lbfgs"])  # the paper's schedule jitters
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and "lbfgs" in err[0]
    assert not out.exists()
    # Without jitter (the fast style) it runs, and the JSON names the optimizer.
    assert main([*base, "--style", "fast", "--optimizer", "lbfgs", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["optimizer"] == "lbfgs" and out.exists()


def test_memory_estimate_counts_what_lbfgs_holds_on_the_pyramid() -> None:
    from preimage.engine.lbfgs import MEMORY, image_buffers
    from preimage.engine.memory import estimate_bytes
    from preimage.engine.param import PyramidImage
    from preimage.engine.rng import ProblemRNG

    p = PyramidImage(2, 3, (32, 32), torch.zeros(3), 160.0, rng=ProblemRNG([0, 1]))
    xs = [t.data for t in p.params()]
    centres = [torch.randn_like(t) for t in xs]
    scales = [torch.ones_like(t) for t in xs]
    step, _ = run(xs, scales, centres, MEMORY + 5)
    held = sum(b.numel() for b in (step.S, step.Y, step.x, step.g, step.d))
    image = 2 * 3 * 32 * 32
    assert held <= image_buffers() * image < held + 2 * image  # the estimate covers it, with at most 2 images spare
    rep = tiny()
    grow = estimate_bytes(rep, 2, (32, 32), image_buffers()) - estimate_bytes(rep, 2, (32, 32))
    assert grow == image_buffers() * image * 4
    # Every task asks for them when a stage runs L-BFGS (the run's optimizer overriding the stages' own).
    from preimage.engine.optimize import extra_buffers

    fast = get_style("fast").schedule
    assert extra_buffers(fast, None) == image_buffers() and extra_buffers(fast, "adam") == 0
    assert extra_buffers((Stage(5),), "lbfgs") == image_buffers() and extra_buffers((Stage(5),), None) == 0
