"""reproduce cnn-layers (resumable protocol, table, JSON) and figures, at tiny sizes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import lite0_spec

from preimage import PreimageError
from preimage.cli import main
from preimage.experiments.reproduce import run_cnn_layers, run_figures
from preimage.experiments.reproduce.figures import FigureContext, neighbourhood_box
from preimage.images import list_images, load_image, save_png
from preimage.representations.layers import main_layers

LAYERS = ["conv_stem", "blocks.1"]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small PNGs, a text file that is not an image, and a PNG that does not decode."""
    d = tmp_path_factory.mktemp("imgs")
    for name in ("chelsea", "coffee"):
        save_png(load_image(f"sample:{name}", 48)[0], d / f"{name}.png", "clip")
    (d / "notes.txt").write_text("not an image")
    (d / "broken.png").write_bytes(b"not a png")
    return d


def _run(image_dir: Path, out: Path, **kw):
    kw = {"layers": LAYERS, "C": [1.0, 100.0], "size": 48, "iters": 4, "log": lambda s: None} | kw
    return run_cnn_layers(lite0_spec(), str(image_dir), out, **kw)


def test_main_layers_lite0() -> None:
    assert main_layers(lite0_spec()) == ["conv_stem", "bn1"] + [f"blocks.{i}" for i in range(7)] + [
        "conv_head", "bn2", "global_pool", "classifier"]


def test_list_images_skips_non_images(image_dir: Path, tmp_path: Path) -> None:
    warnings: list[str] = []
    good, skipped = list_images(str(image_dir), warnings.append)
    assert [Path(g).name for g in good] == ["chelsea.png", "coffee.png"]  # notes.txt is no image: not listed
    assert [Path(s).name for s in skipped] == ["broken.png"] and len(warnings) == 1
    assert list_images("samples")[0][0] == "sample:astronaut"
    with pytest.raises(PreimageError, match="no readable images"):
        list_images(str(tmp_path))


def _record(out: Path, info: dict, layer: str, cond: str, image: int) -> dict:
    """The stored record of one (layer, condition, image) job, found by its image and settings."""
    for rec in (json.loads(p.read_text()) for p in out.glob("store/*/*/record.json")):
        o = rec["job"]["options"]
        if rec["job"]["layer"] == layer and f"C{o['C']:g}" == cond and len(rec["result"]["problems"]) and \
                rec["result"]["problems"][0]["image"] == info["images"]["names"][image]:
            return rec
    raise AssertionError("no such record")


