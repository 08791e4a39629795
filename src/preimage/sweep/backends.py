"""Where batches run: ``local`` (in this process, the default) or ``ray`` (a Ray cluster: a local one started
on demand, or an existing one at ``address``). Both run the same ``runners.run_batch``.

On Ray, each batch is one task of the remote function ``run_batch``: it asks for ``cpus_per_batch`` CPUs (and
``gpus_per_batch`` GPUs when the models live on a GPU), and Ray retries it ``max_retries`` times if its
worker dies. The models are put once into Ray's object store; a worker fetches each the first time it needs
it and keeps it (Ray reuses worker processes), so a model is loaded once per worker, not once per job. At
most ``2 × the cluster's slots`` batches are in flight, so an interrupted driver leaves little work behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import PreimageError
from . import runners
from .jobs import Job, Model
from .runners import Outcome

Batch = list[Job]


class LocalBackend:
    """Batches one after another, in this process. progress: told each batch's iterations (done, total), for a
    command whose sweep is one job (a progress bar of iterations rather than of jobs); strict: the first error
    stops the sweep as it is, rather than as a failed job's line."""

    name = "local"

    def __init__(self, progress: Any = None, strict: bool = False) -> None:
        self.progress, self.strict = progress, strict

    def run(self, batches: Sequence[Batch], models: dict[str, Model]) -> Iterator[tuple[Batch, list[Outcome]]]:
        for batch in batches:
            yield batch, runners.run_batch(models, batch, self.progress, self.strict)


@dataclass
class RayBackend:
    """Batches as Ray tasks. address: None starts a local cluster of ``num_cpus`` CPUs (default: all) for
    the sweep; ``host:port``, ``ray://host:port`` or ``auto`` joins an existing one. A cluster that is
    already initialized in this process (``ray.init`` called by the caller) is used as it is.

    threads: torch threads per batch (default: this process's, so that a picture computed on a worker is the
    same bit for bit as one computed here: the CPU's kernels round differently at other thread counts);
    cpus_per_batch: CPUs each batch asks for (default: ``threads``)."""

    address: str | None = None
    num_cpus: int | None = None
    threads: int | None = None
    cpus_per_batch: float | None = None
    gpus_per_batch: float = 1.0
    max_retries: int = 3
    object_store_memory: int | None = 512 * 1024 ** 2

    name = "ray"

    def run(self, batches: Sequence[Batch], models: dict[str, Model]) -> Iterator[tuple[Batch, list[Outcome]]]:
        import torch

        ray = import_ray()
        threads = self.threads or torch.get_num_threads()
        cpus = self.cpus_per_batch or float(threads)
        started = connect(self.address, self.num_cpus, self.object_store_memory)
        pending: dict[Any, Batch] = {}
        try:
            refs = {mid: ray.put(m) for mid, m in models.items()}
            gpu = any(str(m.device).startswith("cuda") for m in models.values())
            resources = ray.cluster_resources()
            cpus = min(cpus, resources.get("CPU", cpus))  # a batch never asks for more than the cluster has
            task = _remote(ray).options(num_cpus=cpus, max_retries=self.max_retries,
                                        num_gpus=self.gpus_per_batch if gpu else 0)
            slots = resources.get("GPU", 0) / self.gpus_per_batch if gpu else resources.get("CPU", 1) / cpus
            window = max(2, int(2 * slots))
            todo = deque(batches)
            while todo or pending:
                while todo and len(pending) < window:
                    batch = todo.popleft()
                    needed = {j.model for j in batch}
                    pending[task.remote([{m: refs[m] for m in needed}], batch, threads)] = batch
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    batch = pending.pop(ref)
                    try:
                        outcomes = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the worker died more often than retried
                        line = f"the worker running it failed ({e.__class__.__name__}: " \
                               f"{' '.join(str(e).split())[:200]})"
                        outcomes = [Outcome(j.key, error=line) for j in batch]
                    yield batch, outcomes
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def run_batch(model_refs: list[dict[str, Any]], batch: Batch, threads: int) -> list[Outcome]:
    """The body of the Ray task (a worker running it shows as ``ray::run_batch``): fetch the models this
    worker has not loaded yet, run the batch with ``threads`` torch threads."""
    import ray
    import torch

    torch.set_num_threads(threads)
    return runners.run_batch({mid: (lambda r=ref: ray.get(r)) for mid, ref in model_refs[0].items()}, batch)


_REMOTE: dict[str, Any] = {}


def _remote(ray: Any) -> Any:
    if "fn" not in _REMOTE:
        _REMOTE["fn"] = ray.remote(max_calls=0)(run_batch)
    return _REMOTE["fn"]


def import_ray() -> Any:
    """The ray module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise PreimageError("--ray needs the 'ray' package: pip install 'preimage[ray]' (or pip install ray)") \
            from None
    return ray


def connect(address: str | None, num_cpus: int | None = None, object_store_memory: int | None = None) -> bool:
    """Join (or start) a Ray cluster; True if this call started it (the caller shuts it down).

    An address that does not answer fails at once with one line, before Ray's own retries."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        check_address(address)
        try:
            with _silent_stderr():  # Ray's C++ client logs each connection retry there; we say it in one line
                ray.init(address=address, **quiet)
        except Exception as e:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError, ...
            raise PreimageError(f"cannot join the Ray cluster at {address}: {' '.join(str(e).split())[:200]}") \
                from None
        return True
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=object_store_memory,
             **quiet)
    return True


@contextlib.contextmanager
def _silent_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null inside (it catches what C++ extensions write, too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def check_address(address: str, timeout: float = 3.0) -> None:
    """A clear error unless ``address`` (``host:port``, ``ray://host:port`` or ``auto``) answers."""
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PreimageError(f"bad Ray address '{address}': use HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT "
                            "or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or e.__class__.__name__
        raise PreimageError(f"no Ray cluster answers at {address} ({why}); start one with 'ray start --head' or "
                            "leave out --address to start a local one") from None


def backend(ray: bool = False, address: str | None = None, **kw: Any) -> LocalBackend | RayBackend:
    """The backend a command asked for: ``--ray`` (or an ``--address``) → Ray, else local."""
    return RayBackend(address=address, **kw) if ray or address else LocalBackend()
