"""One accentuation call whose budgets want different settings: run each group of budgets on its own and put the
pictures back in the call's order (images × targets × weights × budgets, the budget innermost).

Why: a setting that helps far from the seed can hurt near it (a canvas twice the picture's side: tuning half,
round 15, judge p up at budget 40 and down at 24; benchmarks/README.md). A picture depends on its own problem only
(its seed leaves the budget out), so a budget's picture is the same whether it runs alone or in a list.
Groups may run different numbers of steps: the merged energy history is as long as the longest, NaN after a
shorter group's end, and ``iterations`` is the longest's (each problem records its own ``steps``).
One progress bar covers the call: each group reports its steps offset by the groups before it (``group_progress``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..report.result import Result

#: What a group's run records for itself alone: left out of the merged ``info`` (the problems record their own
#: canvas and steps).
PER_GROUP = ("canvas", "schedule", "stages")


def budget_groups(budgets: Sequence[float | None], setting: Callable[[float | None], Hashable]
                  ) -> list[tuple[Hashable, list[float | None]]]:
    """The budgets grouped by their setting, in order of first appearance: [(setting, its budgets in order)]."""
    groups: dict[Hashable, list[float | None]] = {}
    for b in budgets:
        groups.setdefault(setting(b), []).append(b)
    return list(groups.items())


def group_progress(progress: Callable[[int, int], None] | None, steps: Sequence[int]
                   ) -> list[Callable[[int, int], None] | None]:
    """One callback per group, reporting (steps done over all groups, their total): one bar for the call."""
    if progress is None:
        return [None] * len(steps)
    total, starts = sum(steps), [sum(steps[:i]) for i in range(len(steps))]
    return [lambda done, _n, s=s: progress(s + done, total) for s in starts]


def interleave(results: Sequence[Result], groups: Sequence[Sequence[float | None]],
               budgets: Sequence[float | None], names: list[str]) -> Result:
    """The groups' Results (each images × targets × weights × its budgets) as one Result over all budgets, in the
    call's order. names: the file names of one job's pictures (``path_names`` of the weights and all budgets)."""
    nb = len(budgets)
    where = {b: (g, j) for g, grp in enumerate(groups) for j, b in enumerate(grp)}
    offsets = [0]
    for r in results[:-1]:
        offsets.append(offsets[-1] + len(r))
    n = sum(len(r) for r in results)
    src = []
    for p in range(n):
        g, j = where[budgets[p % nb]]
        src.append(offsets[g] + p // nb * len(groups[g]) + j)
    rows = torch.tensor(src)
    first = results[0]
    metrics = {k: torch.cat([r.metrics[k] for r in results])[rows] for k in first.metrics}
    problems = [p for r in results for p in r.problems]
    attribution = None if first.attribution is None else torch.cat([r.attribution for r in results])[rows]
    per = n // len(first.jobs)
    jobs = [{**job, "rows": list(range(i * per, (i + 1) * per)), "names": names} for i, job in enumerate(first.jobs)]
    info: dict[str, Any] = {k: v for k, v in first.info.items() if k not in PER_GROUP}
    steps = max(r.energy.shape[0] for r in results)
    energy = torch.cat([F.pad(r.energy, (0, 0, 0, steps - r.energy.shape[0]), value=float("nan")) for r in results],
                       1)
    return Result(torch.cat([r.images for r in results])[rows], [problems[s] for s in src], metrics, first.model,
                  first.layer, max(r.iterations for r in results), sum(r.seconds for r in results),
                  energy[:, rows], info, jobs, attribution=attribution)
