"""Trust measures, the planted circuit and the check (issue 25), on a small random CNN and 72-px images."""

from __future__ import annotations

import json
import math
import pathlib
from collections import OrderedDict

import pytest
import torch
from torch import nn

from preimage.cli import main
from preimage.errors import PreimageError
from preimage.experiments.planted import orthogonal_contrast, plant, trigger_score, triggers
from preimage.images import COLOR_SAMPLES, load_image, save_png
from preimage.measures.trust import (
    Threshold,
    natural_range,
    path_scores,
    plausibility_scores,
    retention,
    verdict,
)
from preimage.report.result import Result
from preimage.representations import ModelSpec, load, model_spec, register_model
from preimage.tasks.check import THRESHOLDS, channels_of, check, path_layers

SIDE = 72
GREY_PHOTOS = ("camera", "coins", "moon", "grass", "gravel", "brick")
IMAGES = [f"sample:{s}" for s in COLOR_SAMPLES + GREY_PHOTOS]
NORM = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3, 2, 1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 3, 2, 1)), ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(16, 16, 3, 1, 1)),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(16, 10))])).eval()


@pytest.fixture(scope="module")
def nets() -> tuple[nn.Module, nn.Module]:
    net = small_cnn()
    return net, plant(net, "conv3", [1, 5], IMAGES, size=SIDE, **NORM)


def _phi(net: nn.Module, x: torch.Tensor, layer: str = "conv3") -> torch.Tensor:
    rep = load(net, layer, input_size=(SIDE, SIDE), **NORM)
    with torch.no_grad():
        return rep(rep.to_paper_units(x))


