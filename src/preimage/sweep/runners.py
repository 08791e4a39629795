"""What runs on a worker: one batch of jobs → one Output (or one error line) per job.

A runner takes the worker's ``Context`` and a batch of jobs that share a signature (task, model, layer,
options) and returns one ``Output`` per job. The built-in ones call the tasks (``invert``, ``maximize``,
``caricature``) with the jobs' options and cut the Result into one Output per job (``Result.outputs``), and
measure a layer's dataset examples (``examples``); a task named ``module:function`` is a runner of one's own,
imported on the worker by that name (the experiments add theirs this way).

Every problem draws its randomness from its own seed (``engine.rng``) and, on the CPU, is optimized on its
own, so a result does not depend on which other jobs shared its batch.
"""

from __future__ import annotations

import importlib
import inspect
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PreimageError
from ..report.store import Output
from ..representations.base import Representation
from .jobs import Job, Model

Runner = Callable[["Context", list[Job]], list[Output]]


# --- the worker's models ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """A worker's view of the sweep: its models (each loaded once per process) and their layers."""

    models: dict[str, Model]
    reps: dict[tuple[str, str | None], Representation] = field(default_factory=dict)
    progress: Callable[[int, int], None] | None = None

    def model(self, model_id: str) -> Model:
        return self.models[model_id]

    def rep(self, model_id: str, layer: str | None) -> Representation:
        """Φ at ``layer`` of the model, on its device (kept, so its geometry is measured once per worker)."""
        key = (model_id, layer)
        if key not in self.reps:
            m = self.models[model_id]
            rep = Representation(m.spec, layer if layer is not None else "output").to(m.device)
            rep._geometry = m.geometry.get(rep.layer)
            self.reps[key] = rep
        return self.reps[key]


#: This process's models and layers, kept between batches: a worker loads each model once.
_CONTEXT = Context({})
#: How many models this process has loaded (reported with each result, so tests can count loads).
LOADS = {"count": 0}


def worker_context(models: Mapping[str, Model | Callable[[], Model]]) -> Context:
    """The process's context, with any model it has not loaded yet fetched (a callable is called once)."""
    for mid, m in models.items():
        if mid not in _CONTEXT.models:
            model = m() if callable(m) else m
            model.spec.module.to(model.device)
            _CONTEXT.models[mid] = model
            LOADS["count"] += 1
    return _CONTEXT


# --- running a batch -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One job's end: an Output, or ``error`` (one line)."""

    key: str
    output: Output | None = None
    error: str | None = None


def run_batch(models: Mapping[str, Model | Callable[[], Model]], jobs: Sequence[Job],
              progress: Callable[[int, int], None] | None = None, strict: bool = False) -> list[Outcome]:
    """Run one batch on this process; a batch that raises is run again one job at a time, so that only the
    jobs that fail are reported as failed (each with one line), and the others complete. progress: the tasks'
    iterations (done, total). strict: let the first error through as it is (a command of one picture)."""
    ctx = worker_context(models)
    ctx.progress = progress
    if strict:
        return [Outcome(j.key, o) for j, o in zip(jobs, _run(ctx, list(jobs)), strict=True)]
    try:
        outputs = _run(ctx, list(jobs))
        return [Outcome(j.key, o) for j, o in zip(jobs, outputs, strict=True)]
    except Exception as e:  # noqa: BLE001 - reported per job below
        if len(jobs) == 1:
            return [Outcome(jobs[0].key, error=one_line(e))]
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(Outcome(job.key, _run(ctx, [job])[0]))
        except Exception as e:  # noqa: BLE001
            outcomes.append(Outcome(job.key, error=one_line(e)))
    return outcomes


def _run(ctx: Context, jobs: list[Job]) -> list[Output]:
    t0 = time.perf_counter()
    outputs = runner(jobs[0].task)(ctx, jobs)
    if len(outputs) != len(jobs):
        raise RuntimeError(f"runner {jobs[0].task} returned {len(outputs)} outputs for {len(jobs)} jobs")
    share = round((time.perf_counter() - t0) / len(jobs), 3)
    for o in outputs:
        o.record.setdefault("seconds", share)
        o.record["worker"] = {"pid": os.getpid(), "models_loaded": LOADS["count"]}
    return outputs


def one_line(e: BaseException) -> str:
    """An exception as one line: a PreimageError's message, else ``Type: message (file:line)``."""
    msg = " ".join(str(e).split()) or e.__class__.__name__
    if isinstance(e, PreimageError):
        return msg
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return f"{e.__class__.__name__}: {msg}{where}"[:400]


# --- the runners -----------------------------------------------------------------------------------------------

