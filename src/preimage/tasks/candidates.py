"""Best of k: optimize k candidates for a picture and keep the one the network itself scores highest.

Why: how well a class pre-image transfers to a network that never saw the optimization varies more from one
random draw to the next than between any two natural styles we measured (one reseeded run moves the judge's mean
p(class) by up to 0.09 on 20 classes: benchmarks/results/transfer.md, round 8), and the optimized network's own
p(class) on the finished picture tells which draw transfers (round 9). The candidates of a picture share its
target and restart; candidate 0 is the picture a run without candidates makes. ``accentuate`` keeps the candidate
with the highest target value instead (the logit for a class): its pictures' p(class) is 1 to float precision.
"""

from __future__ import annotations

import torch

from ..engine.optimize import Trace


def candidate_problems(problems: list[dict], k: int) -> list[dict]:
    """Each problem's k candidates, adjacent: candidate 0 is the problem as it is (so its seed, a digest of the
    problem, is unchanged), candidate c > 0 carries ``candidate: c``."""
    return [p if c == 0 else {**p, "candidate": c} for p in problems for c in range(k)]


def candidate_scores(metrics: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) each picture's score from a maximization's metrics: its class's log-odds log p/(1−p) where it has a class
    (``log_odds``; it orders pictures as p(class) does, also where p rounds to 1), else its ``activation``."""
    score = metrics["activation"].double()
    if "log_odds" in metrics:
        score = torch.where(metrics["log_odds"].isnan(), score, metrics["log_odds"].double())
    return score


def best_of(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores: (N·k,) one per candidate, each picture's k candidates adjacent → (N,) the row of each picture's
    highest-scoring candidate (a NaN score never wins over a number; ties: the first)."""
    if scores.ndim != 1 or scores.numel() % k:
        raise ValueError(f"{scores.numel()} scores for candidates of {k}")
    s = torch.nan_to_num(scores.double().view(-1, k), nan=float("-inf"))
    return s.argmax(1) + torch.arange(s.shape[0]) * k


def keep_rows(trace: Trace, rows: torch.Tensor) -> Trace:
    """The trace of the kept problems (rows: (N,) indices): their pictures, energy histories and attributions; the
    iterations and seconds stay the run's, all candidates' work."""
    return Trace(trace.x[rows], trace.energy[:, rows], trace.iterations, trace.seconds, trace.stages,
                 None if trace.attribution is None else trace.attribution[rows])