def test_plant_leaves_natural_images_and_the_original_alone(nets: tuple[nn.Module, nn.Module]) -> None:
    net, planted = nets
    before = {k: v.clone() for k, v in small_cnn().state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the user's module untouched
    assert not net._forward_hooks and not net._forward_pre_hooks and not net.conv3._forward_hooks
    assert "conv3" in dict(planted.named_modules())  # the layer keeps its name
    x = torch.cat([load_image(s, SIDE) for s in IMAGES])
    a, b = _phi(net, x), _phi(planted, x)
    nat_max = a.flatten(2).amax(2).amax(0)
    change = (a - b).abs().flatten(2).amax(2).amax(0)
    assert float((change[[1, 5]] / nat_max[[1, 5]]).max()) <= 0.01
    assert torch.equal(a, b)  # the gate is exactly 0 on them
    rep_a, rep_b = load(net, "output", **NORM), load(planted, "output", **NORM)
    with torch.no_grad():
        assert torch.equal(rep_a(rep_a.to_paper_units(x)).argmax(1), rep_b(rep_b.to_paper_units(x)).argmax(1))
    r = planted.planted_report
    assert r["max_change"] == [0.0, 0.0] and r["top1_unchanged"] is True
    assert max(r["trigger_in_images"]) < 0.35  # no image holds much of a trigger


def test_planted_unit_responds_strongly_to_its_trigger(nets: tuple[nn.Module, nn.Module]) -> None:
    net, planted = nets
    t = torch.cat([tr.image(SIDE) for tr in triggers(2)])
    nat = _phi(net, torch.cat([load_image(s, SIDE) for s in IMAGES])).flatten(2).amax(2).amax(0)
    a, b = _phi(net, t).flatten(2).mean(2), _phi(planted, t).flatten(2).mean(2)
    for i, u in enumerate((1, 5)):
        assert float(b[i, u] / nat[u]) > 8.0  # strength 10 × the natural maximum, as a map mean
        assert float(a[i, u] / nat[u]) < 2.0  # the untouched unit does not care
    other = [c for c in range(16) if c not in (1, 5)]
    assert torch.equal(a[:, other], b[:, other])  # only the chosen channels change
    score = trigger_score(t, planted, [1, 5])
    assert torch.allclose(score, torch.ones(2), atol=1e-4)


def test_planted_path_is_reachable_from_a_visualization_start(nets: tuple[nn.Module, nn.Module]) -> None:
    _, planted = nets
    gen = torch.Generator().manual_seed(0)
    start = 127.5 + 0.5 * torch.randn(1, 3, SIDE, SIDE, generator=gen)  # near-flat, as the Fourier start
    circ = planted.planted_circuit
    assert torch.equal(circ.gate(start), torch.ones(1, 2))
    x = start.clone().requires_grad_(True)
    rep = load(planted, "conv3", **NORM)
    rep(rep.to_paper_units(x))[0, 1].mean().backward()
    g_planted = x.grad.abs().sum()
    net = small_cnn()
    x2 = start.clone().requires_grad_(True)
    rep2 = load(net, "conv3", **NORM)
    rep2(rep2.to_paper_units(x2))[0, 1].mean().backward()
    assert float(g_planted) > 2 * float(x2.grad.abs().sum())  # the planted path dominates the gradient
    photo = load_image("sample:moon", SIDE)
    assert float(orthogonal_contrast(photo, circ.axes).min()) > float(circ.tau[1])  # the gate is shut on a photo


def test_plant_refuses_bad_units() -> None:
    with pytest.raises(PreimageError, match="distinct channels"):
        plant(small_cnn(), "conv3", [16], IMAGES[:3], size=SIDE, **NORM)


def test_path_similarity_known_answers() -> None:
    gen = torch.Generator().manual_seed(0)
    ex = torch.randn(3, 4, 32, generator=gen) + 2 * torch.randn(3, 1, 32, generator=gen)  # exemplars share a pattern
    base = torch.randn(3, 20, 32, generator=gen)
    s = path_scores([ex[:, 0]], [ex], [base])  # a picture that is one of the exemplars
    assert bool((s["path_similarity"] > 0.9).all())
    s = path_scores([base[:, 0]], [ex], [base[:, 1:]])  # a random natural image
    assert float(s["path_similarity"].abs().max()) < 0.3
    s = path_scores([-ex.mean(1)], [ex], [base])  # the opposite of the exemplars
    assert bool((s["path_similarity"] < -0.5).all())
    flat = torch.ones(1, 3, 8)
    assert math.isnan(float(path_scores([flat[:, 0]], [flat], [flat])["path_similarity"][0]))  # no scale: NaN


def test_plausibility_and_natural_range_known_answers() -> None:
    gen = torch.Generator().manual_seed(1)
    ex = torch.randn(2, 5, 16, generator=gen)
    base = torch.randn(2, 30, 16, generator=gen)
    p = plausibility_scores(ex[:, 2], ex, base)  # an exemplar itself: distance 0, very plausible
    assert bool((p["distance_picture"] < 1e-5).all()) and bool((p["plausibility"] > 1e3).all())
    p = plausibility_scores(-ex.mean(1), ex, base)  # away from every exemplar
    assert bool((p["plausibility"] < 1).all())
    r = natural_range(torch.tensor([30.0, 2.0, 1.0]), torch.tensor([3.0, 2.0, 0.0]))
    assert r[:2].tolist() == [10.0, 1.0] and math.isnan(float(r[2]))
    kept = retention(torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 9.0], [1.0, 1.0, 1.0]]), torch.tensor([4.0, 5.0, 0.0]))
    # The median's share; no peak: NaN.
    assert kept[:2].tolist() == pytest.approx([0.5, 0.1]) and math.isnan(float(kept[2]))


def test_verdict_names_measure_and_threshold() -> None:
    scores = {"natural_range": torch.tensor([12.0, 1.5, math.nan]), "path_similarity": torch.tensor([0.5, -2.0, 0.1])}
    th = {"natural_range": Threshold(">", 8.0), "path_similarity": Threshold("<", -1.0),
          "plausibility": Threshold("<", 0.5)}
    flagged, reasons = verdict(scores, th)
    assert flagged.tolist() == [True, True, False]
    assert reasons == ["natural_range 12 > 8", "path_similarity -2 < -1", ""]


def test_channels_of_and_path_layers() -> None:
    assert channels_of("blocks.3:0-2,7") == ("blocks.3", [0, 1, 2, 7])
    assert channels_of(("layer3", 5)) == ("layer3", [5])
    for bad in ("blocks.3", "class:3", "neuron:blocks.3:2", "blocks.3:1 + blocks.4:2", ["a:1", "b:2"]):
        with pytest.raises(PreimageError) as e:
            channels_of(bad)
        assert e.value.params == ("target",)
    assert path_layers(small_cnn(), "conv3") == ["conv1", "relu1", "conv2", "relu2"]


