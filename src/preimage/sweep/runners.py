"""What runs on a worker: one batch of jobs → one Output (or one error line) per job.

A runner takes the worker's ``Context`` and a batch of jobs that share a signature (task, model, layer,
options) and returns one ``Output`` per job. The built-in ones wrap the tasks (``invert``, ``maximize``,
``caricature``) and the dataset examples of a layer (``examples``); a task named ``module:function`` is a
runner of one's own, imported on the worker by that name (the experiments add theirs this way).

Every problem starts from noise drawn from its own seed (the job's seed, its unit or image, its restart),
so a result does not depend on which other jobs shared its batch.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..engine.optimize import Energy, noise_init
from ..errors import PreimageError
from ..images import resize, to_uint8
from ..representations.base import Representation, Stage
from .jobs import Job, Model, canonical, fingerprint
from .store import Output

Runner = Callable[["Context", list[Job]], list[Output]]


# --- the worker's models ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """A worker's view of the sweep: its models (each loaded once per process) and their layers."""

    models: dict[str, Model]
    reps: dict[tuple[str, str | None], Representation] = field(default_factory=dict)
    sizes: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def model(self, model_id: str) -> Model:
        return self.models[model_id]

    def rep(self, model_id: str, layer: str | None) -> Representation:
        """Φ at ``layer`` of the model, on its device (kept, so its geometry is measured once per worker)."""
        key = (model_id, layer)
        if key not in self.reps:
            m = self.models[model_id]
            rep = Representation(m.spec, layer).to(m.device)
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


def run_batch(models: Mapping[str, Model | Callable[[], Model]], jobs: Sequence[Job]) -> list[Outcome]:
    """Run one batch on this process; a batch that raises is run again one job at a time, so that only the
    jobs that fail are reported as failed (each with one line), and the others complete."""
    ctx = worker_context(models)
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


def problem_noise(channels: int, size: tuple[int, int], B: float, *parts: Any) -> torch.Tensor:
    """The paper's noise initialization for one problem, seeded by ``parts`` (seed, unit or image, restart).
    → 1×C×H×W in paper units."""
    seed = int(hashlib.sha256(canonical(list(parts)).encode()).hexdigest()[:15], 16)
    return noise_init(1, channels, size, B, torch.Generator().manual_seed(seed))


def task_kwargs(fn: Callable[..., Any], options: Mapping[str, Any], taken: Sequence[str] = ()) -> dict[str, Any]:
    """The options as keyword arguments of a task function: ``energy`` (a dict) becomes an Energy, ``schedule``
    (a list of [iters, lr_scale, jitter]) Stages; an option the function does not take is an error.
    ``taken``: options the runner handles itself."""
    params = inspect.signature(fn).parameters
    anything = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kw: dict[str, Any] = {}
    for k, v in options.items():
        if k in taken:
            continue
        if k not in params and not anything:
            raise PreimageError(f"{fn.__name__} takes no option '{k}'")
        if k == "energy":
            v = Energy(**v)
        elif k == "schedule":
            v = tuple(Stage(int(i), float(lr), bool(j)) for i, lr, j in v)
        kw[k] = v
    return kw


def png_bytes(x: torch.Tensor, scale: str = "minmax") -> bytes:
    """One C×H×W image (0–255 units) as PNG bytes (``minmax``: rescaled to the full range, as the paper saves)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(x, scale)).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x.detach().float().cpu().numpy())
    return buf.getvalue()


def _split(jobs: list[Job], res: Any, names_of: Callable[[Job], list[str]],
           options: Mapping[str, Any]) -> list[Output]:
    """Cut a batched Result into one Output per job: a PNG per problem (``names_of(job)``), a thumbnail of
    the first (``thumbnail``: its side), the raw images (``images.npy``, when ``arrays`` is set), the records
    of its problems and the result's info."""
    outputs, start = [], 0
    records = res.records()
    thumb = options.get("thumbnail")
    info = {k: v for k, v in res.info.items() if k != "reference" and _jsonable(v)}
    for job in jobs:
        names = names_of(job)
        n = len(names)
        rows, images = records[start:start + n], res.images[start:start + n]
        files = {f"{name}.png": png_bytes(im) for name, im in zip(names, images, strict=True)}
        if thumb:  # never larger than the image: small ones are scaled up by the page (pixelated)
            side = min(int(thumb), max(images.shape[-2:]))
            files["thumb.png"] = png_bytes(resize(_minmax(images[0])[None], _fit(images.shape[-2:], side))[0], "clip")
        if options.get("arrays"):
            files["images.npy"] = npy_bytes(images)
        for name, r in zip(names, rows, strict=True):
            r["png"] = f"{name}.png"
        outputs.append(Output({"problems": rows, "iterations": res.iterations, "info": info,
                               "size": list(images.shape[-2:])}, files))
        start += n
    return outputs


