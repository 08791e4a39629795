"""Inversion: the image whose representation matches Φ0 = Φ(x0) (paper-notes §1.2)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from ..engine.memory import check_memory
from ..engine.objectives import Inversion, channel_mask, neighbourhood_mask
from ..engine.optimize import Energy, Progress, extra_buffers, optimize, scale_schedule
from ..engine.styles import describe, resolve
from ..errors import PreimageError
from ..images import load_image, resize, rgb_to_grey
from ..representations import Representation, Stage, load
from ..representations.base import refusal
from ..result import Result
from .coarse_to_fine import optimize_coarse_to_fine


def as_representation(model: Representation | str, layer: str | None = None, **kw: object) -> Representation:
    """A Representation, or one loaded by name."""
    return model if isinstance(model, Representation) else load(model, layer, **kw)


def prepare_images(rep: Representation, images: str | Sequence[str] | torch.Tensor,
                   size: int | tuple[int, int] | None) -> tuple[torch.Tensor, list[str]]:
    """Image specs or a tensor → N×C×H×W in 0–255 at the network's input size, with names; C is the
    representation's channel count (``load_image``: RGB ↔ grey converted, k-channel arrays as they are).

    size: None means the model's default (the image's own resolution for HOG/DSIFT).
    """
    from ..images import image_name

    if size is None:
        size = rep.defaults.size
    if isinstance(images, torch.Tensor):
        x = images if images.ndim == 4 else images[None]
        names = [f"image{i}" for i in range(x.shape[0])]
        x = resize(x.float(), size) if size is not None else x.float()
        if x.shape[1] == 3 and rep.channels == 1:
            x = rgb_to_grey(x)
        elif x.shape[1] == 1 and rep.channels != 1:
            x = x.expand(-1, rep.channels, -1, -1)
        if x.shape[1] != rep.channels:
            raise PreimageError(f"the images have {x.shape[1]} channels, {rep.name} takes {rep.channels}")
    else:
        specs = [images] if isinstance(images, str) else list(images)
        loaded = [load_image(s, size, channels=rep.channels) for s in specs]
        if len({tuple(t.shape) for t in loaded}) > 1:
            raise PreimageError("images of different sizes cannot share a batch; pass --size")
        x, names = torch.cat(loaded), [image_name(s) for s in specs]
    return x.to(rep.scale.device), names


def image_count(images: str | Sequence[str] | torch.Tensor) -> int:
    """How many images a spec, a list of specs or an N×C×H×W tensor holds."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.ndim == 4 else 1
    return 1 if isinstance(images, str) else len(images)


def reference_features(rep: Representation, x: torch.Tensor) -> torch.Tensor:
    """Φ0 = Φ(x) without gradients, or a clear error if the network refuses the image (too small for the layer,
    or a size a fixed-size model does not take)."""
    try:
        with torch.no_grad():
            phi = rep(x)
    except PreimageError:
        raise
    except Exception as e:  # noqa: BLE001 - the network's own complaint about this input, in one line
        if isinstance(e, RuntimeError) and any(s in str(e) for s in ("too small", "can't be greater",
                                                                      "Padding size should be", "non-empty")):
            raise PreimageError(_too_small(rep, x)) from None
        if isinstance(e, MemoryError) or "allocate" in str(e):
            raise
        native = tuple(rep.defaults.size or ())
        multiple = re.search(r"divisible by (?:patch size )?\(?(\d+)\)?", str(e))
        if multiple:  # a ViT that takes any size made of whole patches (timm's dynamic_img_size)
            hint = f"; use a --size that is a multiple of {multiple.group(1)}"
        elif native and native != tuple(x.shape[-2:]):
            hint = f"; it was built for {native[0]}×{native[1]}: drop --size"
        else:
            hint = ""
        raise PreimageError(f"{rep.name} does not take a {'×'.join(map(str, x.shape[1:]))} input at layer "
                            f"'{rep.layer or 'output'}' ({refusal(e)}){hint}") from None
    if phi.numel() == 0 or (phi.ndim == 4 and min(phi.shape[-2:]) == 0):
        raise PreimageError(_too_small(rep, x))
    return phi


def _too_small(rep: Representation, x: torch.Tensor) -> str:
    return (f"image {x.shape[-2]}×{x.shape[-1]} is too small for layer '{rep.layer}' of {rep.name}: "
            "its output map would be empty; use a larger --size")