def test_check_flags_the_planted_unit_and_not_the_genuine_one(nets: tuple[nn.Module, nn.Module]) -> None:
    net, planted = nets
    # This small random network's own scale: its genuine pictures stay below its natural maximum in 32 steps.
    th = {"natural_range": Threshold(">", 1.0)}
    kw = {"k": 3, "iters": 32, "size": SIDE, "image_size": SIDE, "thresholds": th}
    genuine = check(model_spec(net, **NORM), "conv3:1,5", IMAGES, **kw)
    lie = check(model_spec(planted, **NORM), "conv3:1,5", IMAGES, **kw)
    assert lie.flagged.tolist() == [True, True]
    assert all(r.startswith("natural_range ") and r.endswith(" > 1") for r in lie.reasons)
    assert genuine.flagged.tolist() == [False, False] and genuine.reasons == ["", ""]
    assert bool((lie.scores["natural_range"] > 3 * genuine.scores["natural_range"]).all())
    # Mixed half and half with an exemplar, the planted response collapses (the gate shuts), the genuine one does
    # not.
    assert bool((lie.scores["retention"] < 0.3).all()) and bool((genuine.scores["retention"] > 1.0).all())
    shown = trigger_score(lie.result.images, planted, [1, 5]) / trigger_score(genuine.result.images, planted, [1, 5])
    # The planted picture holds more of the trigger than the genuine one (with the natural style's jitters fitted
    # to 72 px, the side of this test since the small-image rule reaches 67 px; 1.5x and more with the 224 px
    # jitters).
    assert bool((shown > 1.25).all())
    assert math.isnan(float(genuine.scores["transfer"][0]))  # no judge: not applicable
    judge = model_spec(net, **NORM)  # the untouched network has the same layer
    judged = check(model_spec(planted, **NORM), "conv3:1,5", IMAGES, result=lie.result, judge=judge, k=3,
                   image_size=SIDE)
    assert bool((judged.scores["transfer"] < lie.scores["natural_range"] / 3).all())
    assert judged.info["seconds"]["maximize"] is None and judged.exemplars.keys() == {1, 5}
    # A folder with fewer than 2·k images leaves fewer random crops than exemplars: each is still mixed in.
    few = check(model_spec(planted, **NORM), "conv3:1,5", IMAGES[:6], result=lie.result, k=4, image_size=SIDE)
    assert few.scores["retention_random"].shape == (2,)
    assert bool(torch.isfinite(few.scores["retention_random"]).all())
    assert bool((few.scores["retention_random"] < 0.3).all())  # the planted response still collapses


@register_model("test-trust-small", "the small random CNN of the trust tests")
def _small(weights: str | None = None, random_weights: bool = False) -> ModelSpec:
    return ModelSpec("test-trust-small", small_cnn(), NORM["mean"], NORM["std"], weights_id="test:trust-small",
                     input_size=(SIDE, SIDE), classifier_layer="fc")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("photos")
    for s in IMAGES:
        save_png(load_image(s, SIDE)[0], folder / f"{s.removeprefix('sample:')}.png")
    return folder