def test_cnn_layers_table_json_and_resume(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    info = _run(image_dir, out)
    assert info["jobs"] == {"total": 8, "done": 8, "cached": 0, "failed": 0}
    assert info["images"]["count"] == 2 and info["images"]["skipped"] == 1
    assert info["iters"] == 4 and info["size"] == 48 and info["reduced"] is True
    assert [(r["layer"], r["C"]) for r in info["rows"]] == [(la, c) for la in LAYERS for c in (1.0, 100.0)]

    # Every row is the mean and 1.96·std/√n of its records (one restart: one value per image).
    probs = [_record(out, info, "blocks.1", "C100", i)["result"]["problems"][0] for i in range(2)]
    row = next(r for r in info["rows"] if r["layer"] == "blocks.1" and r["C"] == 100.0)
    errs = [p["error"] for p in probs]
    assert row["error"] == pytest.approx(sum(errs) / 2, abs=1e-6)
    assert row["error_ci"] == pytest.approx(1.96 * (abs(errs[0] - errs[1]) / math.sqrt(2)) / math.sqrt(2), abs=1e-6)
    assert row["label_agreement"] == pytest.approx(sum(p["agree"] for p in probs) / 2)
    assert row["image_error"] == pytest.approx(
        sum(p["image_distance"] for p in probs) / 2 / info["image_error_normalizer"], rel=1e-4)
    assert 0 < row["naturalness"] <= 1 and row["restart_spread"] is None
    table = (out / "table.md").read_text()
    assert f"| blocks.1 | 100 | 2 | {100 * row['error']:.1f} ± {100 * row['error_ci']:.1f} |" in table
    for f in ("cnn-layers.json", "index.html", "plot-error.png", "plot-label-agreement.png",
              "plot-naturalness.png", "originals/chelsea.png"):
        assert (out / f).is_file(), f
    assert json.loads((out / "cnn-layers.json").read_text())["rows"] == info["rows"]

    # Interrupt: one result lost, one damaged, one half-written temporary left behind. Only those two jobs
    # are recomputed; the others are untouched.
    records = sorted(out.glob("store/*/*/record.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in records}
    lost = _record(out, info, "conv_stem", "C100", 0)
    damaged = _record(out, info, "blocks.1", "C1", 1)
    lost_dir = out / "store" / lost["key"][:2] / lost["key"]
    damaged_png = out / "store" / damaged["key"][:2] / damaged["key"] / "r0.png"
    (lost_dir / "record.json").unlink()
    damaged_png.write_bytes(damaged_png.read_bytes()[:100])
    (lost_dir / ".r0.png.x1y2.part").write_text("half")
    again = _run(image_dir, out)
    assert again["jobs"] == {"total": 8, "done": 2, "cached": 6, "failed": 0}
    assert (lost_dir / "record.json").is_file() and not list(out.glob("store/**/.*.part"))
    for p in records:
        if p.parent not in (lost_dir, damaged_png.parent):
            assert p.stat().st_mtime_ns == mtimes[p], p
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(again["rows"]) == drop(info["rows"])

    # A different configuration's report is not written over this one's (without --force).
    with pytest.raises(PreimageError, match="different run.*iters"):
        _run(image_dir, out, iters=5)
    # Adding a C value is another table too: refused, then with force it computes only the new jobs.
    with pytest.raises(PreimageError, match="different run.*C"):
        _run(image_dir, out, C=[1.0, 100.0, 20.0])
    more = _run(image_dir, out, C=[1.0, 100.0, 20.0], force=True)
    assert more["jobs"] == {"total": 12, "done": 4, "cached": 8, "failed": 0}


def test_cnn_layers_restarts_and_noreg(image_dir: Path, tmp_path: Path) -> None:
    info = _run(image_dir, tmp_path / "r", layers=["conv_stem"], C=[100.0], restarts=2, noreg=True, iters=3)
    assert [r["condition"] for r in info["rows"]] == ["C100", "noreg-C1"]
    by_img: dict[str, list[float]] = {}
    for i in range(2):
        for p in _record(tmp_path / "r", info, "conv_stem", "C100", i)["result"]["problems"]:
            by_img.setdefault(p["image"], []).append(p["error"])
    spreads = [float(torch.tensor(v).std()) for v in by_img.values()]
    assert info["rows"][0]["restart_spread"] == pytest.approx(sum(spreads) / 2, abs=1e-6)
    assert (tmp_path / "r/plot-restart-spread.png").is_file()


def test_cli_cnn_layers_json(image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["reproduce", "cnn-layers", "--images", str(image_dir), "--layers", "conv_stem", "--C", "1",
               "--size", "48", "--iters", "2", "--out", str(tmp_path / "o"), "--json"])
    cap = capsys.readouterr()
    assert rc == 0
    info = json.loads(cap.out)
    assert info["rows"][0]["layer"] == "conv_stem" and info["images"]["skipped"] == 1
    assert "skipping" in cap.err and "broken.png" in cap.err


@pytest.mark.parametrize("args, message", [
    (["--images", "{empty}"], "no readable images"),
    (["--images", "{imgs}", "--layers", "blocks.99"], "unknown layer"),
    (["--images", "{imgs}", "--C", "0"], "--C values must be numbers from"),
    (["--images", "{imgs}", "--eval-scale", "gamma"], "eval-scale"),
])
def test_cli_bad_input(args: list[str], message: str, image_dir: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", imgs=image_dir) for a in args]
    rc = main(["reproduce", "cnn-layers", *args, "--size", "48", "--iters", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len([ln for ln in err if ln.startswith("error:")]) == 1 and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_neighbourhood_box_conv_stem(tmp_path: Path) -> None:
    ctx = FigureContext(lite0_spec(), tmp_path, size=64)
    # 32×32 map, stride 2, field 3: centre neuron 15 → pixel 30.5; 5 neurons span 3 + 4·2 = 11 pixels.
    assert neighbourhood_box(ctx, "conv_stem") == (25, 25, 36, 36)
    assert neighbourhood_box(ctx, "classifier") == (0, 0, 63, 63)


def test_figures_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = run_figures(lite0_spec(), tmp_path / "f", layers=["conv_stem", "blocks.1", "classifier"], size=48,
                       iters=2, log=lambda s: None,
                       sections=["all-layers", "neighbourhoods", "channel-halves", "jitter-beta", "maximize",
                                 "classes", "caricatures", "noreg-activation"])
    by = {s["name"]: s for s in info["sections"]}
    assert all(s["skipped"] is None for s in info["sections"])
    assert len(by["all-layers"]["figures"]) == 4  # original + 3 layers
    assert len(by["jitter-beta"]["figures"]) == 6
    assert len(by["neighbourhoods"]["figures"]) == 2  # the spatial layers only
    assert by["classes"]["figures"][0]["caption"] == "black swan (unit 100)"
    for s in info["sections"]:
        for f in s["figures"]:
            assert (tmp_path / "f" / f["image"]).is_file()
    page = (tmp_path / "f/index.html").read_text()
    assert "Effect of jitter and β" in page and "Class neurons" in page
    with pytest.raises(PreimageError, match="already exists"):
        run_figures(lite0_spec(), tmp_path / "f", sections=["all-layers"], log=lambda s: None)


def test_cnn_layers_on_a_representation_without_layers(image_dir: Path, tmp_path: Path) -> None:
    info = run_cnn_layers("hog", str(image_dir), tmp_path / "h", C=[100.0], size=48, iters=3, log=lambda s: None)
    assert info["layers"] == ["output"] and info["label_agreement"] is False
    assert info["rows"][0]["label_agreement"] is None and info["rows"][0]["error"] > 0


def test_reports_open_in_a_browser(image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   browser) -> None:  # noqa: ANN001
    """The cnn-layers and figures pages load every image, with no console error (headless chromium)."""
    from conftest import ARTIFACTS, PageCheck, keep_artifact

    _run(image_dir, tmp_path / "c", layers=["conv_stem"], C=[100.0], iters=2)
    run_figures(lite0_spec(), tmp_path / "f", layers=["conv_stem"], size=48, iters=2,
                log=lambda s: None, sections=["all-layers", "classes", "caricatures"])
    tab = PageCheck(browser)
    try:
        tab.open(tmp_path / "c/index.html")
        assert tab.assert_all_images_load() >= 5  # plots, originals, pre-images
        tab.open(tmp_path / "f/index.html")
        assert tab.assert_all_images_load() == 2 + 7 + 2  # original + layer, 7 classes, original + caricature
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(keep_artifact(ARTIFACTS / "figures-page.png")), full_page=True)
    finally:
        tab.close()
