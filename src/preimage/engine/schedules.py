"""Schedules: the optimizer's stages, the paper's schedules, and each model family's task defaults.

A schedule is a tuple of ``Stage``s run one after another, each restarting the optimizer's state (as a new call of
the authors' routine does, docs/paper-notes.md §1.1). ``task_defaults`` gives what a model family inverts with by
default: the data-term weight C, the schedule and whether inversion starts coarse-to-fine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import PreimageError
from ..representations.base import ModelSpec


@dataclass(frozen=True)
class Stage:
    """One optimizer stage: ``iters`` steps at ``lr_scale``·lr0, with or without jitter; ``optimizer``: the
    stage's own (``paper``, ``adam``, ``hybrid``, ``lbfgs``) when the run asks for none (None: the
    parameterization's)."""

    iters: int
    lr_scale: float = 1.0
    jitter: bool = True
    optimizer: str | None = None


#: The IJCV inversion schedule: 300 steps with jitter, then 50 at lr0/10 without (docs/paper-notes.md §1.2).
CNN_INVERSION = (Stage(300, 1.0, True), Stage(50, 0.1, False))
#: The IJCV HOG/DSIFT schedule: 300 steps, no jitter (docs/paper-notes.md §2.3).
SHALLOW_INVERSION = (Stage(300, 1.0, False),)
#: Activation maximization and caricature: one stage of 300 steps at lr0 with jitter (docs/paper-notes.md §1.3, §1.4).
SINGLE_STAGE = (Stage(300, 1.0, True),)


@dataclass(frozen=True)
class TaskDefaults:
    """A model family's inversion defaults: data-term weight C, schedule, and whether to start coarse-to-fine
    (``tasks.coarse_to_fine``)."""

    C: float = 100.0
    schedule: tuple[Stage, ...] = CNN_INVERSION
    coarse_to_fine: bool = False


#: ``ModelSpec.family`` → its defaults: CNNs invert with the paper's two stages; HOG, HOGb and DSIFT with one
#: stage without jitter, HOG also coarse-to-fine (its hard binning's surrogate gradient needs the coarse start).
FAMILY_DEFAULTS = {
    "cnn": TaskDefaults(),
    "shallow": TaskDefaults(100.0, SHALLOW_INVERSION, False),
    "hog": TaskDefaults(100.0, SHALLOW_INVERSION, True),
}


def task_defaults(spec: ModelSpec) -> TaskDefaults:
    """The inversion defaults of a model (by its family)."""
    return FAMILY_DEFAULTS[spec.family]


def scale_schedule(schedule: Sequence[Stage], iters: int | None) -> tuple[Stage, ...]:
    """Rescale a schedule to ``iters`` iterations in total, keeping the stages' proportions."""
    if iters is None:
        return tuple(schedule)
    if iters < 1:
        raise PreimageError("iters must be at least 1", param="iters")
    total = sum(s.iters for s in schedule)
    out, left = [], iters
    for i, s in enumerate(schedule):
        k = left if i == len(schedule) - 1 else min(max(round(iters * s.iters / total), 1), left)
        if k > 0:
            out.append(replace(s, iters=k))
        left -= k
    return tuple(out)


def schedule_record(schedule: Sequence[Stage]) -> list[dict[str, Any]]:
    """A schedule as JSON: every field of every stage (``stages_from_record`` reads it back)."""
    return [dataclasses.asdict(s) for s in schedule]


def stages_from_record(record: Sequence[dict[str, Any]]) -> tuple[Stage, ...]:
    """The inverse of ``schedule_record``; a clear error for a malformed record."""
    names = {f.name for f in dataclasses.fields(Stage)}
    try:
        return tuple(Stage(**{k: v for k, v in dict(s).items() if k in names}) for s in record)
    except (TypeError, ValueError):
        raise PreimageError(f"a schedule is a list of stages {{iters, lr_scale, jitter, optimizer}}, got {record!r}",
                            param="schedule") from None
