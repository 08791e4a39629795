"""Best of k candidates (``tasks/candidates.py``): the kept picture is the one the network itself scores highest."""

from __future__ import annotations

import pytest
import torch

from preimage.engine.styles import STYLES, Style, get_style, style_record
from preimage.errors import PreimageError
from preimage.experiments import smallnet
from preimage.tasks.candidates import best_of, candidate_problems


def test_best_of_picks_each_pictures_highest_candidate() -> None:
    s = torch.tensor([0.1, 0.5, float("nan"), 0.2, 0.3, 0.3])
    assert best_of(s, 2).tolist() == [1, 3, 4]  # NaN loses to a number; a tie keeps the first
    assert best_of(torch.tensor([0.1, 0.5, 0.2, 0.3, 0.3, 0.9]), 3).tolist() == [1, 5]
    assert best_of(torch.tensor([0.4, 0.2]), 1).tolist() == [0, 1]
    with pytest.raises(ValueError):
        best_of(torch.zeros(5), 2)
    # candidate 0 is the problem itself (its seed unchanged), the others are told apart
    assert candidate_problems([{"target": "class:1"}], 3) == [
        {"target": "class:1"}, {"target": "class:1", "candidate": 1}, {"target": "class:1", "candidate": 2}]


def test_maximize_keeps_the_candidate_with_the_highest_own_probability() -> None:
    from preimage.tasks.activation import maximize

    torch.set_num_threads(1)
    rep, stats = smallnet.smallnet_rep(), smallnet.smallnet_stats()
    targets = ["class:2", "class:3"]
    one = maximize(rep, targets, size=32, iters=6, stats=stats, candidates=1)
    three = maximize(rep, targets, size=32, iters=6, stats=stats, candidates=3)
    assert "candidates" not in one.info and three.info["candidates"] == 3
    assert three.images.shape == one.images.shape and three.energy.shape == one.energy.shape
    for p, first, kept in zip(three.problems, one.metrics["log_odds"].tolist(),
                              three.metrics["log_odds"].tolist(), strict=True):
        scores = p["candidate_scores"]
        assert len(scores) == 3 and p["candidates"] == 3
        assert scores[0] == pytest.approx(first, abs=1e-5)  # candidate 0 is the picture made without candidates
        assert kept == pytest.approx(max(scores), abs=1e-5) and p["candidate"] == scores.index(max(scores))
        assert len(set(scores)) == 3  # the candidates are different draws
    with torch.no_grad():  # the kept pictures, read again by the network, score what the result says
        p = rep(rep.to_paper_units(three.images)).softmax(1)
    assert torch.allclose(p[[0, 1], [2, 3]], three.metrics["probability"], atol=1e-4)
    assert torch.allclose((p / (1 - p)).log()[[0, 1], [2, 3]], three.metrics["log_odds"], atol=1e-3)
    assert bool((three.metrics["probability"] >= one.metrics["probability"] - 1e-6).all())


def test_a_units_candidates_are_kept_by_their_activation_and_only_when_asked() -> None:
    from preimage.tasks.activation import maximize

    rep, stats = smallnet.smallnet_rep(), smallnet.smallnet_stats()
    style = Style("x", param=STYLES["natural"].param, transforms=(), iters=4, candidates=2)
    unit = maximize(rep, "conv3:1", size=32, stats=stats, style=style)  # the style's candidates: classes only
    assert "candidates" not in unit.info
    asked = maximize(rep, "conv3:1", size=32, stats=stats, style=style, candidates=2)
    (p,) = asked.problems
    assert float(asked.metrics["activation"][0]) == pytest.approx(max(p["candidate_scores"]), rel=1e-5)
    assert p["candidate_scores"][0] == pytest.approx(float(unit.metrics["activation"][0]), rel=1e-5)
    cls = maximize(rep, "class:4", size=32, stats=stats, style=style)
    assert cls.info["candidates"] == 2


def test_candidates_are_checked_and_recorded_with_the_style() -> None:
    from preimage.tasks.activation import maximize

    assert get_style(style_record(Style("x", candidates=3))).candidates == 3
    assert "candidates" not in style_record(Style("x"))
    for bad in (0, 65, 1.5, True):
        with pytest.raises(PreimageError, match="candidates"):
            Style("x", candidates=bad)
        with pytest.raises(PreimageError, match="candidates"):
            maximize(smallnet.smallnet_rep(), "class:1", size=32, iters=1, candidates=bad)


def test_the_cli_says_which_candidate_it_kept(tmp_path, capsys) -> None:
    from preimage.cli import main

    code = main(["maximize", "--objective", "class:25", "--size", "32", "--iters", "2", "--candidates", "2",
                 "--out", str(tmp_path / "a")])
    assert code == 0
    assert "(best of 2 by p(class): candidate " in capsys.readouterr().out
    code = main(["maximize", "--objective", "class:25", "--iters", "2", "--candidates", "0", "--out",
                 str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "candidates" in err
    assert not (tmp_path / "b").exists()


def test_candidates_short_of_their_goal_are_continued_each_and_named() -> None:
    """On a small network every candidate that another class still wins is continued (``continue_short``); the note
    names the candidate, and the kept picture is the best of the continued ones."""
    from test_heldout import _SharedRival

    from preimage.measures.stats import compute_stats
    from preimage.representations import load
    from preimage.tasks.activation import maximize

    rep = load(_SharedRival(), None, channels=1, mean=(0.5,), std=(0.25,), input_size=(16, 16))
    stats = compute_stats(rep, size=16)
    r = maximize(rep, "class:0", size=16, stats=stats, candidates=2)
    assert r.info["candidates"] == 2 and r.metrics["top1"].tolist() == [0]
    assert "class:0 candidate 0 (top-1 1, p" in r.info["finished"]
    assert " r0 " not in r.info["finished"]
    (p,) = r.problems
    assert float(r.metrics["log_odds"][0]) == pytest.approx(max(p["candidate_scores"]), abs=1e-5)