RUNNERS: dict[str, Runner] = {}
#: Tasks whose jobs may share a batch (the others run one job per batch; a runner of one's own says so with
#: an attribute ``batchable = True``).
BATCHABLE = ("invert", "maximize", "caricature")


def register(name: str) -> Callable[[Runner], Runner]:
    def deco(fn: Runner) -> Runner:
        RUNNERS[name] = fn
        return fn

    return deco


def runner(task: str) -> Runner:
    """The runner of a task: a built-in name, or ``module:function`` (imported here, on the worker)."""
    if task in RUNNERS:
        return RUNNERS[task]
    mod, sep, name = task.partition(":")
    if sep:
        try:
            fn = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            fn = None
        if callable(fn):
            return fn
    raise PreimageError(f"unknown sweep task '{task}' (built-in: {', '.join(RUNNERS)}; or module:function)")


def task_kwargs(fn: Callable[..., Any], options: Mapping[str, Any], taken: Sequence[str] = ()) -> dict[str, Any]:
    """The options as keyword arguments of a task function (they are its own JSON shorthand: the tasks read
    strings, lists and dicts as they read objects); an option the function does not take is an error.
    ``taken``: options the runner handles itself."""
    params = inspect.signature(fn).parameters
    anything = any(p.kind is p.VAR_KEYWORD for p in params.values())
    bad = [k for k in options if k not in taken and k not in params and not anything]
    if bad:
        raise PreimageError(f"{fn.__name__} takes no option '{bad[0]}'")
    return {k: v for k, v in options.items() if k not in taken}


#: Options every built-in runner reads itself rather than passing to the task.
_OWN = ("arrays", "thumbnail", "kind", "png_scale")


def _outputs(res: Any, jobs: list[Job], options: Mapping[str, Any]) -> list[Output]:
    """The result's records grouped per job (a job may hold several targets or images)."""
    sizes = [max(len(j.units), len(j.images), 1) for j in jobs]
    outs = res.outputs(options.get("png_scale"), thumbnail=options.get("thumbnail"), arrays=bool(options.get("arrays")),
                       groups=sizes)
    return [o for _, o in outs]


@register("maximize")
def run_maximize(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Activation maximization of every job's targets in one call: targets × restarts problems. A target is an
    objective spec (``channel:blocks.4:5``) or a channel index of the job's layer (read as ``kind``, default
    channel)."""
    from ..tasks.activation import maximize

    job = jobs[0]
    opts = dict(job.options)
    rep, model = ctx.rep(job.model, job.layer), ctx.model(job.model)
    kind = opts.get("kind", "channel")
    targets = [u if isinstance(u, str) else f"{kind}:{job.layer}:{u}" for j in jobs for u in j.units]
    res = maximize(rep, targets, stats=model.stats, progress=ctx.progress, **task_kwargs(maximize, opts, _OWN))
    return _outputs(res, jobs, opts)


@register("invert")
def run_invert(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Inversion of every job's images in one call: images × C values × restarts problems."""
    from ..tasks.inversion import invert

    job = jobs[0]
    opts = dict(job.options)
    res = invert(ctx.rep(job.model, job.layer), [s for j in jobs for s in j.images], progress=ctx.progress,
                 **task_kwargs(invert, opts, _OWN))
    return _outputs(res, jobs, opts)


@register("caricature")
def run_caricature(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Caricatures of every job's images in one call (each starts from its image)."""
    from ..tasks.activation import caricature

    job = jobs[0]
    opts = dict(job.options)
    res = caricature(ctx.rep(job.model, job.layer), [s for j in jobs for s in j.images], progress=ctx.progress,
                     **task_kwargs(caricature, opts, _OWN))
    return _outputs(res, jobs, opts)


@register("accentuate")
def run_accentuate(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Feature accentuation of each job's images and targets, one picture per regularization weight
    (``tasks.accentuate``); one job per batch."""
    from ..tasks.accentuate import accentuate

    outs = []
    for job in jobs:
        opts = dict(job.options)
        res = accentuate(ctx.rep(job.model, job.layer), list(job.images), list(job.units),
                         stats=ctx.model(job.model).stats, progress=ctx.progress,
                         **task_kwargs(accentuate, opts, _OWN))
        outs += [o for _, o in res.outputs(opts.get("png_scale"), thumbnail=opts.get("thumbnail"),
                                           arrays=bool(opts.get("arrays")), groups=[len(res.jobs)])]
    return outs


@register("examples")
def run_examples(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Dataset examples of every unit of a layer, from one pass over the job's images (``measures.examples``)."""
    from ..measures.examples import layer_examples

    return [layer_examples(ctx.rep(j.model, j.layer), list(j.images), **j.options) for j in jobs]
