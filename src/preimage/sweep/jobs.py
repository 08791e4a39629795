"""What a sweep computes: jobs (a task on a model's layer, for some units or images, with options), the key
that names each job's result, and batches of jobs that share one optimization.

A job's key is a digest of its whole configuration: the task, the model and a digest of its weights, the
layer, the units, the images' contents, the options (seed included) and the package's version. Two jobs with
the same key compute the same thing, so a stored result under that key can stand in for the computation.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..measures.stats import NeuronStats
from ..representations.base import Geometry, ModelSpec

#: Bumped when what a stored result holds changes, so older results are recomputed rather than misread.
STORE_FORMAT = 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("preimage")
    except PackageNotFoundError:  # running from a source tree
        return "0+source"


@dataclass
class Job:
    """One independent piece of a sweep.

    task: ``invert``, ``maximize``, ``caricature``, ``examples`` or ``module:function`` (a runner of one's
    own, see ``runners``); model: a ``Model.id``; layer: a module name (None: the network's output); units:
    channels (or classes) for ``maximize``; images: image specs (paths or ``sample:NAME``) for the others;
    options: the task's keyword arguments (JSON values: numbers, strings, lists, dicts).
    """

    task: str
    model: str
    layer: str | None
    units: tuple[int, ...] = ()
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
        """Everything the result depends on, as JSON values (image contents as digests)."""
        return {"format": STORE_FORMAT, "version": _version(), "task": self.task, "model": self.model,
                "layer": self.layer, "units": list(self.units), "images": [fingerprint(s) for s in self.images],
                "options": json.loads(canonical(self.options))}

    @functools.cached_property
    def key(self) -> str:
        """The result's name in the store: 32 hex digits of SHA-256 of ``config()``."""
        return hashlib.sha256(canonical(self.config()).encode()).hexdigest()[:32]

    def problems(self) -> int:
        """How many optimization problems the job holds (for cutting batches)."""
        n = len(self.units) or len(self.images) or 1
        cs = self.options.get("C")
        return n * int(self.options.get("restarts", 1)) * (len(cs) if isinstance(cs, list) else 1)


def canonical(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal configurations give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"a job option must be a JSON value, got {type(o).__name__}")


def fingerprint(spec: str) -> str:
    """``sample:NAME`` as it is; a file by the SHA-1 of its bytes (a renamed copy is the same image)."""
    if spec.startswith("sample:"):
        return spec
    p = Path(spec)
    st = p.stat()
    return _file_digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, _size: int, _mtime: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:20]


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
            self.id = f"{self.spec.name}@{weights_digest(self.spec)}"


def weights_digest(spec: ModelSpec) -> str:
    """16 hex digits naming the network's parameters and buffers (names, shapes and values), so that
    results of different weights never share a key, whatever ``weights_id`` says."""
    h = hashlib.sha256()
    for name, t in spec.module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        t = t.detach().cpu().contiguous()
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


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
