"""Time-to-quality (``experiments.quality``, ``preimage bench --quality``): the rows are the errors of the runs they
name, and bad input ends in one line."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from preimage.cli import main
from preimage.errors import PreimageError
from preimage.experiments import heldout
from preimage.experiments.quality import image_specs, markdown, time_to_quality
from preimage.tasks.inversion import invert


def test_rows_are_the_median_errors_of_the_runs_they_name() -> None:
    info = time_to_quality("efficientnet_lite0", ["blocks.1"], 2, ["fast:6", "pixel:6:0.5"], size=32)
    row = info["rows"][0]
    assert info["methods"] == ["fast:6", "pixel:6:0.5"] and info["images"] == ["sample:astronaut", "sample:chelsea"]
    fast = invert("efficientnet_lite0", info["images"], layer="blocks.1", style="fast", iters=6, C=100.0, size=32)
    assert row["fast:6"]["errors"] == pytest.approx(fast.metrics["error"].tolist(), rel=1e-5)
    assert row["fast:6"]["median_error"] == pytest.approx(statistics.median(row["fast:6"]["errors"]))
    # pixel:6:0.5 is the paper's schedule scaled to 6 steps (5 with jitter + 1) at half its rate.
    from preimage.engine.schedules import Stage

    paper = invert("efficientnet_lite0", info["images"], layer="blocks.1", iters=None, C=100.0, size=32,
                   schedule=(Stage(5, 0.5, True), Stage(1, 0.05, False)))
    assert row["pixel:6:0.5"]["errors"] == pytest.approx(paper.metrics["error"].tolist(), rel=1e-5)
    assert row["fast_le_paper"] == (row["fast:6"]["median_error"] <= row["pixel:6:0.5"]["median_error"])
    assert f"| blocks.1 | {100 * row['fast:6']['median_error']:.1f} |" in markdown(info)


def test_cli_quality_json_and_bad_input(capsys) -> None:
    torch.manual_seed(0)
    rc = main(["bench", "quality", "--layer", "blocks.1", "--images", "1", "--methods", "pixel:4,fast:4",
               "--size", "32", "--json"])
    info = json.loads(capsys.readouterr().out)
    row = info["rows"][0]
    assert rc in (0, None) and row["layer"] == "blocks.1"
    assert row["fast_le_paper"] == (row["fast:4"]["median_error"] <= row["pixel:4"]["median_error"])
    for args, message in ((["--methods", "fast"], "PARAM:ITERS"), (["--iters", "3"], "No such option"),
                          (["--images", "9"], "between 1 and 8"), (["--images", "heldout:14"], "from 1 to 13"),
                          (["--images", "no/such.jpg"], "no/such.jpg"), (["--transfer"], "No such option"),
                          (["--methods", "fast:0"], "at least 1"), (["--methods", "pixel:3:-1"], "positive"),
                          (["--methods", ","], "at least one")):
        rc = main(["bench", "quality", "--layer", "blocks.1", "--size", "32", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and message in err[0]


def test_images_name_the_tuning_or_the_reporting_set() -> None:
    assert image_specs(2) == image_specs("2") == ["sample:astronaut", "sample:chelsea"]
    assert image_specs("sample:coffee, sample:chelsea") == ["sample:coffee", "sample:chelsea"]
    for bad, message in ((0, "between 1 and 8"), ("heldout:0", "from 1 to 13"), ("heldout:x", "from 1 to 13"),
                         ("heldout2:13", "from 1 to 12"), ("", "image files"), (["no/such.jpg"], "no/such.jpg")):
        with pytest.raises(PreimageError, match=message):
            image_specs(bad)
    if not all(Path(f).is_file() for f in heldout.FILES):
        pytest.skip(f"the held-out photographs need Debian's {heldout.PACKAGE} ({heldout.INSTALL})")
    assert image_specs("heldout") == list(heldout.FILES) and len(heldout.FILES) == 13
    assert image_specs("heldout:4") == list(heldout.FILES[:4])
    assert image_specs("heldout:4")[0] == "/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg"
    if all(Path(f).is_file() for f in heldout.FILES2):
        assert image_specs("heldout2:2") == ["/usr/share/backgrounds/mate/nature/Aqua.jpg",
                                             "/usr/share/backgrounds/mate/nature/Blinds.jpg"]
