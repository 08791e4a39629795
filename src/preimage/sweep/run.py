"""Running a sweep: skip what the store already holds, batch the rest, run the batches on a backend, store
each result as it arrives, and report progress (done, cached, failed) for the whole sweep."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..report.store import Store
from .backends import LocalBackend, RayBackend
from .jobs import Job, Model, make_batches
from .runners import BATCHABLE, runner

#: progress(counts): counts has total, done, cached and failed (jobs).
SweepProgress = Callable[[dict[str, int]], None]


@dataclass
class Failure:
    """A job that raised: its key, what it was, and one line of error."""

    key: str
    job: str
    error: str

    def line(self) -> str:
        return f"{self.key[:12]} {self.job}: {self.error}"


@dataclass
class SweepResult:
    """Every finished record (computed now or found in the store), by key, and the counts."""

    records: dict[str, dict[str, Any]]
    counts: dict[str, int]
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    cached: set[str] = field(default_factory=set)  # keys found in the store

    def subset(self, keys: Sequence[str]) -> SweepResult:
        """The part of the result that concerns ``keys`` (counts recomputed)."""
        ks = set(keys)
        failures = [f for f in self.failures if f.key in ks]
        records = {k: v for k, v in self.records.items() if k in ks}
        cached = self.cached & ks
        counts = {"total": len(ks), "done": len(records) - len(cached), "cached": len(cached),
                  "failed": len(failures)}
        return SweepResult(records, counts, failures, self.seconds, cached)


def run_sweep(jobs: Sequence[Job], models: dict[str, Model], store: Store,
              backend: LocalBackend | RayBackend | None = None, batch: int = 16,
              progress: SweepProgress | None = None, recompute: bool = False) -> SweepResult:
    """Compute every job whose result the store lacks (every job with ``recompute``), ``batch`` problems at a
    time, on ``backend`` (default: local). Results are stored one by one as they arrive, so an interrupted sweep
    loses only the batches in flight, and a rerun computes only what is missing. A job that raises is recorded in
    ``failures`` and the others go on."""
    t0 = time.perf_counter()
    backend = backend or LocalBackend()
    store.clean()
    unique = {j.key: j for j in jobs}
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for key, job in unique.items():
        rec = None if recompute else store.load(key)
        if rec is None:
            todo.append(job)
        else:
            records[key] = rec
    cached = set(records)
    counts = {"total": len(unique), "done": 0, "cached": len(records), "failed": 0}
    failures: list[Failure] = []
    if progress:
        progress(dict(counts))
    if todo:
        used = {j.model for j in todo}
        batchable = [t for t in {j.task for j in todo} if t in BATCHABLE or getattr(runner(t), "batchable", False)]
        for _batch, outcomes in backend.run(make_batches(todo, batch, batchable), {m: models[m] for m in used}):
            for o in outcomes:
                job = unique[o.key]
                if o.output is None:
                    failures.append(Failure(o.key, job.describe(), o.error or "failed"))
                    counts["failed"] += 1
                else:
                    records[o.key] = store.save(job.config(), o.output)
                    counts["done"] += 1
            if progress:
                progress(dict(counts))
    return SweepResult(records, counts, failures, round(time.perf_counter() - t0, 2), cached)
