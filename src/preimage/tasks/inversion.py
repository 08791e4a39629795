"""Inversion: the image whose representation matches Φ0 = Φ(x0) (docs/paper-notes.md §1.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..engine.memory import check_memory
from ..engine.objectives import Inversion, channel_mask, neighbourhood_mask
from ..engine.optimize import Energy, Progress, extra_buffers, optimize
from ..engine.param import Parameterization
from ..engine.priors import BNPrior
from ..engine.runtime import borrowed
from ..engine.schedules import Stage, scale_schedule, schedule_record, stages_from_record, task_defaults
from ..engine.styles import Style, describe, resolve
from ..engine.transforms import Transform
from ..errors import PreimageError
from ..report.result import Result
from ..report.store import job_config
from ..representations import ModelLike, Representation
from ..representations.base import model_id
from .coarse_to_fine import optimize_coarse_to_fine
from .common import (
    Images,
    as_representation,
    call_options,
    check_count,
    check_size,
    display_scale,
    distinct_numbers,
    features,
    image_count,
    image_specs,
    pictures,
    prepare_images,
    reference_features,
    seeds,
)
from .judging import judge_pictures


def parse_mask(spec: str | torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``neigh:N`` (central N×N neurons), ``channels:first-half|second-half|A:B``, a 0/1 tensor, or None; a clear
    error for anything else, or for a mask that selects nothing."""
    if spec is None:
        return None
    if isinstance(spec, torch.Tensor):
        if not bool((spec != 0).any()):
            raise PreimageError("the mask selects no feature: the error would be 0 by construction", param="mask")
        return spec
    kind, _, arg = str(spec).partition(":")
    try:
        if kind == "neigh":
            if len(shape) < 3:
                raise PreimageError("a neighbourhood mask needs a layer with a spatial map", param="mask")
            return neighbourhood_mask(shape, int(arg or 5))
        if kind == "channels":
            return channel_mask(shape, arg or "first-half")
    except PreimageError:  # the specific reason (an empty, out-of-range or too-wide mask), not the generic line
        raise
    except ValueError:
        pass
    raise PreimageError(f"bad mask {spec!r} (use neigh:N, channels:first-half, channels:second-half or channels:A:B)",
                        param="mask")


def _cs(C: float | Sequence[float] | None, default: float) -> list[float]:
    return [default] if C is None else distinct_numbers(C, "C", 0.0, 1e38, "value", open_low=True)


def invert(model: ModelLike, images: Images, *, layer: str | None = None, C: float | Sequence[float] | None = None,
           restarts: int = 1, size: int | tuple[int, int] | None = None, iters: int | None = None,
           schedule: Sequence[Stage] | Sequence[dict] | None = None, seed: int = 0,
           style: str | Style = "paper", param: str | Parameterization | None = None,
           transforms: str | Transform | Sequence[Transform | str] | None = None, prior: str | BNPrior | None = None,
           optimizer: str | None = None, mask: str | torch.Tensor | None = None, init: torch.Tensor | None = None,
           coarse_to_fine: bool | None = None, energy: Energy | dict = Energy(),
           judge: str | Sequence[str] | None = None,
           device: str | None = None, amp: bool | str | None = None, compile: bool = False,
           progress: Progress | None = None) -> Result:
    """Reconstruct images from their representation at a layer: one problem per (image, C, restart).

    model: a name (``"efficientnet_lite0"``, ``"timm:resnet50"``, ``"vgg16"``, ``"hog"``), any nn.Module, or a
    representation (``preimage.load``). images: a path, ``sample:NAME``, a list of them, or N×C×H×W in 0–255. layer:
    a module name (``preimage.layers(model)``); None: the representation's, or the model's documented default (an
    error for a model without one). C: the data-term weight(s) (default: the model's, 100 for CNNs; several give one
    picture each). style: ``paper`` (the default: pixels, jitter, momentum + AdaGrad, 300 + 50 steps), ``fast`` (the
    Fourier spectrum, Adam then L-BFGS, 120 steps) or ``natural``, or a ``Style``; param, transforms, prior and
    optimizer replace its parts (objects or their shorthand strings). size: the input side (default: the model's;
    HOG/DSIFT: the image's own). iters: total iterations (the schedule scaled); schedule: the stages themselves.
    mask: ``neigh:N`` or ``channels:...`` (docs/paper-notes.md §1.2). init: starting images, N×C×H×W in 0–255, one
    per problem. coarse_to_fine: spend the first third of the iterations on a half-resolution image (None: the
    model's default, on for ``hog``). judge: classifier name(s) whose top-1 on each picture is compared with its
    top-1 on the original (``info["transfer"]``). device: where to compute. seed: each problem's randomness is
    seeded by the problem itself and this number.

    Returns a Result: ``images`` N×C×H×W in 0–255 and ``metrics["error"]`` = ‖Φ(x)−Φ0‖/‖Φ0‖ (masked when a mask is
    given) of those images.
    """
    call = call_options(invert, locals(), ("model", "images", "layer", "progress"))
    rep = as_representation(model, layer, device=device)
    if mask is not None and isinstance(mask, str) and mask.startswith("neigh") and rep.view is None:
        g = rep.geometry()  # a neighbourhood of the patch grid, for token outputs
        rep = rep.with_view("grid") if g.tokens is not None and g.tokens.kind == "tokens" else rep
    with borrowed(rep):
        return _invert(rep, images, C, restarts, size, iters, schedule, seed, style, param, transforms, prior,
                       optimizer, mask, init, coarse_to_fine, energy, judge, amp, compile, progress, call)


