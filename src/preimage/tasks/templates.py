"""HOG template pictures: the image that best excites a linear template on HOG cells (docs/paper-notes.md §4 item 2).

A detector's filter W (e.g. a DPM root filter, h×w cells × 31/32 dims) scores a window by ⟨Φ(x), W⟩. Its
picture is the natural pre-image that maximizes that score: the inner-product objective of activation
maximization, on an image of (h+2)·cell × (w+2)·cell pixels whose border cells are sliced off before the
product, without jitter, with the template's first D dims (27 for ``hog``/``hogb``), as the authors'
``exp_hog_model_viz.m``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..engine.objectives import InnerProduct, Term
from ..engine.optimize import Energy, Progress, noise_init, optimize
from ..engine.rng import ProblemRNG
from ..engine.runtime import borrowed
from ..engine.schedules import Stage
from ..errors import PreimageError
from ..report.result import Result
from ..representations import ModelLike, Representation
from ..representations.base import model_id
from .common import as_representation, check_count, features, pictures, seeds

#: Weight of the data term: the template is rescaled to C·W/‖W‖₁. With ‖W‖₁ fixed, the data term's gradient
#: per cell scales as 1/cells, as the regularizers' (a mean over pixels) do, so pictures of small and large
#: templates look alike, and the template's own scale does not matter.
TEMPLATE_C = 100.0


def template_as_dhw(template: np.ndarray | torch.Tensor, dim: int,
                    layout: Literal["auto", "hwd", "dhw"] = "auto") -> torch.Tensor:
    """A template h×w×D (DPM's layout) or D×h×w → float64 D'×h×w with its first ``dim`` dims (D ≥ dim).

    ``auto``: h×w×D when the last axis has at least ``dim`` entries (DPM stores 31 or 32 dims per cell),
    else D×h×w; pass ``layout`` when a template is ambiguous (e.g. 40×10×31 read as D×h×w).
    """
    t = torch.as_tensor(np.asarray(template) if not isinstance(template, torch.Tensor) else template)
    if t.ndim != 3 or not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
        raise PreimageError(f"a template must be a 3-d array of numbers (h×w×D or D×h×w), got shape "
                            f"{tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float64)
    if layout == "auto" and max(t.shape[0], t.shape[-1]) < dim:  # neither reading fits: say so, not guess one
        raise PreimageError(f"the template's shape {tuple(t.shape)} has no axis of {dim} or more dims per cell: "
                            f"give h×w×D or D×h×w with D ≥ {dim}")
    if layout == "auto":
        layout = "hwd" if t.shape[-1] >= dim else "dhw"
    if layout == "hwd":
        t = t.permute(2, 0, 1)
    elif layout != "dhw":
        raise PreimageError(f"unknown template layout '{layout}' (auto, hwd or dhw)")
    if t.shape[0] < dim:
        raise PreimageError(f"the template has {t.shape[0]} dims per cell; the representation needs {dim}")
    t = t[:dim].contiguous()
    if not bool(torch.isfinite(t).all()) or float(t.abs().sum()) == 0.0:
        raise PreimageError("the template is all zeros or holds NaN/inf")
    return t


def load_template(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a template array from ``.npy``, ``.npz`` (``key`` or its only array) or MATLAB ``.mat``.

    ``.mat``: the variable ``key``; else a DPM model struct's root filter ``model.filters(1).w``; else the only
    3-d numeric variable. Returns the array as stored (h×w×D for DPM filters).
    """
    p = Path(path)
    if not p.is_file():
        raise PreimageError(f"template file not found: {path}")
    try:
        if p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if key is None and len(z.files) != 1:
                    raise PreimageError(f"{path} holds {len(z.files)} arrays ({', '.join(z.files)}); name one")
                a = z[key or z.files[0]]
        elif p.suffix == ".mat":
            a = _mat_template(p, key)
        else:
            raise PreimageError(f"unknown template format '{p.suffix}' (use .npy, .npz or .mat)")
    except PreimageError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise PreimageError(f"cannot read template {path}: {e.__class__.__name__}: {e}") from None
    return np.asarray(a)


def _mat_template(p: Path, key: str | None) -> np.ndarray:
    from scipy.io import loadmat

    m = {k: v for k, v in loadmat(p, squeeze_me=True, struct_as_record=False).items() if not k.startswith("__")}
    if key is not None:
        if key not in m:
            raise PreimageError(f"{p} has no variable '{key}' (it has {', '.join(m)})")
        return np.asarray(m[key], dtype=np.float64)
    model = m.get("model")
    if model is not None and hasattr(model, "filters"):
        filters = np.atleast_1d(model.filters)
        return np.asarray(filters[0].w, dtype=np.float64)
    arrays = [k for k, v in m.items() if isinstance(v, np.ndarray) and v.ndim == 3 and v.dtype.kind in "fiu"]
    if len(arrays) != 1:
        raise PreimageError(f"cannot tell which variable of {p} is the template; name one ({', '.join(m)})")
    return np.asarray(m[arrays[0]], dtype=np.float64)


def _out_hw(rep: Representation, size: tuple[int, int]) -> tuple[int, int] | None:
    """Output map size at an input size, or None if the input is too small for the network."""
    try:
        with torch.no_grad():
            y = rep(torch.zeros(1, rep.channels, *size, device=rep.scale.device))
    except (PreimageError, RuntimeError):
        return None
    return (int(y.shape[-2]), int(y.shape[-1])) if y.ndim == 4 and y.numel() else None


def input_size_for(rep: Representation, cells: tuple[int, int], limit: int = 4096) -> tuple[int, int]:
    """The smallest input (H, W) whose output map is exactly ``cells`` (h, w): (h·8, w·8) for HOG with 8-px cells.

    Found by search, so it holds for any spatial representation (DSIFT, a CNN layer).
    """
    cell = getattr(rep.net, "cell_size", None)
    if cell is not None and _out_hw(rep, (cells[0] * cell, cells[1] * cell)) == tuple(cells):
        return cells[0] * cell, cells[1] * cell
    # A square big enough on both axes, then the smallest side on each axis with the other held there.
    big = 1
    while True:
        hw = _out_hw(rep, (big, big))
        if hw is not None and hw[0] >= cells[0] and hw[1] >= cells[1]:
            break
        big *= 2
        if big > limit:
            raise PreimageError(f"no input up to {limit} pixels gives a {cells[0]}×{cells[1]} output map")
    out = []
    for axis in (0, 1):
        lo, hi = 1, big  # smallest side in (lo, hi] whose map reaches cells[axis]
        while lo < hi:
            mid = (lo + hi) // 2
            hw = _out_hw(rep, (mid, big) if axis == 0 else (big, mid))
            if hw is not None and hw[axis] >= cells[axis]:
                hi = mid
            else:
                lo = mid + 1
        out.append(lo)
    size = (out[0], out[1])
    if _out_hw(rep, size) != tuple(cells):
        raise PreimageError(f"no input size gives exactly a {cells[0]}×{cells[1]} output map for {rep.name}")
    return size


class _BorderInnerProduct(Term):
    """−⟨Φ(x)[border cells sliced], W⟩ per problem: features N×D×(h+2b)×(w+2b), W: 1×D×h×w."""

    def __init__(self, weight: torch.Tensor, border: int) -> None:
        self.inner = InnerProduct(weight)
        self.border = border

    def crop(self, phi: torch.Tensor) -> torch.Tensor:
        b = self.border
        return phi[..., b:phi.shape[-2] - b, b:phi.shape[-1] - b]

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return self.inner(self.crop(phi))

    def score(self, phi: torch.Tensor) -> torch.Tensor:
        return self.inner.score(self.crop(phi))


def template_picture(rep: ModelLike, template: np.ndarray | torch.Tensor | str | Path, *,
                     iters: int = 300, seed: int = 0, border: int = 1, C: float = TEMPLATE_C, restarts: int = 1,
                     layout: Literal["auto", "hwd", "dhw"] = "auto", energy: Energy = Energy(),
                     progress: Progress | None = None) -> Result:
    """The picture of a linear template on a representation's cells, by activation maximization.

    rep: Φ or a model name (``hog``, ``hogb``, ``dsift``, ...). template: h×w×D (DPM's layout) or D×h×w, a
    weight per cell and dim, or a file for ``load_template``; only its first D_Φ dims are used (27 for HOG:
    DPM's texture and truncation dims are dropped). The image has (h+2·border)×(w+2·border) cells; the border
    cells are sliced off before the inner product, so strong edges on the frame do not count. One stage of
    ``iters`` steps at lr0, no jitter, the template rescaled to C·W/‖W‖₁.

    Returns a Result with ``restarts`` grey images N×1×H×W (0–255 units) and metrics ``activation`` =
    ⟨Φ(x*), W⟩ with W as given (sliced to D_Φ dims) and ``activation_start`` (the same at the noise start).
    """
    rep = as_representation(rep, "output" if not isinstance(rep, Representation) else None)
    if isinstance(template, (str, Path)):
        template = load_template(template)
    border = check_count(border, "border", 0, 1000)
    restarts = check_count(restarts, "restarts")
    iters = check_count(iters, "iters", 1, 1_000_000)
    if not C > 0:
        raise PreimageError("C must be a positive number", param="C")
    with borrowed(rep):
        return _template_picture(rep, template, iters, seed, border, C, restarts, layout, energy, progress)


def _template_picture(rep: Representation, template: np.ndarray | torch.Tensor, iters: int, seed: int, border: int,
                      C: float, restarts: int, layout: Literal["auto", "hwd", "dhw"], energy: Energy,
                      progress: Progress | None) -> Result:
    probe = _out_hw(rep, (256, 256))
    if probe is None:
        raise PreimageError(f"{rep.name} has no spatial output map: a template needs cells")
    with torch.no_grad():
        dim = int(rep(torch.zeros(1, rep.channels, 256, 256, device=rep.scale.device)).shape[1])
    w = template_as_dhw(template, dim, layout)
    cells = (w.shape[1] + 2 * border, w.shape[2] + 2 * border)
    size = input_size_for(rep, cells)
    device, dtype = rep.device_dtype()
    raw = _BorderInnerProduct(w[None].to(device, dtype), border)
    objective = _BorderInnerProduct((w * (C / float(w.abs().sum())))[None].to(device, dtype), border)
    digest = hashlib.sha1(w.numpy().tobytes()).hexdigest()[:12]
    options = {"iters": iters, "border": border, "C": C, "energy": vars(energy), "size": list(size)}
    prob_seeds = seeds("template", rep, [{"template": digest, "restart": r} for r in range(restarts)], options, seed)
    with torch.no_grad():
        start = noise_init(rep.channels, size, energy.B, ProblemRNG(prob_seeds))
        act0 = raw.score(rep(start.to(device, dtype)))
    trace = optimize(rep, objective, restarts, size, (Stage(iters, 1.0, False),), seed=prob_seeds, energy=energy,
                     progress=progress)
    out = pictures(rep, trace.x)
    with torch.no_grad():
        act = raw.score(features(rep, rep.to_paper_units(out)))
    problems = [{"target": f"template:{digest}", "label": f"template {w.shape[1]}×{w.shape[2]} cells",
                 "restart": r, "restarts": restarts} for r in range(restarts)]
    return Result(out, problems, {"activation": act, "activation_start": act0}, rep.name, rep.layer,
                  trace.iterations, trace.seconds, trace.energy,
                  {"task": "template", "stages": trace.stages, "size": list(size), "cells": list(w.shape[1:]),
                   "border": border, "dims": dim, "C": C, "seed": seed, "display": "minmax",
                   "model_id": model_id(rep.spec)})
