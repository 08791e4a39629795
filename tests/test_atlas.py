"""The atlas: a small one built and browsed in headless chromium; its dataset examples checked against a
direct computation; resuming; bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import ARTIFACTS, PageCheck, keep_artifact, lite0, lite0_spec

from preimage.cli import main
from preimage.errors import PreimageError
from preimage.experiments.atlas import run_atlas
from preimage.images import load_image, save_png
from preimage.measures.examples import crop, crop_box, layer_examples
from preimage.representations.points import response_point
from preimage.tasks.common import prepare_images

SMALL = {"layers": ["conv_stem", "blocks.1"], "units": [0, 1, 2], "iters": 3, "size": 48, "inversions": 1,
         "unit_size": 24, "log": lambda s: None}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("atlas-imgs")
    for name in ("chelsea", "coffee", "astronaut"):
        save_png(load_image(f"sample:{name}", 40)[0], d / f"{name}.png", "clip")
    (d / "broken.png").write_bytes(b"not a png")
    return d


@pytest.fixture(scope="module")
def site(images: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("atlas") / "site"
    return out, run_atlas(lite0_spec(), out, images=str(images), **SMALL)


def test_site_manifest_and_pages(site: tuple[Path, dict]) -> None:
    out, info = site
    assert info["jobs"] == {"total": 2 * 3 + 2 * 3, "done": 12, "cached": 0, "failed": 0}
    man = json.loads((out / "manifest.json").read_text())
    assert [la["name"] for la in man["layers"]] == ["conv_stem", "blocks.1"]
    stem = man["layers"][0]
    assert stem["shape"] == [32, 112, 112] and stem["stride"] == [2, 2] and stem["receptive_field"] == [3, 3]
    assert [u["unit"] for u in stem["units"]] == [0, 1, 2] and len(stem["units"][0]["pre_images"]) == 2
    assert man["images"] == 3  # the unreadable file is skipped
    for f in man["artefacts"]:
        assert (out / f).is_file(), f
    assert {"index.html", "layers/blocks.1/index.html", "layers/blocks.1/2.html"} <= set(man["artefacts"])
    # Every page links only to files that exist.
    for page in out.glob("**/*.html"):
        for target in re.findall(r"(?:href|src)='([^']+)'", page.read_text()):
            if not target.startswith("data:"):
                assert (page.parent / target).is_file(), (page, target)
    layer = (out / "layers/blocks.1/index.html").read_text()
    assert layer.count("loading='lazy'") == 3 and "inversion: error" in layer and "caricature: score" in layer


def test_examples_are_the_strongest_responses(images: Path) -> None:
    rep = lite0("blocks.1")
    specs = sorted(str(p) for p in images.glob("[!b]*.png"))
    res = layer_examples(rep, specs, size=48, k=2, thumbnail=16)
    rp, _ = response_point(rep)
    x, _, _ = prepare_images(rp, specs, 48)
    with torch.no_grad():
        phi = rp(rp.to_paper_units(x))  # N×C×h×w
    per_image = phi.flatten(2).amax(2)  # N×C
    for u in (0, 5):
        ex = res.record["units"][str(u)]
        want = per_image[:, u].topk(2)
        assert [e["activation"] for e in ex["examples"]] == pytest.approx(want.values.tolist(), rel=1e-5)
        assert [e["image"] for e in ex["examples"]] == [specs[i] for i in want.indices.tolist()]
        assert ex["max"] == pytest.approx(float(phi[:, u].max()), rel=1e-5)
        assert ex["mean"] == pytest.approx(float(phi[:, u].double().mean()), rel=1e-4, abs=1e-6)
        assert sum(ex["per_image_max"]["counts"]) == 3
    assert res.record["field"] == [19, 19] and res.record["map"] == [12, 12]
    assert set(res.files) == {f"u{u}.png" for u in range(24)}


def test_crop_geometry() -> None:
    # 12×12 map of a 48 px image (stride 4), field 19: neuron (0, 11) is centred at (1.5, 45.5).
    assert crop_box((0, 11), (12, 12), (48, 48), (19, 19)) == (37, -7, 55, 11)
    assert crop_box((3, 3), (1, 1), (48, 40), None) == (0, 0, 39, 47)
    img = torch.arange(48.0).repeat(3, 48, 1)  # value = column
    c = crop(img, (37, -7, 55, 11), 19)
    assert c.shape == (3, 19, 19) and float(c[0, 10, 0]) == pytest.approx(37, abs=0.5)
    assert float(c[0, 0, 0]) == 128.0 and float(c[0, 10, 18]) == 128.0  # beyond the border: grey


def test_rerun_resumes_and_refuses_another_model(site: tuple[Path, dict], images: Path) -> None:
    out, first = site
    page = (out / "layers/conv_stem/1.html").read_text()
    again = run_atlas(lite0_spec(), out, images=str(images), **SMALL)
    assert again["jobs"] == {"total": 12, "done": 0, "cached": 12, "failed": 0}
    assert (out / "layers/conv_stem/1.html").read_text() == page
    with pytest.raises(PreimageError, match="another model"):
        run_atlas("efficientnet_lite0", out, random_weights=True, images=str(images), **SMALL)


def test_browse_the_atlas(site: tuple[Path, dict], browser) -> None:  # noqa: ANN001
    out, _ = site
    tab = PageCheck(browser)
    try:
        tab.open(out / "index.html")
        assert tab.assert_all_images_load() == 0
        tab.page.click("text=blocks.1")
        tab.page.wait_for_load_state("load")
        assert tab.page.url.endswith("layers/blocks.1/index.html")
        assert tab.assert_all_images_load() == 3 + 3  # original, inversion, caricature + 3 unit thumbnails
        tab.page.click("a[href='1.html']")
        tab.page.wait_for_load_state("load")
        assert tab.page.url.endswith("layers/blocks.1/1.html")
        assert tab.assert_all_images_load() == 3  # 2 pre-images + the examples
        assert "Dataset examples" in tab.page.content()
        tab.page.click("text=next unit")
        tab.page.wait_for_load_state("load")
        assert tab.page.url.endswith("layers/blocks.1/2.html")
        tab.page.go_back()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(keep_artifact(ARTIFACTS / "atlas-unit-page.png")), full_page=True)
        assert (ARTIFACTS / "atlas-unit-page.png").stat().st_size > 10_000
    finally:
        tab.close()


@pytest.mark.parametrize("args, message", [
    (["--layers", "blocks.99"], "unknown layer"),
    (["--layers", "blocks.1", "--units", "500"], "no layer has any of the units"),
    (["--units", "3-1"], "--unit takes"),
    (["--iters", "0"], "--iters"),
    (["--images", "{missing}"], "not found"),
    (["--ray", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--address", "nonsense"], "bad Ray address"),
])
def test_cli_bad_input(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(missing=tmp_path / "nope") for a in args]
    rc = main(["atlas", *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_network_of_one_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["atlas", "--model", "hog", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: hog is one module, with no layers inside to lay out; see its output's units "
                               "with 'preimage maximize --model hog --unit 0-26'"]
    assert not (tmp_path / "o").exists()
