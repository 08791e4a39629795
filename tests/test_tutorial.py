"""The tutorial notebook (docs/tutorial.ipynb) runs top to bottom, shows its pictures and leaves the user's module as
it was: executed with nbclient in a scratch folder, with few steps on small pictures (PREIMAGE_TUTORIAL_QUICK=1)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    work = tmp_path_factory.mktemp("tutorial")
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    old = os.environ.get("PREIMAGE_TUTORIAL_QUICK")
    os.environ["PREIMAGE_TUTORIAL_QUICK"] = "1"    # the kernel inherits the environment
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(work)}})
        client.execute()
    finally:
        if old is None:
            os.environ.pop("PREIMAGE_TUTORIAL_QUICK")
        else:
            os.environ["PREIMAGE_TUTORIAL_QUICK"] = old
    return nb, work


def _outputs(cell) -> list[dict]:
    return list(cell.get("outputs", []))


def _text(cell) -> str:
    parts = []
    for o in _outputs(cell):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif "data" in o and "text/plain" in o["data"]:
            parts.append(o["data"]["text/plain"])
    return "".join(parts)


def _code(nb, needle: str):
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, needle
    return cells[0]


def test_no_cell_raises(executed):
    nb, _ = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in _outputs(c) if o.get("output_type") == "error"]
    assert errors == []


@pytest.mark.parametrize("needle,pictures", [
    ("preimage.invert(model", 3), ("preimage.Channel(", 1), ("preimage.Class(1)", 1),
    ("preimage.Direction(", 1), ("preimage.caricature(", 1), ("display(mine_pictures)", 1),
])
def test_each_result_shows_inline_as_a_picture(executed, needle, pictures):
    nb, _ = executed
    pngs = [o for o in _outputs(_code(nb, needle)) if "image/png" in o.get("data", {})]
    assert len(pngs) == pictures
    for o in pngs:
        assert len(o["data"]["image/png"]) > 1000    # a base64 PNG of a picture, not an empty image


def test_inversion_errors_are_numbers_in_range(executed):
    nb, _ = executed
    cell = _code(nb, "preimage.invert(model")
    last = [o for o in _outputs(cell) if o.get("output_type") == "execute_result"][-1]["data"]["text/plain"]
    errors = {k: float(v) for k, v in re.findall(r"'(blocks\.\d)': ([0-9.]+)", last)}
    assert set(errors) == {"blocks.1", "blocks.3", "blocks.5"}
    assert all(0 < e < 2 for e in errors.values())


def test_users_module_is_unchanged(executed):
    nb, _ = executed
    assert "my module unchanged: True" in _text(_code(nb, "my module unchanged"))


def test_judge_verdict_is_a_probability(executed):
    nb, _ = executed
    text = _text(_code(nb, "preimage.Class(1)"))
    p = float(re.search(r"judge p\(goldfish\) = ([0-9.e-]+)", text).group(1))
    assert 0 <= p <= 1


def test_save_writes_the_picture_and_its_record(executed):
    _, work = executed
    out = work / "tutorial-out"
    pngs = sorted(out.rglob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert records
