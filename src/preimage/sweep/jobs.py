"""What a sweep computes: jobs (a task on a model's layer, for some units or images, with options), the key
that names each job's result, and batches of jobs that share one optimization.

A job's key is a digest of its whole configuration: the task, the model and a digest of its weights, the
layer, the units, the images' contents, the options (seed included), the package's version and its sources'
digest. Two jobs with the same key compute the same thing, so a stored result under that key can stand in for
the computation.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measures.stats import NeuronStats
from ..report.store import canonical, config_key, job_config
from ..representations.base import ModelSpec, model_id
from ..representations.geometry import Geometry


@dataclass
class Job:
    """One independent piece of a sweep.

    task: ``invert``, ``maximize``, ``caricature``, ``examples`` or ``module:function`` (a runner of one's
    own, see ``runners``); model: a ``Model.id``; layer: a module name (None: the network's output); units: the
    targets of ``maximize`` (objective specs such as ``channel:blocks.4:5``, or channel indices of ``layer``);
    images: image specs (paths or ``sample:NAME``) for the others; options: the task's keyword arguments (JSON
    values: numbers, strings, lists, dicts).
    """

    task: str
    model: str
    layer: str | None
    units: tuple[Any, ...] = ()
    images: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A short label: ``maximize blocks.3 unit 5``."""
        what = [self.task.rpartition(":")[2], self.layer or "output"]
        if self.units:
            what.append(f"unit{'s' if len(self.units) > 1 else ''} {','.join(map(str, self.units[:4]))}"
                        + ("..." if len(self.units) > 4 else ""))
        if self.images:
            what.append(Path(self.images[0]).name.removeprefix("sample:")
                        + (f" (+{len(self.images) - 1})" if len(self.images) > 1 else ""))
        return " ".join(what)

    def config(self) -> dict[str, Any]:
        """Everything the result depends on, as JSON values (``report.store.job_config``)."""
        return job_config(self.task, self.model, self.layer, self.units, self.images, self.options)

    @functools.cached_property
    def key(self) -> str:
        """The result's name in the store: 32 hex digits of SHA-256 of ``config()``."""
        return config_key(self.config())

    def problems(self) -> int:
        """How many optimization problems the job holds (for cutting batches)."""
        n = len(self.units) or len(self.images) or 1
        cs = self.options.get("C")
        return n * int(self.options.get("restarts", 1)) * (len(cs) if isinstance(cs, list) else 1)


# --- models ----------------------------------------------------------------------------------------------------


@dataclass
class Model:
    """A network the jobs run on, as the driver built it: every worker gets this very object (same weights),
    loads it once and keeps it. stats: neuron statistics for ``maximize`` (the normalizer M_c); geometry:
    layers' geometry as the driver measured it (at the model's default size), so workers need not measure."""

    spec: ModelSpec
    device: str = "cpu"
    stats: NeuronStats | None = None
    id: str = ""
    geometry: dict[str | None, Geometry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = model_id(self.spec)


# --- batches ---------------------------------------------------------------------------------------------------


def batch_signature(job: Job) -> str:
    """Jobs with the same signature can share one batched optimization: same task, model, layer, options."""
    return canonical([job.task, job.model, job.layer, job.options])


def make_batches(jobs: Iterable[Job], problems: int, batchable: Sequence[str] = ()) -> list[list[Job]]:
    """Group jobs of equal signature into batches of at most ``problems`` problems (a bigger job goes alone).
    Tasks not in ``batchable`` run one job per batch. Order: first appearance of each group."""
    groups: dict[str, list[Job]] = {}
    for i, job in enumerate(jobs):
        sig = batch_signature(job) if job.task in batchable else f"{i}"
        groups.setdefault(sig, []).append(job)
    out: list[list[Job]] = []
    for group in groups.values():
        cur: list[Job] = []
        n = 0
        for job in group:
            p = job.problems()
            if cur and n + p > problems:
                out.append(cur)
                cur, n = [], 0
            cur.append(job)
            n += p
        if cur:
            out.append(cur)
    return out
