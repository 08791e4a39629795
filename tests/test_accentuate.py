"""Feature accentuation (``tasks.accentuate``) and attribution maps: values, known answers, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import preimage
from preimage.cli import main
from preimage.engine.budget import ROUNDING, into_ball
from preimage.errors import PreimageError
from preimage.tasks.accentuate import accentuate, default_reg_layer
from preimage.tasks.supersample import map_to_picture
from tests.conftest import lite0_spec

SIDE = 32
#: The tiny network's receptive field: two 5×5 convolutions, 9×9 around the centre neuron (15, 15) of 32×32.
RF = slice(11, 20)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2)).eval()


def outside(a: torch.Tensor) -> torch.Tensor:
    """A map's values outside the centre neuron's receptive field (… × H × W → flat)."""
    m = torch.ones(a.shape[-2:], dtype=torch.bool)
    m[RF, RF] = False
    return a[..., m]


def seed_image() -> torch.Tensor:
    return preimage.load_image("sample:chelsea", SIDE)


def test_attribution_of_a_neuron_lies_in_its_receptive_field() -> None:
    # Known answer: the centre neuron of the second 5×5 convolution sees only the 9×9 pixels around it, so
    # the summed |∂objective/∂x| is exactly 0 outside them, and positive inside: on all of its centre, which
    # every first-layer unit of the field sees, and on nearly all of it (a corner pixel reaches the neuron through
    # one first-layer position only, whose ReLUs can all be off: 80 of 81 on some seeds).
    r = preimage.maximize(tiny(), "neuron:2:1", size=SIDE, iters=6, style="paper", transforms="none",
                          attribution=True)
    a = r.attribution
    assert a.shape == (1, 1, SIDE, SIDE)
    assert float(outside(a).abs().max()) == 0.0
    assert float(a[..., 13:18, 13:18].min()) > 0 and int((a[..., RF, RF] > 0).sum()) >= 77
    # The same on the paper's fast path (jitter canvas), where the window moves: the mass stays in the field ± J.
    r2 = preimage.maximize(tiny(), "neuron:2:1", size=SIDE, iters=6, style="paper", attribution=True)
    inside = r2.attribution[..., 8:23, 8:23].sum()
    assert float(inside / r2.attribution.sum()) > 0.99
    # The map is what a run adds: the picture is the same with or without it.
    r3 = preimage.maximize(tiny(), "neuron:2:1", size=SIDE, iters=6, style="paper", transforms="none")
    assert r3.attribution is None and torch.equal(r3.images, r.images)


def test_accentuating_a_neuron_changes_only_its_receptive_field() -> None:
    # With the distance in pixels, pixels the neuron does not see get no gradient at all: they stay the seed's.
    x0 = seed_image()
    r = accentuate(tiny(), x0, "neuron:2:1", reg_layer="pixels", reg_weight=[0.01, 100.0], steps=10,
                   param="pixel", transforms="none")
    assert r.images.shape == (2, 3, SIDE, SIDE) and r.attribution.shape == (2, 1, SIDE, SIDE)
    d = (r.images - x0).abs()
    assert float(outside(d).max()) < 1e-3
    assert float(d[..., RF, RF].max()) > 1.0
    assert float(outside(r.attribution).abs().max()) == 0.0
    m = r.metrics
    assert (m["activation"] > m["activation_start"]).all()
    # a larger weight stays closer to the seed and excites the neuron less
    assert float(m["rmse"][1]) < float(m["rmse"][0])
    assert float(m["activation"][1]) < float(m["activation"][0])
    assert math.isnan(float(m["layer_error"][0])) and r.info["reg_layer"] == "pixels"
    torch.testing.assert_close(m["reg_weight"], torch.tensor([0.01, 100.0]))


def test_a_weight_list_gives_the_pictures_of_each_weight_alone() -> None:
    x0 = seed_image()
    both = accentuate(tiny(), x0, "2:1", reg_layer="0", reg_weight=[0.1, 10.0], steps=4)
    alone = accentuate(tiny(), x0, "2:1", reg_layer="0", reg_weight=10.0, steps=4)
    assert torch.equal(both.images[1], alone.images[0])
    assert both.info["reg_layer"] == "0" and float(both.metrics["layer_error"][1]) < float(
        both.metrics["layer_error"][0])


def rmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).flatten(1).pow(2).mean(1).sqrt()


def test_into_ball_scales_the_change_to_the_budget_and_its_gradient_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 6, 6, generator=g, dtype=torch.float64) * 255
    spread = torch.tensor([40.0, 5.0, 40.0], dtype=torch.float64).view(3, 1, 1, 1)
    x = x0 + torch.randn(3, 3, 6, 6, generator=g, dtype=torch.float64) * spread
    r = torch.tensor([10.0, 10.0, math.inf], dtype=torch.float64)
    y = into_ball(x, x0, r)
    assert torch.allclose(rmse(y, x0)[0], torch.tensor(10.0, dtype=torch.float64))
    assert torch.equal(y[1:], x[1:])  # inside the ball, or no budget: unchanged
    d = (x - x0)[0]  # the change keeps its direction
    assert torch.allclose((y - x0)[0] / d, torch.full_like(d, 10.0 / float(rmse(x, x0)[0])))
    assert torch.autograd.gradcheck(lambda t: into_ball(t, x0, r), (x.clone().requires_grad_(True),))


def test_a_budget_holds_on_the_saved_picture_and_is_used() -> None:
    x0 = seed_image()
    r = accentuate(tiny(), x0, "2:1", reg_layer="none", max_rmse=[4.0, 12.0], steps=12, param="pixel")
    assert r.metrics["max_rmse"].tolist() == [4.0, 12.0] and [p["max_rmse"] for p in r.problems] == [4.0, 12.0]
    d = rmse(r.images.round(), x0.expand_as(r.images))
    assert bool((d <= r.metrics["max_rmse"].double()).all())  # the 8-bit picture too
    # with nothing pulling back, the target spends the whole budget (less the rounding margin)
    assert torch.allclose(r.metrics["rmse"].double(), torch.tensor([4.0, 12.0], dtype=torch.float64) - ROUNDING,
                          atol=0.05)
    act = r.metrics["activation"]
    assert float(act[0]) < float(act[1])  # a larger budget reaches further
    free = accentuate(tiny(), x0, "2:1", reg_layer="none", max_rmse=None, steps=12, param="pixel")
    assert float(free.metrics["rmse"][0]) > 12 and "max_rmse" not in free.metrics
    # "no budget" is recorded as such, not left out (a rerun from the record would get the default budget)
    assert free.jobs[0]["config"]["options"]["max_rmse"] == "none"
    default = accentuate(tiny(), x0, "2:1", reg_layer="none", steps=2, param="pixel", attribution=False)
    assert default.metrics["max_rmse"].tolist() == [24.0] and default.problems[0]["reg_weight"] == 0.3


@pytest.mark.parametrize("model", ["hog", "dsift"])
def test_a_budget_holds_on_a_grey_representation(model: str) -> None:
    # HOG and DSIFT see the grey picture; their pictures elsewhere are min–max stretched, which here would move a
    # picture off its seed (RMSE 36 at a budget of 24 before).
    r = accentuate(model, "sample:chelsea", "output:3", steps=4, size=64, max_rmse=[8.0, 24.0])
    seed = r.info["reference"]
    assert r.images.shape == (2, 1, 64, 64) and seed.shape == (1, 1, 64, 64)
    d = rmse(r.images.round(), seed.expand_as(r.images))
    assert bool((d <= r.metrics["max_rmse"].double()).all()) and float(d[1]) > 20  # within, and used
    assert bool((r.metrics["activation"] > r.metrics["activation_start"]).all())


def test_a_canvas_is_seen_at_the_picture_size_and_returned_at_it() -> None:
    x0 = seed_image()
    net = tiny()
    seen: list[tuple[int, ...]] = []  # the sizes shown the network with a gradient (also geometry's probes at 56)
    net[0].register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[0].shape[-2:])) if a[0].requires_grad else None)
    for transforms in (None, "none", "jitter:3"):
        seen.clear()
        r = accentuate(net, x0, "2:1", reg_layer="none", max_rmse=[4.0, 12.0], steps=6, param="pixel", canvas=2,
                       transforms=transforms)
        assert r.images.shape == (2, 3, SIDE, SIDE) and r.attribution.shape == (2, 1, SIDE, SIDE)
        assert r.info["canvas"] == 2.0 and r.jobs[0]["config"]["options"]["canvas"] == 2
        # the optimization's views are the picture's size (crops of the 64 px canvas resampled to 32)
        assert (SIDE, SIDE) in seen and (2 * SIDE, 2 * SIDE) not in seen
        d = rmse(r.images.round(), x0.expand_as(r.images))
        assert bool((d <= r.metrics["max_rmse"].double()).all()) and float(d[1]) > 8  # held and used
        assert torch.allclose(r.metrics["rmse"].double(), rmse(r.images, x0.expand_as(r.images)), atol=1e-3)
    a = torch.rand(2, 1, 8, 12)
    down = map_to_picture(a, (4, 6))
    assert torch.allclose(down.sum((1, 2, 3)), a.sum((1, 2, 3)))
    assert torch.allclose(down[0, 0, 0, 0], a[0, 0, :2, :2].sum())
    assert "canvas" not in accentuate(net, x0, "2:1", steps=1, attribution=False).info
    # a layer distance is reported on the picture against the seed, as without a canvas
    r = accentuate(tiny(), x0, "2:1", reg_layer="0", max_rmse=None, steps=3, param="pixel", canvas=2,
                   attribution=False)
    phi = preimage.load(tiny(), "0")
    f, f0 = phi(phi.to_paper_units(r.images)), phi(phi.to_paper_units(x0))
    assert torch.allclose(r.metrics["layer_error"], ((f - f0).norm() / f0.norm()).reshape(1), rtol=1e-4)


def test_the_default_canvas_and_steps_follow_the_budget_and_a_mixed_list_runs_in_groups() -> None:
    x0 = seed_image()
    kw = {"reg_layer": "pixels", "steps": 4, "param": "pixel", "transforms": "jitter:3"}
    # images × targets × weights × budgets, the budgets unsorted and straddling 32
    r = accentuate(tiny(), x0, ["2:1", "2:3"], reg_weight=[0.3, 3.0], max_rmse=[40.0, 8.0, 32.0], **kw)
    assert r.images.shape == (12, 3, SIDE, SIDE) and r.attribution.shape == (12, 1, SIDE, SIDE)
    assert [p["max_rmse"] for p in r.problems] == [40.0, 8.0, 32.0] * 4
    assert [p.get("canvas") for p in r.problems] == [2.0, None, 2.0] * 4
    assert [p["target"] for p in r.problems] == ["channel:2:1"] * 6 + ["channel:2:3"] * 6
    assert r.metrics["max_rmse"].tolist() == [40.0, 8.0, 32.0] * 4
    assert r.metrics["reg_weight"].tolist() == pytest.approx([0.3] * 3 + [3.0] * 3 + [0.3] * 3 + [3.0] * 3)
    assert [j["rows"] for j in r.jobs] == [list(range(6)), list(range(6, 12))] and len(r.jobs[0]["names"]) == 6
    assert r.energy.shape[1] == 12
    # each picture is the one its budget gives alone: the canvas by budget, the draw the problem's own
    for b, rows in ((8.0, [1, 4, 7, 10]), (40.0, [0, 3, 6, 9])):
        alone = accentuate(tiny(), x0, ["2:1", "2:3"], reg_weight=[0.3, 3.0], max_rmse=b, **kw)
        assert torch.equal(alone.images, r.images[rows]) and torch.equal(alone.attribution, r.attribution[rows])
        assert torch.equal(alone.metrics["activation"], r.metrics["activation"][rows])
        assert ("canvas" in alone.info) == (b >= 32)
    # an explicit canvas holds for every budget, in one run
    one = accentuate(tiny(), x0, "2:1", max_rmse=[8.0, 40.0], canvas=1, **kw)
    assert "canvas" not in one.info and all("canvas" not in p for p in one.problems)
    assert len(one.energy) == one.iterations == 4 and [p["steps"] for p in one.problems] == [4, 4]
    # without the caller's steps, a far budget runs 1.5× the style's (64): a group of its own on the same canvas,
    # the shorter group's energy history NaN after its end, each picture the one its budget and steps give alone
    nosteps = {k: v for k, v in kw.items() if k != "steps"}
    seen: list[tuple[int, int]] = []
    m = accentuate(tiny(), x0, "2:1", max_rmse=[8.0, 40.0], canvas=1, progress=lambda d, t: seen.append((d, t)),
                   **nosteps)
    # one bar over both groups: steps done over all of them, of their total
    assert {t for _, t in seen} == {160} and seen[-1] == (160, 160) and (64, 160) in seen
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert [p["steps"] for p in m.problems] == [64, 96] and m.iterations == 96 and m.energy.shape == (96, 2)
    assert bool(m.energy[64:, 0].isnan().all()) and not bool(m.energy[:64].isnan().any())
    assert not bool(m.energy[:, 1].isnan().any()) and "schedule" not in m.info
    far = accentuate(tiny(), x0, "2:1", max_rmse=40.0, canvas=1, steps=96, **nosteps)
    assert torch.equal(far.images, m.images[1:]) and far.problems[0]["steps"] == 96


def test_candidates_keep_the_highest_target_value_and_candidate_0_is_the_single_run() -> None:
    x0 = seed_image()
    kw = {"reg_layer": "pixels", "max_rmse": [6.0, 12.0], "steps": 6, "param": "pixel", "transforms": "jitter:3"}
    r = accentuate(tiny(), x0, ["2:1", "2:3"], candidates=3, **kw)
    one = accentuate(tiny(), x0, ["2:1", "2:3"], **kw)
    assert r.images.shape == one.images.shape == (4, 3, SIDE, SIDE) and r.attribution.shape == (4, 1, SIDE, SIDE)
    assert r.info["candidates"] == 3 and "candidates" not in one.info
    for i, p in enumerate(r.problems):
        scores = p["candidate_scores"]
        assert p["candidates"] == 3 and len(set(scores)) == 3  # each candidate its own draw
        assert scores[p["candidate"]] == max(scores)
        assert float(r.metrics["activation"][i]) == pytest.approx(max(scores), rel=1e-6)
        # candidate 0 is the picture a run without candidates makes
        assert scores[0] == pytest.approx(float(one.metrics["activation"][i]), rel=1e-6)
        assert float(r.metrics["activation"][i]) >= float(one.metrics["activation"][i]) - 1e-4
    assert bool((rmse(r.images.round(), x0.expand_as(r.images)) <= r.metrics["max_rmse"].double()).all())
    assert r.metrics["max_rmse"].tolist() == [6.0, 12.0, 6.0, 12.0]
    assert [p["target"] for p in r.problems] == ["channel:2:1", "channel:2:1", "channel:2:3", "channel:2:3"]


def test_cap_leak_changes_the_gradient_only_and_leaves_the_network_as_it_was() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU6(), nn.Conv2d(4, 4, 5, padding=2)).eval()
    with torch.no_grad():
        net[0].bias.fill_(8.0)  # every unit above the cap: flat for the exact gradient
    x0 = seed_image()
    kw = {"reg_layer": "none", "max_rmse": 12.0, "steps": 6, "param": "pixel", "transforms": "none",
          "attribution": False}
    exact = accentuate(net, x0, "2:1", **kw)
    leak = accentuate(net, x0, "2:1", cap_leak=0.5, **kw)
    assert leak.info["cap_leak"] == 0.5 and "cap_leak" not in exact.info
    assert [type(m) for m in net] == [nn.Conv2d, nn.ReLU6, nn.Conv2d]  # the network is as it was
    # the reported value is the real network's on the picture: read again as a seed, with no slope anywhere
    again = accentuate(net, leak.images.round(), "2:1", steps=1, reg_layer="none", attribution=False)
    assert float(again.metrics["activation_start"][0]) == pytest.approx(float(leak.metrics["activation"][0]),
                                                                         rel=1e-3)
    # every unit is capped: the exact gradient is 0 and the picture stays the seed; the slope moves it
    assert float(exact.metrics["rmse"][0]) < 0.5 and float(leak.metrics["rmse"][0]) > 5.0


def test_no_regularization_and_every_parameterization() -> None:
    x0 = seed_image()
    free = accentuate(tiny(), x0, "2:1", reg_layer="none", reg_weight=[1.0, 100.0], steps=4, param="pixel")
    # without a distance the weight changes nothing
    assert torch.equal(free.images[0], free.images[1])
    for p in ("pixel", "fourier", "maco", "pyramid"):
        r = accentuate(tiny(), x0, "2:1 + 0.5*2:2", reg_layer="pixels", steps=3, param=p, attribution=False)
        assert r.images.shape == (1, 3, SIDE, SIDE) and bool(torch.isfinite(r.images).all())
        assert r.attribution is None and r.info["param"].startswith(p)
    # the stages record the parameterization with its options, as the job does
    steep = accentuate(tiny(), x0, "2:1", reg_layer="pixels", steps=2, attribution=False)
    assert steep.info["param"] == "fourier(decay=1.5)" == steep.info["stages"][0]["param"]


def test_class_target_on_lite0_reaches_the_class() -> None:
    r = accentuate(lite0_spec(), "sample:chelsea", "class:1", reg_layer="auto", reg_weight=[1.0], size=96, steps=12)
    m = r.metrics
    assert float(m["probability_start"][0]) < 0.01 < float(m["probability"][0])
    assert float(m["activation"][0]) > float(m["activation_start"][0]) + 2
    assert r.info["reg_layer"] == "blocks.2" and 0 < float(m["layer_error"][0]) < 2
    assert 0 < float(m["rmse"][0]) < 60


def test_auto_reg_layer_is_the_first_block_of_stride_8() -> None:
    assert default_reg_layer(lite0_spec()) == "blocks.2"
    assert default_reg_layer(preimage.model_spec(tiny(), input_size=(SIDE, SIDE)), (SIDE, SIDE)) is None


@pytest.mark.parametrize("kw, param", [
    ({"reg_weight": -1.0}, "reg_weight"), ({"reg_weight": []}, "reg_weight"),
    ({"reg_weight": [1.0, 1.0]}, "reg_weight"), ({"reg_weight": float("nan")}, "reg_weight"),
    ({"reg_layer": "nosuch"}, "reg_layer"), ({"reg_layer": ""}, "reg_layer"),
    ({"steps": 0}, "steps"), ({"target": "2:99"}, "target"), ({"target": "2:1 + diversity"}, "target"),
    ({"attribution": "yes"}, "attribution"), ({"max_rmse": 0.5}, "max_rmse"), ({"max_rmse": []}, "max_rmse"),
    ({"max_rmse": [8.0, 8.0]}, "max_rmse"), ({"max_rmse": float("inf")}, "max_rmse"), ({"canvas": 0.5}, "canvas"),
    ({"canvas": 5}, "canvas"), ({"canvas": float("nan")}, "canvas"), ({"canvas": "2"}, "canvas"),
    ({"candidates": 0}, "candidates"), ({"candidates": 65}, "candidates"), ({"candidates": True}, "candidates"),
    ({"candidates": 1.5}, "candidates"), ({"cap_leak": -0.1}, "cap_leak"), ({"cap_leak": 1.0}, "cap_leak"),
    ({"cap_leak": float("nan")}, "cap_leak"), ({"cap_leak": "0.1"}, "cap_leak")])
def test_bad_arguments_name_their_parameter(kw: dict, param: str) -> None:
    args = {"target": "2:1", **kw}
    with pytest.raises(PreimageError) as e:
        accentuate(tiny(), seed_image(), args.pop("target"), **args)
    assert param in e.value.params


def test_cli_writes_pictures_overlays_and_a_summary(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["accentuate", "sample:chelsea", "--target", "class:1", "--reg-weight", "1,10", "--steps", "2",
                 "--size", "64", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [r["reg_weight"] for r in s["results"]] == [1.0, 10.0]
    for r in s["results"]:
        assert r["image"].endswith(f"-w{r['reg_weight']:g}.png") and r["attribution"] == r["image"][:-4] + \
            "-attribution.png"
        assert preimage.load_image(r["attribution"]).shape == (1, 3, 64, 64)
    assert main(["accentuate", "sample:chelsea", "--target", "class:1", "--reg-weight", "1,10", "--steps", "2",
                 "--size", "64", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"]["cached"] == 1


def test_cli_budgets_name_their_pictures_and_hold(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["accentuate", "sample:chelsea", "--target", "class:1", "--max-rmse", "6,10", "--reg-weight", "0",
                 "--steps", "3", "--size", "64", "--out", str(out), "--json", "--no-attribution"]) == 0
    rs = json.loads(capsys.readouterr().out)["results"]
    assert [r["max_rmse"] for r in rs] == [6.0, 10.0]
    seed = preimage.load_image("sample:chelsea", 64)
    for r in rs:
        assert r["image"].endswith(f"-w0-rmse{r['max_rmse']:g}.png")
        assert float(rmse(preimage.load_image(r["image"]), seed)[0]) <= r["max_rmse"]


def test_cli_candidates_are_recorded_and_named(tmp_path, capsys) -> None:
    args = ["accentuate", "sample:chelsea", "--target", "class:1", "--candidates", "2", "--steps", "2", "--size", "64",
            "--no-attribution"]
    assert main([*args, "--out", str(tmp_path / "o"), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["results"]
    assert r["candidates"] == 2 and r["candidate_scores"][r["candidate"]] == max(r["candidate_scores"])
    assert r["activation"] == pytest.approx(max(r["candidate_scores"]), rel=1e-5)
    assert main([*args, "--out", str(tmp_path / "h")]) == 0
    assert f"(best of 2: candidate {r['candidate']})" in capsys.readouterr().out


@pytest.mark.parametrize("args, word", [
    ([], "--target"), (["--target", "class:1", "--reg-weight", "abc"], "--reg-weight"),
    (["--target", "class:1", "--reg-weight", "-1"], "--reg-weight"),
    (["--target", "class:1", "--reg-weight", "1,1"], "--reg-weight"),
    (["--target", "class:5000"], "unit 5000"), (["--target", "class:1", "--reg-layer", "nosuch"], "--reg-layer"),
    (["--target", "class:1", "--steps", "0"], "--steps"), (["--target", "class:1", "--param", "bogus"], "bogus"),
    (["--target", "class:1", "--judge", "bogus"], "bogus"), (["--target", "nonsense::"], "nonsense"),
    (["--target", "class:1", "--size", "3"], "--size"), (["--target", "class:1", "--max-rmse", "0"], "--max-rmse"),
    (["--target", "class:1", "--max-rmse", "8,x"], "--max-rmse"),
    (["--target", "class:1", "--max-rmse", "8,8"], "--max-rmse"),
    (["--target", "class:1", "--canvas", "9"], "--canvas"),
    (["--target", "class:1", "--canvas", "nan"], "--canvas"),
    (["--target", "class:1", "--candidates", "0"], "--candidates"),
    (["--target", "class:1", "--candidates", "two"], "--candidates"),
    (["--target", "class:1", "--cap-leak", "2"], "--cap-leak"),
    (["--target", "class:1", "--cap-leak", "1"], "--cap-leak")])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args: list, word: str) -> None:
    out = tmp_path / "o"
    assert main(["accentuate", "sample:chelsea", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and word in err
    assert not out.exists()


def test_cli_missing_image(tmp_path, capsys) -> None:
    assert main(["accentuate", str(tmp_path / "no.png"), "--target", "class:1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no.png" in err and not (tmp_path / "o").exists()


def test_maximize_cli_attribution_overlay(tmp_path, capsys) -> None:
    out = tmp_path / "m"
    assert main(["maximize", "--layer", "blocks.1", "--unit", "3", "--iters", "2", "--size", "48", "--attribution",
                 "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert r["attribution"].endswith("-attribution.png") and preimage.load_image(r["attribution"]).shape[-1] == 48


def test_side_by_side_page_loads_in_chromium(tmp_path, browser) -> None:
    import importlib.util
    from pathlib import Path

    from preimage.images import save_png
    from tests.conftest import PageCheck

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "accentuation_eval.py"
    spec = importlib.util.spec_from_file_location("accentuation_eval", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pngs = [save_png(torch.full((3, 16, 16), 40.0 * i), tmp_path / f"p{i}.png") for i in range(3)]
    recs = [{"method": "seed", "image": "a", "class": 1, "weight": 0.0, "half": "tuning", "png": str(pngs[0]),
             "probability": 0.001, "top1": False, "rmse": 0.0},
            {"method": "ours", "image": "a", "class": 1, "weight": 3.0, "half": "tuning", "png": str(pngs[1]),
             "probability": 0.9, "top1": True, "rmse": 20.0},
            {"method": "faccent (carried)", "image": "a", "class": 1, "weight": 1.0, "half": "tuning", "png": None,
             "probability": 0.5, "top1": False, "rmse": 14.0}]
    path = mod.page(recs, [{"image": "a", "class": 1, "name": "goldfish", "half": "tuning"}], tmp_path / "site")
    check = PageCheck(browser)
    check.open(path)
    imgs = check.images()
    assert len(imgs) == 2 and all(w == 112 for _, w in imgs)
    text = check.page.inner_text("body")
    assert "goldfish" in text and "p 0.90 top-1" in text and "(no picture kept)" in text
    assert not check.errors


def test_paired_comparison_reads_ours_at_the_peers_distance(tmp_path) -> None:
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "accentuation_eval.py"
    spec = importlib.util.spec_from_file_location("accentuation_eval", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def pic(method: str, cls: int, rmse: float, p: float) -> dict:
        return {"method": method, "image": "a", "class": cls, "half": "reporting", "rmse": rmse, "probability": p}

    recs = [pic("ours", 1, 10.0, 0.2), pic("ours", 1, 30.0, 0.6), pic("ours", 2, 10.0, 0.9),
            pic("peer", 1, 20.0, 0.5),  # ours at RMSE 20 on the same pair: 0.4, below the peer
            pic("peer", 1, 25.0, 0.4),  # ours 0.5: at least the peer
            pic("peer", 1, 40.0, 0.9),  # beyond ours' span: not compared
            pic("peer", 3, 20.0, 0.1)]  # a pair ours never ran
    t = mod.paired(recs)["reporting"]["peer"]
    assert t["outside"] == 2
    b16, b24 = t["bins"]["16–24"], t["bins"]["24–32"]
    assert (b16["n"], b16["ours_at_least"]) == (1, 0) and b16["ours"] == pytest.approx(0.4)
    assert (b24["n"], b24["ours_at_least"]) == (1, 1) and b24["ours"] == pytest.approx(0.5) and b24["peer"] == 0.4
    assert "0.500 / 0.400 [1; 0]" in mod.paired_markdown(mod.paired(recs))
    # The command: from an evaluation file, paired.md beside it; a method that is not there is one line, exit 2.
    (tmp_path / "accentuation.json").write_text(json.dumps({"pictures": recs}))
    run = [sys.executable, str(script), "paired", "--evaluation", str(tmp_path / "accentuation.json")]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    assert "0.500 / 0.400 [1; 0]" in (tmp_path / "paired.md").read_text()
    bad = subprocess.run([*run, "--ours", "nobody"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "nobody" in bad.stderr


def test_atlas_unit_pages_show_attribution_maps(tmp_path) -> None:
    from preimage.experiments.atlas import run_atlas
    from preimage.images import save_png

    imgs = tmp_path / "imgs"
    for name in ("chelsea", "coffee"):
        save_png(preimage.load_image(f"sample:{name}", 40)[0], imgs / f"{name}.png")
    out = tmp_path / "site"
    run_atlas(lite0_spec(), out, images=str(imgs), layers=["blocks.1"], units=[0], iters=2, size=48, inversions=1,
              unit_size=24, log=lambda s: None, style={"style": "natural", "attribution": True})
    page = (out / "layers" / "blocks.1" / "0.html").read_text()
    src = [s for s in page.split("'") + page.split('"') if s.endswith("-attribution.png")]
    assert src and (out / "layers" / "blocks.1" / src[0]).resolve().is_file()


def test_best_of_subsets_keeps_each_pairs_highest_score() -> None:
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "accentuation_best_of.py"
    spec = importlib.util.spec_from_file_location("accentuation_best_of", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    best_of_subsets = mod.best_of_subsets

    def draw(logits: list[float], ps: list[float]) -> dict:
        return {("im", c, 24.0): {"logit": z, "probability": p, "top1": p > 0.5}
                for c, z, p in zip((1, 2), logits, ps, strict=True)}

    draws = [draw([3, 1], [0.2, 0.9]), draw([2, 5], [0.6, 0.4]), draw([1, 4], [0.8, 0.7])]
    keys = [("im", 1, 24.0), ("im", 2, 24.0)]
    # pairs (0,1), (0,2), (1,2): class 1 keeps draw 0, 0, 1; class 2 keeps draw 1, 2, 1
    assert best_of_subsets(draws, keys, 2) == [(pytest.approx(0.3), 0), (pytest.approx(0.45), 1),
                                               (pytest.approx(0.5), 1)]
    assert best_of_subsets(draws, keys, 3) == [(pytest.approx(0.3), 0)]
    assert best_of_subsets(draws, keys, 1) == [(pytest.approx(0.55), 1), (pytest.approx(0.5), 1),
                                               (pytest.approx(0.75), 2)]


def test_a_bad_judge_is_refused_before_any_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import preimage.tasks.accentuate as acc
    import preimage.tasks.activation as act

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("optimized before the judge was checked")

    monkeypatch.setattr(acc, "optimize", never)
    monkeypatch.setattr(act, "optimize", never)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10)).eval()
    x0 = seed_image()
    for judge, target, message in ((3, "class:3", "a judge is a classifier's name"),
                                   (["efficientnet_lite1", 5], "class:3", "got 5"),
                                   ("no_such_net", "class:3", "unknown model 'no_such_net'"),
                                   ("efficientnet_lite1", "0:1", "a judge needs class targets")):
        with pytest.raises(PreimageError, match=message):
            accentuate(net, x0, target, judge=judge, max_rmse=[8.0, 40.0], steps=2)
        with pytest.raises(PreimageError, match=message):
            preimage.maximize(net, target, judge=judge, iters=2, size=32)


def test_a_class_target_on_a_network_without_classes_is_refused() -> None:
    x0 = seed_image()
    for target in ("class:3", "logprob:3"):
        with pytest.raises(PreimageError, match="hog has no classifier.*'output:3'"):
            accentuate("hog", x0, target, steps=2)
        with pytest.raises(PreimageError, match="hog has no classifier"):
            preimage.maximize("hog", target, iters=2, size=32)
    r = accentuate("hog", x0, "output:3", steps=2, max_rmse=8.0)
    assert r.problems[0]["target"] == "channel:output:3" and float(r.metrics["rmse"][0]) <= 8.0
