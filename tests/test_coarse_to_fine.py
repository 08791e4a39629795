"""Coarse-to-fine optimization: schedule split, the up-sampled representation, and the two-level run."""

from __future__ import annotations

import torch

from preimage.engine.objectives import Inversion
from preimage.engine.optimize import optimize
from preimage.engine.schedules import Stage
from preimage.representations import load
from preimage.tasks.coarse_to_fine import Upsampled, coarse_size, optimize_coarse_to_fine, split_schedule, upsample


def test_split_schedule_cuts_stages_where_needed() -> None:
    sched = (Stage(300, 1.0, True), Stage(50, 0.1, False))
    assert split_schedule(sched, 117) == ((Stage(117, 1.0, True),), (Stage(183, 1.0, True), Stage(50, 0.1, False)))
    assert split_schedule(sched, 320) == ((Stage(300, 1.0, True), Stage(20, 0.1, False)), (Stage(30, 0.1, False),))
    assert split_schedule(sched, 350) == (sched, ())
    assert coarse_size((65, 64)) == (33, 32)


def test_upsampled_representation_sees_the_upsampled_image() -> None:
    rep = load("hogb")
    z = torch.rand(2, 1, 20, 24) * 100
    up = Upsampled(rep, (40, 48))
    assert torch.equal(up(z), rep(upsample(z, (40, 48))))
    # A constant image stays constant: nothing but the coarse pixels is seen.
    assert torch.allclose(upsample(torch.full((1, 1, 3, 3), 7.0), (6, 6)), torch.full((1, 1, 6, 6), 7.0))


def test_coarse_level_starts_the_fine_one() -> None:
    rep = load("hogb")
    x0 = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 36, 36) * 255, 5, 1)  # 32×32, smooth
    obj = Inversion(rep(x0).detach(), 100.0)
    sched = (Stage(9, 1.0, False),)
    tr = optimize_coarse_to_fine(rep, obj, 1, (32, 32), sched, seed=3)
    assert tr.iterations == 9 and tr.energy.shape == (9, 1) and tr.x.shape == (1, 1, 32, 32)
    assert [(s["level"], s["iters"], s["size"]) for s in tr.stages] == [("coarse", 3, [16, 16]),
                                                                         ("fine", 6, [32, 32])]
    # The fine level starts from the up-sampled coarse solution: with a negligible fine rate it stays there.
    slow = optimize_coarse_to_fine(rep, obj, 1, (32, 32), (Stage(3, 1.0, False), Stage(6, 1e-9, False)), seed=3)
    coarse = optimize(Upsampled(rep, (32, 32)), obj, 1, (16, 16), (Stage(3, 1.0, False),), seed=3)
    assert torch.allclose(slow.x, upsample(coarse.x, (32, 32)), atol=1e-3)
    assert not torch.allclose(coarse.x, torch.zeros_like(coarse.x))
    # Too few iterations to give each level one: a single level.
    one = optimize_coarse_to_fine(rep, obj, 1, (32, 32), (Stage(1, 1.0, False),))
    assert [s["level"] for s in one.stages] == ["fine"] and one.iterations == 1