def _invert(rep: Representation, images: Images, C: Any, restarts: int, size: Any, iters: int | None,
            schedule: Any, seed: int, style: Any, param: Any, transforms: Any, prior: Any, optimizer: str | None,
            mask: Any, init: torch.Tensor | None, coarse_to_fine: bool | None, energy: Energy | dict,
            judge: Any, amp: Any, compile: bool, progress: Progress | None, call: dict[str, Any]) -> Result:
    defaults = task_defaults(rep.spec)
    restarts = check_count(restarts, "restarts")
    seed = check_count(seed, "seed", 0, 2**63 - 1)
    hw = check_size(size)
    energy = Energy(**energy) if isinstance(energy, dict) else energy
    if iters is not None:
        iters = check_count(iters, "iters", 1, 1_000_000)
    sty, opt_kw = resolve(rep, style, param=param, transforms=transforms, prior=prior, optimizer=optimizer)
    cs = _cs(C, defaults.C)
    specs = image_specs(images)
    n = image_count(images) * len(cs) * restarts
    stages = stages_from_record(schedule) if schedule and isinstance(schedule[0], dict) else schedule
    sched = scale_schedule(stages or sty.schedule or defaults.schedule, iters)
    extra = extra_buffers(sched, opt_kw["optimizer"])
    check_memory(rep, n, hw or rep.spec.input_size, extra_buffers=extra)
    img, names, prints = prepare_images(rep, images, hw)
    if not (hw or rep.spec.input_size):  # the images' own size (HOG, DSIFT)
        check_memory(rep, n, tuple(img.shape[-2:]), extra_buffers=extra)
    rep_idx = torch.arange(len(names), device=img.device).repeat_interleave(len(cs) * restarts)
    x0 = rep.to_paper_units(img)
    phi0 = reference_features(rep, x0)[rep_idx]
    m = parse_mask(mask, tuple(phi0.shape[1:]))
    c_vec = torch.tensor(cs, dtype=phi0.dtype).repeat_interleave(restarts).repeat(len(names))
    obj = Inversion(phi0, c_vec.to(phi0.device), None if m is None else m.to(phi0.device))
    if coarse_to_fine is None:
        coarse_to_fine = defaults.coarse_to_fine and init is None
    if coarse_to_fine and init is not None:
        raise PreimageError("coarse-to-fine starts from noise at half resolution: it takes no init",
                            param=("coarse_to_fine", "init"))
    if init is not None:
        init = _check_init(init, n, rep.channels, tuple(img.shape[-2:]))
    options = {**describe(sty, sched), "schedule": schedule_record(sched), "size": list(img.shape[-2:]),
               "mask": None if mask is None else str(mask) if not isinstance(mask, torch.Tensor) else "tensor",
               "coarse_to_fine": bool(coarse_to_fine), "energy": vars(energy),
               "init": None if init is None else "given"}
    problems = [{"input": specs[i] if specs else names[i], "input_name": names[i], "C": c, "restart": r,
                 "restarts": restarts, "several_C": len(cs) > 1}
                for i in range(len(names)) for c in cs for r in range(restarts)]
    prob_seeds = seeds("invert", rep, [{"image": prints[i], "C": c, "restart": r}
                                      for i in range(len(names)) for c in cs for r in range(restarts)], options, seed)
    kw = {"seed": prob_seeds, "energy": energy, "progress": progress, "amp": amp, "compile": compile, **opt_kw}
    if coarse_to_fine:
        trace = optimize_coarse_to_fine(rep, obj, n, tuple(img.shape[-2:]), sched, **kw)
    else:
        trace = optimize(rep, obj, n, tuple(img.shape[-2:]), sched,
                         init=None if init is None else rep.to_paper_units(init), **kw)
    out = pictures(rep, trace.x)
    with torch.no_grad():
        error = obj.error(features(rep, rep.to_paper_units(out)))
    mid = model_id(rep.spec)
    per = len(cs) * restarts
    jobs = [{"config": job_config("invert", mid, rep.layer, (), [specs[i] if specs else prints[i]], call),
             "rows": list(range(i * per, (i + 1) * per)),
             "names": [f"C{c:g}-r{r}" for c in cs for r in range(restarts)],
             "subject": names[i]} for i in range(len(names))]
    info = {"task": "invert", **options, "C": cs, "restarts": restarts, "seed": seed, "stages": trace.stages,
            "display": display_scale(sty.name), "model_id": mid, "reference": img}
    result = Result(out, problems, {"error": error}, rep.name, rep.layer, trace.iterations, trace.seconds,
                    trace.energy, info, jobs)
    if judge:
        result.info["transfer"] = judge_pictures(judge, result, originals=img.repeat_interleave(per, 0))
    return result


def _check_init(init: Any, n: int, channels: int, hw: tuple[int, int]) -> torch.Tensor:
    """Starting images N×C×H×W in 0–255, one per problem (checked)."""
    if not isinstance(init, torch.Tensor) or tuple(init.shape) != (n, channels, *hw):
        got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise PreimageError(f"init must be {n}×{channels}×{hw[0]}×{hw[1]} images in 0–255 (one per problem), got "
                            f"{got}", param="init")
    return init.float()
