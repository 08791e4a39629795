"""Randomness that belongs to each problem: a generator per problem, seeded by the problem's own key.

Every random draw of an optimization (its start, the jitter, the transforms, the crops) comes from the generator of
the problem it is for, in the same order whatever batch the problem shares, so a problem's draws depend only on
what was asked for it (``problem_seed``), never on its neighbours or on the path that ran it (README.md,
"Determinism").

Draws for a batch of N problems return N rows, row i from generator i; draws for k·N rows (k views per problem,
crop-major: view j of problem i at row j·N + i) take k values from each generator in one call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch


def problem_seed(*parts: Any) -> int:
    """A 63-bit seed from JSON-able parts (the problem's key: model, target, options, seed, restart)."""
    text = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


class ProblemRNG:
    """One CPU generator per problem. seeds: N ints (``problem_seed``)."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]

    def __len__(self) -> int:
        return len(self.gens)

    def select(self, index: Sequence[int]) -> ProblemRNG:
        """The generators of some problems (shared, not copied: drawing from either advances both)."""
        sub = ProblemRNG([])
        sub.seeds = [self.seeds[i] for i in index]
        sub.gens = [self.gens[i] for i in index]
        return sub

    def _rows(self, draw: Any, rows: int | None, shape: tuple[int, ...]) -> torch.Tensor:
        n = len(self.gens)
        rows = n if rows is None else rows
        if rows % n:
            raise ValueError(f"{rows} rows for {n} problems")
        k = rows // n
        per = [draw(g, (k, *shape)) for g in self.gens]  # each k×shape
        return torch.stack(per, 1).reshape(rows, *shape)  # crop-major: row j·N + i

    def rand(self, *shape: int, rows: int | None = None) -> torch.Tensor:
        """U[0, 1): rows × shape (rows: N by default, or k·N crop-major)."""
        return self._rows(lambda g, s: torch.rand(s, generator=g), rows, shape)

    def randn(self, *shape: int, rows: int | None = None) -> torch.Tensor:
        """N(0, 1): rows × shape."""
        return self._rows(lambda g, s: torch.randn(s, generator=g), rows, shape)

    def randint(self, high: int, *shape: int, rows: int | None = None) -> torch.Tensor:
        """Integers in {0..high−1}: rows × shape (int64)."""
        return self._rows(lambda g, s: torch.randint(high, s, generator=g), rows, shape)

    def uniform(self, lo: float, hi: float, rows: int | None = None) -> torch.Tensor:
        """U[lo, hi): one value per row."""
        return lo + (hi - lo) * self.rand(rows=rows)