def _jsonable(v: Any) -> bool:
    try:
        canonical(v)
        return True
    except TypeError:
        return False


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8) * 255


def _fit(hw: Sequence[int], side: int) -> tuple[int, int]:
    h, w = int(hw[0]), int(hw[1])
    s = side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


#: Options every built-in runner reads itself rather than passing to the task.
_OWN = ("arrays", "thumbnail")


@register("maximize")
def run_maximize(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Activation maximization of every job's units in one batch: units × restarts problems."""
    from ..tasks import activation

    job = jobs[0]
    opts = dict(job.options)
    rep, model = ctx.rep(job.model, job.layer), ctx.model(job.model)
    restarts, seed = int(opts.get("restarts", 1)), int(opts.get("seed", 0))
    size = opts.get("size") or _unit_size(ctx, job.model, job.layer)
    energy = Energy(**opts.get("energy", {}))
    init = torch.cat([problem_noise(rep.channels, (size, size), energy.B, seed, u, r)
                      for j in jobs for u in j.units for r in range(restarts)])
    units = [u for j in jobs for u in j.units]
    kw = task_kwargs(activation.maximize, opts, _OWN)
    kw["size"] = size
    res = activation.maximize(rep, units, init=init.to(rep.device_dtype()[0]), stats=model.stats, **kw)
    return _split(jobs, res, lambda j: [(f"u{u}-" if len(j.units) > 1 else "") + f"r{r}" for u in j.units
                                        for r in range(restarts)], opts)


def _unit_size(ctx: Context, model_id: str, layer: str | None) -> int:
    from ..tasks.activation import response_point, unit_image_size

    key = (model_id, layer)
    if key not in ctx.sizes:
        ctx.sizes[key] = unit_image_size(response_point(ctx.rep(model_id, layer))[0])
    return ctx.sizes[key]


@register("invert")
def run_invert(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Inversion of every job's images in one batch: images × C values × restarts problems."""
    from ..tasks.inversion import invert, prepare_images

    job = jobs[0]
    opts = dict(job.options)
    rep = ctx.rep(job.model, job.layer)
    specs = [s for j in jobs for s in j.images]
    img, _ = prepare_images(rep, specs, opts.get("size"))
    cs = opts.get("C", rep.defaults.C)
    cs = [float(c) for c in cs] if isinstance(cs, list) else [float(cs)]
    restarts, seed = int(opts.get("restarts", 1)), int(opts.get("seed", 0))
    energy = Energy(**opts.get("energy", {}))
    hw = tuple(img.shape[-2:])
    init = torch.cat([problem_noise(rep.channels, hw, energy.B, seed, fingerprint(s), c, r)
                      for s in specs for c in cs for r in range(restarts)])
    kw = task_kwargs(invert, opts, _OWN)
    kw.update(size=hw, C=cs)
    res = invert(rep, img, init=init.to(img.device), **kw)
    for p, s in zip(res.problems, [s for s in specs for _ in cs for _ in range(restarts)], strict=True):
        p["input"] = s
    return _split(jobs, res, lambda j: [(f"i{i}-" if len(j.images) > 1 else "") + f"C{c:g}-r{r}"
                                        for i in range(len(j.images)) for c in cs for r in range(restarts)], opts)


@register("caricature")
def run_caricature(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Caricatures of every job's images in one batch (each starts from its image: no noise)."""
    from ..tasks import activation
    from ..tasks.inversion import prepare_images

    job = jobs[0]
    opts = dict(job.options)
    rep = ctx.rep(job.model, job.layer)
    specs = [s for j in jobs for s in j.images]
    img, _ = prepare_images(rep, specs, opts.get("size"))
    kw = task_kwargs(activation.caricature, opts, _OWN)
    kw["size"] = tuple(img.shape[-2:])
    res = activation.caricature(rep, img, **kw)
    for p, s in zip(res.problems, specs, strict=True):
        p["input"] = s
    return _split(jobs, res, lambda j: [f"i{i}" if len(j.images) > 1 else "caricature"
                                        for i in range(len(j.images))], opts)


@register("examples")
def run_examples(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Dataset examples of every unit of a layer, from one pass over the job's images (see ``examples``)."""
    from .examples import layer_examples

    return [layer_examples(ctx.rep(j.model, j.layer), list(j.images), **j.options) for j in jobs]
