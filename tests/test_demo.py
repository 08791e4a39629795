"""The tour (``preimage demo``) at tiny sizes: its JSON, its page in a browser, its atlas, no overwrite."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ARTIFACTS, PageCheck, keep_artifact
from PIL import Image

from preimage.cli import main

TINY = ["--size", "48", "--iters", "6", "--layers", "blocks.1,blocks.3", "--classes", "100,31", "--atlas-iters", "2",
        "--atlas-layer", "blocks.1", "--caricature-layer", "blocks.3"]


def test_demo_tour(tmp_path: Path, capsys, browser) -> None:  # noqa: ANN001
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), *TINY, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["layer"] for r in data["layers"]] == ["blocks.1", "blocks.3"]
    assert all(0 < r["error"] < 3 for r in data["layers"])
    assert [c["label"] for c in data["classes"]] == ["black swan", "tree frog"]
    assert all(0 <= c["probability"] <= 1 for c in data["classes"])
    # The judge's verdict is its softmax on the written PNG, read back as a user would.
    from preimage.measures.judge import Judge

    t = Judge("efficientnet_lite1").classes([out / c["image"] for c in data["classes"]], [100, 31])
    expected = [f"efficientnet_lite1 p = {p:.2f}{', top-1' if top else ''}"
                for p, top in zip(t["probability"], t["top1"], strict=True)]
    assert [c["judge"] for c in data["classes"]] == expected
    assert data["caricature"]["layer"] == "blocks.3" and data["caricature"]["gain"] > 0
    assert data["atlas"] == {"page": str(out / "atlas/index.html"), "layer": "blocks.1", "units": 24}
    assert data["jobs"]["failed"] == 0 and data["jobs"]["total"] == 2 + 1 + 1 + 24 + 3
    page = (out / "index.html").read_text()
    assert "blocks.3: error" in page and "black swan (100)" in page and "atlas/index.html" in page
    assert Image.open(out / "grid.png").size[0] > 3 * 48
    tab = PageCheck(browser)
    try:
        tab.open(out / "index.html")
        assert tab.assert_all_images_load() == 3 + 2 + 2 + 12  # inversions, classes, caricature, 12 thumbnails
        tab.page.click("text=Open the atlas")
        tab.page.wait_for_load_state("load")
        assert tab.page.url.endswith("atlas/index.html")
        tab.assert_all_images_load()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.open(out / "index.html")
        tab.page.screenshot(path=str(keep_artifact(ARTIFACTS / "demo-page.png")), full_page=True)
    finally:
        tab.close()
    assert main(["demo", "--out", str(out), *TINY]) == 2  # no overwrite without --force
    assert "already exists" in capsys.readouterr().err
    again = main(["demo", "--out", str(out), *TINY, "--force", "--json"])
    assert again == 0 and json.loads(capsys.readouterr().out)["jobs"]["cached"] == data["jobs"]["total"]