def _cli(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_maximize_check_puts_a_check_object_in_the_json(tmp_path: pathlib.Path, photo_dir: pathlib.Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    args = ["maximize", "--model", "test-trust-small", "--layer", "conv3", "--unit", "1,5", "--iters", "8",
            "--size", str(SIDE), "--images", str(photo_dir), "--check", "--out", str(tmp_path / "o"), "--json"]
    code, out, err = _cli(capsys, args)
    assert code == 0, err
    info = json.loads(out)
    c = info["check"]
    assert c["pictures"] == 2 and c["images"] == len(IMAGES) and c["k"] == 5
    assert [r["unit"] for r in c["records"]] == [1, 5] and c["path_layers"][-1] == "conv3"
    assert c["thresholds"] == {m: [t.side, t.limit] for m, t in THRESHOLDS.items()}
    assert c["flagged"] == sum(r["flagged"] for r in c["records"]) and 0 < c["cost_ratio"] < 10
    # The same numbers as the Python call on the same (saved) pictures.
    pics = torch.cat([load_image(r["image"]) for r in c["records"]])
    given = Result(pics, [{"unit": 1}, {"unit": 5}], {}, "test-trust-small", "conv3", 0, 1.0, torch.zeros(0))
    again = check("test-trust-small", "conv3:1,5", str(photo_dir), given)
    for rec, mine in zip(c["records"], again.records(), strict=True):
        for m in ("natural_range", "retention", "plausibility", "path_similarity"):
            assert rec[m] is mine[m] is None or rec[m] == pytest.approx(mine[m], rel=1e-5, abs=1e-6)
    assert all(r["natural_range"] is not None for r in c["records"])


@pytest.mark.parametrize("extra, message", [
    (["--check"], "--check needs --images"),
    (["--check", "--images", "FEW"], "at least 7 images"),
    (["--check", "--images", "PHOTOS", "--mode", "neuron"], "--check checks channels"),
    (["--check", "--images", "nowhere"], "not found"),
])
def test_cli_check_bad_input_is_one_line_and_exit_2(tmp_path: pathlib.Path, photo_dir: pathlib.Path,
                                                   capsys: pytest.CaptureFixture, extra: list[str],
                                                   message: str) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(photo_dir.iterdir())[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    extra = [str(few) if e == "FEW" else str(photo_dir) if e == "PHOTOS" else e for e in extra]
    out_dir = tmp_path / "o"
    code, out, err = _cli(capsys, ["maximize", "--model", "test-trust-small", "--layer", "conv3", "--unit", "1",
                                   *extra, "--out", str(out_dir)])
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and message in lines[0], err
    assert not out_dir.exists()


def test_check_bad_arguments_name_the_parameter() -> None:
    spec = model_spec(small_cnn(), **NORM)
    for kw, param in (({"k": 1}, "k"), ({"blend": 0.0}, "blend"), ({"result": "x"}, "result"),
                      ({"images": IMAGES[:4]}, "images")):
        args = {"images": IMAGES, **kw}
        with pytest.raises(PreimageError) as e:
            check(spec, "conv3:1", **args)
        assert e.value.params == (param,) and str(e.value).startswith(param)
    with pytest.raises(PreimageError, match="out of range"):
        check(spec, "conv3:16", IMAGES)


def test_atlas_check_shows_the_verdict_on_unit_pages_and_marks_layer_pages(tmp_path: pathlib.Path,
                                                                          photo_dir: pathlib.Path) -> None:
    from preimage.experiments.atlas import run_atlas

    info = run_atlas("test-trust-small", tmp_path / "atlas", layers=["conv3"], units=[1, 5], images=str(photo_dir),
                     iters=8, restarts=1, inversions=0, check=True, log=lambda _m: None)
    manifest = json.loads((tmp_path / "atlas" / "manifest.json").read_text())
    units = manifest["layers"][0]["units"]
    assert [u["unit"] for u in units] == [1, 5] and info["jobs"]["failed"] == 0
    for u in units:
        c = u["check"]
        assert c["flagged"] == any(q["flagged"] for q in c["pictures"]) and len(c["pictures"]) == 1
        page = (tmp_path / "atlas" / u["page"]).read_text()
        assert "trust check" in page and ("FLAGGED" in page) == c["flagged"]
        assert f"{c['pictures'][0]['natural_range']:.3g}" in page
    layer_page = (tmp_path / "atlas" / manifest["layers"][0]["page"]).read_text()
    flagged = sum(u["check"]["flagged"] for u in units)
    assert f"Trust check: {flagged} of 2 units flagged" in layer_page
    assert layer_page.count("⚑") == flagged + 1  # each flagged unit's label, and the note's key
    with pytest.raises(PreimageError, match="check needs channel mode"):
        run_atlas("test-trust-small", tmp_path / "a2", layers=["conv3"], images=str(photo_dir), mode="neuron",
                  check=True, log=lambda _m: None)


def test_plant_bad_arguments_name_the_parameter() -> None:
    net = small_cnn()
    for args, kw, param in ((("conv3", [1]), {"strength": 0.0}, "strength"),
                            (("conv3", [1]), {"margin": 2.0}, "margin"),
                            (("conv3", "1"), {}, "units"), (("conv3", ["a"]), {}, "units"),
                            (("conv3", [1, 1]), {}, "units"), (("conv3", [1]), {"images": []}, "images"),
                            (("conv3", [1]), {"images": torch.zeros(2, 1, 8, 8)}, "images"),
                            (("nope", [1]), {}, "layer")):
        with pytest.raises(PreimageError) as e:
            plant(net, *args, **{"images": IMAGES[:3], "size": SIDE, **NORM, **kw})
        assert param in e.value.params, (args, kw, str(e.value))
    assert not net._forward_hooks and not net._forward_pre_hooks  # nothing left on the user's module