def parse_mask(spec: str | torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``neigh:N`` (central N×N neurons), ``channels:first-half|second-half|A:B``, a tensor, or None."""
    if spec is None or isinstance(spec, torch.Tensor):
        return spec
    kind, _, arg = spec.partition(":")
    try:
        if kind == "neigh":
            if len(shape) < 3:
                raise PreimageError("a neighbourhood mask needs a layer with a spatial map")
            return neighbourhood_mask(shape, int(arg or 5))
        if kind == "channels":
            return channel_mask(shape, arg or "first-half")
    except ValueError:
        pass
    raise PreimageError(f"bad mask '{spec}' (use neigh:5, channels:first-half, channels:second-half or channels:A:B)")


def invert(model: Representation | str, images: str | Sequence[str] | torch.Tensor, *, layer: str | None = None,
           C: float | Sequence[float] | None = None, restarts: int = 1, size: int | tuple[int, int] | None = None,
           iters: int | None = None, schedule: Sequence[Stage] | None = None, seed: int = 0,
           optimizer: str | None = None, mask: str | torch.Tensor | None = None, energy: Energy = Energy(),
           init: torch.Tensor | None = None, progress: Progress | None = None, amp: bool | str | None = None,
           compile: bool = False, style: str = "paper", param: str | None = None, transforms: str | None = None,
           prior: str | None = None, prior_weight: float | None = None, coarse_to_fine: bool | None = None) -> Result:
    """Reconstruct images from their representation: one problem per (image, C, restart), batched.

    images: a path, ``sample:NAME``, a list of them, or N×C×H×W in 0–255. C: the data-term weight(s)
    (default: the model's, 100 for CNNs). coarse_to_fine: spend the first third of the iterations on a
    half-resolution image (``tasks.coarse_to_fine``; None: the model's default, on for ``hog``; not with
    ``init``). Returns a Result with metric ``error`` = ‖Φ(x)−Φ0‖/‖Φ0‖ on the final image without jitter
    (masked when a mask is given). init: the starting images, N×C×H×W in paper units, one per problem
    (default: the loop's noise, or the parameterization's own start). amp/compile: see ``optimize``. style:
    ``paper`` (the default), ``natural`` or ``fast`` (120 iterations); param/transforms/prior/prior_weight
    override its parts
    (``engine.styles``).
    """
    rep = as_representation(model, layer)
    if mask is not None and isinstance(mask, str) and mask.startswith("neigh") and rep.view is None:
        rep = _grid_view(rep)  # a neighbourhood of the patch grid, for token outputs
    sty, opt_kw = resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                          optimizer=None if optimizer == "auto" else optimizer)
    cs = [rep.defaults.C] if C is None else ([float(C)] if isinstance(C, (int, float)) else [float(c) for c in C])
    if restarts < 1:
        raise PreimageError("--restarts must be at least 1")
    n = image_count(images) * len(cs) * restarts
    sched = scale_schedule(schedule or sty.schedule or rep.defaults.schedule, iters)
    extra = extra_buffers(sched, opt_kw["optimizer"])
    check_memory(rep, n, size or rep.defaults.size, extra_buffers=extra)
    img, names = prepare_images(rep, images, size)
    if not (size or rep.defaults.size):  # the images' own size (HOG, DSIFT)
        check_memory(rep, n, tuple(img.shape[-2:]), extra_buffers=extra)
    problems = [{"input": nm, "C": c, "restart": r} for nm in names for c in cs for r in range(restarts)]
    rep_idx = torch.arange(len(names), device=img.device).repeat_interleave(len(cs) * restarts)
    x0 = rep.to_paper_units(img)
    phi0 = reference_features(rep, x0)[rep_idx]
    m = parse_mask(mask, tuple(phi0.shape[1:]))
    c_vec = torch.tensor(cs, dtype=phi0.dtype).repeat_interleave(restarts).repeat(len(names))
    obj = Inversion(phi0, c_vec.to(phi0.device), None if m is None else m.to(phi0.device))
    if coarse_to_fine is None:
        coarse_to_fine = rep.defaults.coarse_to_fine and init is None
    if coarse_to_fine and init is not None:
        raise PreimageError("coarse-to-fine starts from noise at half resolution: it takes no init")
    if coarse_to_fine:
        trace = optimize_coarse_to_fine(rep, obj, len(problems), tuple(img.shape[-2:]), sched, seed=seed,
                                        energy=energy, progress=progress, amp=amp, compile=compile, **opt_kw)
    else:
        trace = optimize(rep, obj, len(problems), tuple(img.shape[-2:]), sched, init=init, seed=seed, energy=energy,
                         progress=progress, amp=amp, compile=compile, **opt_kw)
    with torch.no_grad():
        error = obj.error(rep(trace.x))
    return Result(rep.to_image(trace.x), problems, {"error": error}, rep.name, rep.layer, trace.iterations,
                  trace.seconds, trace.energy, {"stages": trace.stages, "size": list(img.shape[-2:]),
                                                 "seed": seed, **describe(sty, sched), "coarse_to_fine": coarse_to_fine,
                                                 "mask": str(mask) if mask is not None else None, "reference": img})


def _grid_view(rep: Representation) -> Representation:
    """``rep`` seen on its patch grid when its layer outputs tokens (unchanged otherwise)."""
    g = rep.geometry()
    return rep.with_view("grid") if g.tokens is not None and g.tokens.kind == "tokens" else rep
