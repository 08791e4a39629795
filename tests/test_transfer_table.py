"""benchmarks/transfer.py's like-with-like table for a peer that finished only some classes, and its centre crops
of Horama's canvas."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer.py"


def _script():
    spec = importlib.util.spec_from_file_location("transfer_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_subset_table_recomputes_every_row_on_the_peers_classes() -> None:
    t = _script()
    info = {"classes": [1, 2, 3, 4], "rows": [
        {"method": "ours", "classes": [1, 2, 3, 4], "top1": [True, False, True, True],
         "probability": [0.9, 0.1, 0.5, 0.7], "mean_probability": 0.55, "top1_rate": 0.75},
        {"method": "peer", "classes": [2, 4], "top1": [False, True], "probability": [0.2, 0.6],
         "mean_probability": 0.4, "top1_rate": 0.5},
        {"method": "gone", "skipped": "no venv"}]}
    lines = t.subset_table(info)
    rows = {ln.split("|")[1].strip(): ln.split("|")[2:4] for ln in lines if ln.startswith("| ") and "method" not in ln}
    assert rows["ours"][0].strip() == "1/2" and float(rows["ours"][1]) == 0.4  # classes 2 and 4: (0.1 + 0.7) / 2
    assert rows["peer"][0].strip() == "1/2" and float(rows["peer"][1]) == 0.4
    assert "gone" not in rows
    info["rows"][1]["classes"] = [1, 2, 3, 4]  # a finished peer: no second table
    info["rows"][1].update(top1=[True] * 4, probability=[1.0] * 4)
    assert t.subset_table(info) == []


def test_centre_crops_cut_the_middle_of_the_canvas(tmp_path: Path) -> None:
    t = _script()
    canvas = np.zeros((100, 100, 3), np.uint8)
    canvas[40:60, 40:60] = 255  # a white square in the middle
    Image.fromarray(canvas).save(tmp_path / "class7.png")
    Image.fromarray(canvas).save(tmp_path / "class8.tmp.png")  # an unfinished write is left alone
    out = t.centre_crops(tmp_path, 0.2)
    crop = np.asarray(Image.open(out / "class7.png"))
    assert crop.shape == (20, 20, 3) and crop.min() == 255
    assert sorted(p.name for p in out.iterdir()) == ["class7.png"]
