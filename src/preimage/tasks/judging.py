"""Transfer on a task's pictures: what a classifier that never saw the optimization makes of them, read as a user
would read the saved PNG (``measures.judge``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..measures.judge import Judge, judges
from ..report.result import Result


def judge_pictures(names: str | Judge | Sequence[str | Judge], result: Result, *, originals: torch.Tensor | None = None,
                   targets: Sequence[int] | None = None) -> dict[str, Any]:
    """Each judge's verdict on the result's pictures: for class targets, its p(class) and whether the class is its
    top-1; for inversions (``originals``, one per picture), whether its top-1 matches the original's."""
    pics = torch.from_numpy(result.uint8()).float()
    pics = pics[..., None] if pics.ndim == 3 else pics
    pics = pics.permute(0, 3, 1, 2)
    out = {}
    for j in judges(names, result.images.device):
        if targets is not None:
            out[j.name] = j.classes(pics, list(targets))
        elif originals is not None:
            out[j.name] = j.agreement(pics, originals)
    return out
