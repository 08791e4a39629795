"""Activation maximization and caricature (paper-notes §1.3, §1.4): the inner-product objective −⟨Φ(x), W⟩
minimized by the same ``optimize()`` loop and energy as inversion.

Both take the response at the layer's **pre-ReLU** point: when the chosen module is a ReLU-family activation,
or a timm norm+activation layer whose ``act`` is one (``BatchNormAct2d``), Φ is that activation's input, as
the paper truncates the network at the conv layer. Other modules are taken at their output (a conv followed
by an in-place ReLU is already pre-ReLU, since truncation stops right after it). Known limit: a composite
block that applies a ReLU in its own ``forward`` (torchvision ResNet blocks) is seen after that ReLU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..engine.memory import check_memory
from ..engine.objectives import Diversity, InnerProduct
from ..engine.objectives import caricature as caricature_objective
from ..engine.objectives import direction as direction_term
from ..engine.optimize import Energy, Progress, extra_buffers, optimize, scale_schedule
from ..engine.styles import describe, resolve
from ..errors import PreimageError
from ..measures.stats import RELUS, NeuronStats, Point, load_stats, warn
from ..representations.base import (
    Geometry,
    ModelSpec,
    Representation,
    Stage,
    swap_modules,
    truncated_forward,
)
from ..result import Result
from .capped import CAP_LEAK, leaky_backward, score_limit
from .inversion import as_representation, image_count, prepare_images, reference_features

#: Activation maximization and caricature: one stage of 300 steps at lr0 with jitter (paper-notes §1.3, §1.4).
SINGLE_STAGE = (Stage(300, 1.0, True),)
MODES = ("neuron", "channel")
#: ``maximize``'s default style: the one that measured better on the judge (benchmarks/README.md, transfer).
MAXIMIZE_STYLE = "natural"


# --- the pre-ReLU point ----------------------------------------------------------------------------------------




class PreActivation(Representation):
    """Φ at the input of the activation module ``act`` (a module name) that ends layer ``layer``.

    The activation is looked up by name at every call, so swapping it (``leaky_relus``) keeps working.
    """

    def __init__(self, spec: ModelSpec, layer: str, act: str, view: str | None = None) -> None:
        super().__init__(spec, layer, view)
        parent, _, attr = act.rpartition(".")
        self._act_path = (parent, attr)
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N×C×H×W in paper units → the pre-activation response N×D×h×w (or N×D)."""
        parent, attr = self._act_path
        act = getattr(self.net.get_submodule(parent) if parent else self.net, attr)
        return self.as_view(truncated_forward(self.net, x * self.scale, act, at_input=True), x)


def unit_view(rep: Representation, token: str | None = None) -> Representation:
    """Φ as units are picked from it: a prefix token's channels with ``token`` ("cls", "dist", "reg0" or an
    index), else the patch grid of a token output (N×C×h×w), else ``rep`` itself."""
    if token is not None:
        view = rep.with_view(str(token))
        view.geometry()  # a clear error for a layer without prefix tokens or an unknown token
        return view
    g = rep.geometry()
    return rep.with_view("grid") if g.tokens is not None and g.tokens.kind == "tokens" else rep


def response_point(rep: Representation) -> tuple[Representation, Point]:
    """The representation of the layer's pre-ReLU response, and its key in the neuron statistics."""
    if isinstance(rep, PreActivation):
        return rep, ("input", rep.act_name)
    if rep.view is not None and rep.view != "grid":
        return rep, (f"token{rep.geometry().tokens.index(rep.view)}", rep.layer or "")
    if rep.view == "grid" and rep.geometry().tokens.kind == "tokens":
        return rep, ("grid", rep.layer or "")
    if rep.layer is None:
        return rep, ("output", "")
    mods = dict(rep.net.named_modules())
    mod = mods[rep.layer]
    act = None
    if isinstance(mod, RELUS):
        act = rep.layer
    elif isinstance(getattr(mod, "act", None), RELUS) and f"{rep.layer}.act" in mods:
        act = f"{rep.layer}.act"  # timm's norm+act layers: bn → drop → act
    if act is None:
        return rep, ("output", rep.layer)
    pre = PreActivation(rep.spec, rep.layer, act, rep.view).to(*rep.device_dtype())
    pre._geometry = rep._geometry  # elementwise activation: same geometry
    return pre, ("input", act)


# --- leaky ReLUs -----------------------------------------------------------------------------------------------


class LeakyClamp(nn.Module):
    """ReLU (``upper=None``) or ReLU6 with slope ``leak`` where the original is flat: clamp(x) + leak·(x − clamp(x))."""

    def __init__(self, leak: float, upper: float | None = None) -> None:
        super().__init__()
        self.leak, self.upper = leak, upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(0, self.upper)
        return y + self.leak * (x - y)


@contextlib.contextmanager
def leaky_relus(net: nn.Module, leak: float) -> Iterator[int]:
    """Temporarily replace the net's ``nn.ReLU``/``nn.ReLU6`` modules by leaky ones (slope ``leak`` where they
    are flat, paper-notes §1.3); yields how many were swapped. Restored on exit. Functional ReLUs (``F.relu``
    in a forward) are not affected. ``leak == 0`` changes nothing."""
    def leaky(m: nn.Module) -> nn.Module | None:
        if not leak or not isinstance(m, (nn.ReLU, nn.ReLU6)):
            return None
        return LeakyClamp(leak, 6.0 if isinstance(m, nn.ReLU6) else None)

    with swap_modules(net, leaky) as n:
        yield n


# --- image size ------------------------------------------------------------------------------------------------


def _map_side(rep: Representation, side: int) -> int:
    """Rows of the response map for a side×side input (0 if the input is too small for the layer)."""
    device, dtype = rep.device_dtype()
    try:
        with torch.no_grad():
            y = rep(torch.zeros(1, rep.channels, side, side, device=device, dtype=dtype))
    except Exception:  # noqa: BLE001 - a size the network refuses: no map
        return 0
    return int(y.shape[-2]) if y.ndim == 4 else 1


def cell_side(geometry: Geometry) -> int:
    """R = round(1.1·ρ/s), made odd by adding one (paper-notes §1.3, single unit; MATLAB rounding)."""
    rho, s = max(geometry.receptive_field), max(geometry.stride)
    r = max(int(math.floor(1.1 * rho / s + 0.5)), 1)
    return r + 1 if r % 2 == 0 else r


def unit_image_size(rep: Representation) -> int:
    """The input side for visualizing one unit of ``rep``'s layer (paper-notes §1.3).

    Each problem of a batch holds one unit at the centre of its own image, so the paper's single-filter rule
    applies: the response map should be R×R with R = round(1.1·ρ/s) made odd (ρ: receptive field, s: stride,
    both measured), i.e. the unit's field plus a 10% margin, the unit at the exact centre neuron; the image is
    the largest square input whose map is no larger than R (the authors' ``find_image_size``), found here by
    a few forward passes on a blank input. Layers without a spatial map (logits, fc) use the model's native
    input size.

    Why not the paper's multi-filter layout (k filters in one image of R·⌈√k⌉ cells, R ≥ 4)? Batch-first: k
    units × R restarts are N independent problems of one ``optimize`` call, each with the single-filter
    balance between data term and priors, and the mosaic is the grid of their images.
    """
    g = rep.geometry()
    native = (rep.defaults.size or (224, 224))[0]
    if g.stride is None or g.receptive_field is None or g.global_field or g.fixed_size:
        return native
    r, s = cell_side(g), max(g.stride)
    # The map grows by about one neuron per stride: bracket the answer around R·s, then bisect.
    lo, hi = r * s, r * s
    if _map_side(rep, lo) <= r:
        hi = lo + s
        while _map_side(rep, hi) <= r:
            if hi > 8 * max(native, r * s):  # the network refuses these sizes: keep its own
                return native
            lo, hi = hi, hi + s
    else:
        lo = max(hi - s, 1)
        while lo > 1 and _map_side(rep, lo) > r:
            hi, lo = lo, max(lo - s, 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _map_side(rep, mid) <= r:
            lo = mid
        else:
            hi = mid
    return lo


# --- activation maximization -----------------------------------------------------------------------------------


def _as_units(units: int | Sequence[int]) -> list[int]:
    us = [units] if isinstance(units, int) else list(units)
    if not us:
        raise PreimageError("give at least one unit")
    if not all(isinstance(u, int) and not isinstance(u, bool) for u in us):
        raise PreimageError(f"units must be integers, got {us}")
    return us


def check_options(mode: str = "neuron", restarts: int = 1, relu_leak: float = 0.0,
                  cap_leak: float = 0.0) -> None:
    """A clear error for a bad mode, restart count, ReLU leak or cap leak."""
    if mode not in MODES:
        raise PreimageError(f"unknown mode '{mode}' (choose {' or '.join(MODES)})")
    if restarts < 1:
        raise PreimageError("--restarts must be at least 1")
    if not 0 <= relu_leak < 1:
        raise PreimageError("--relu-leak must be in [0, 1)")
    if not 0 <= cap_leak < 1:
        raise PreimageError("--cap-leak must be in [0, 1)")


def check_units(model: Representation | str, units: int | Sequence[int], layer: str | None = None,
                token: str | None = None) -> tuple[Representation, Point, list[int]]:
    """The layer's pre-ReLU response Φ (on the patch grid of token outputs, or a prefix token's channels with
    ``token``), its statistics key and the units, after checking that the layer has a channel axis
    (N×C×h×w or N×C) and that every unit is one of its channels; a clear error otherwise."""
    us = _as_units(units)
    rep, point = response_point(unit_view(as_representation(model, layer), token))
    where = f"layer '{rep.layer or 'output'}' of {rep.name}"
    shape = rep.geometry().shape
    if len(shape) not in (1, 3):
        raise PreimageError(f"{where} outputs {'×'.join(map(str, shape)) or 'no tensor'} per image: no channel "
                            "axis to pick a unit from (need N×C×h×w or N×C)")
    bad = [u for u in us if not 0 <= u < shape[0]]
    if bad:
        raise PreimageError(f"unit {bad[0]} is out of range for {where}: it has {shape[0]} channels "
                            f"(0–{shape[0] - 1})")
    return rep, point, us


def _reference_max(stats: NeuronStats, point: Point, units: list[int], channels: int,
                   rep: Representation) -> tuple[torch.Tensor, torch.Tensor]:
    """(M_c per unit, the positive normalizer used per unit). A unit whose maximum is not positive (a pre-ReLU
    unit never excited by the reference images) is normalized by the median of the layer's positive maxima."""
    st = stats.get(point)
    if st.channels != channels:
        raise PreimageError(f"the neuron statistics of {stats.model} have {st.channels} channels at layer "
                            f"'{rep.layer}', the layer has {channels}; run 'preimage stats' again")
    m = st.max[units].double()
    pos = st.max[st.max > 0]
    fallback = float(pos.median()) if pos.numel() else 1.0
    return m, torch.where(m > 0, m, torch.full_like(m, fallback))


def maximize(model: Representation | str, units: int | Sequence[int], *, layer: str | None = None,
             mode: str = "neuron", token: str | None = None, restarts: int = 1,
             size: int | tuple[int, int] | None = None,
             iters: int | None = None, seed: int = 0, optimizer: str | None = None, relu_leak: float = 0.0,
             cap_leak: float = 0.0, stats: NeuronStats | None = None, energy: Energy = Energy(),
             init: torch.Tensor | None = None, progress: Progress | None = None, amp: bool | str | None = None,
             compile: bool = False, style: str = MAXIMIZE_STYLE, param: str | None = None,
             transforms: str | None = None, prior: str | None = None, prior_weight: float | None = None,
             direction: torch.Tensor | None = None, direction_weight: float = 1.0, diversity: float = 0.0,
             diversity_layer: str | None = None, unit_weight: float = 1.0) -> Result:
    """Images that excite units of a layer most: R restarts × k units = N problems, one ``optimize`` batch.

    mode: ``neuron`` (the paper): the unit's centre neuron of the pre-ReLU map; ``channel``: the mean of its
    whole map (the Lucid/Lucent convention). Token outputs: the patch grid's centre token or mean; with
    ``token`` ("cls", "dist", "reg0", an index) the unit is a channel of that prefix token. A layer of logits
    (``spec.classifier_layer`` or the whole net) gives class visualizations at the native input size. Data
    term −w·Φ_c with w = 10⁴/(ρ²·M_c) (paper-notes §1.3, k = 1 since each problem holds one unit in its own
    image; ρ² = the field's area clipped to the image, the whole image for logits), M_c the unit's own
    maximum over the reference images (the paper's code used channel k's by mistake; that value is kept in
    ``info["paper_code_reference_max"]``).

    stats: neuron statistics (default: the cache, computed from the bundled samples if absent). size: input
    side (default: ``unit_image_size``). init: the starting images, N×C×H×W in paper units, units × restarts
    in order (default: the loop's noise; the sweep passes noise drawn per problem, so that a problem's result
    does not depend on the batch it shares). relu_leak: slope given to the net's ReLUs while optimizing (the
    reported activations use the real network). cap_leak: backward slope where ReLU6 is flat (``capped``; 0, the
    default: the exact gradient; the forward stays exact). Returns a Result of N images in 0–255 units with metrics
    ``activation`` (Φ_c at the centre neuron, or the map's mean, on the final image without jitter),
    ``reference_max`` (M_c), ``ratio`` and, for logits, ``probability`` (softmax) and ``top1``.

    style: ``paper`` or ``natural`` (``engine.styles``); param/transforms/prior/prior_weight override its parts.
    The objective is a weighted sum: unit_weight × the units' term (0 to leave it out), plus, with
    ``direction`` (D channel weights), direction_weight × the response along it (−mean of ⟨Φ, v̂⟩ over the
    map, normalized as a unit with the layer's median maximum), plus ``diversity`` × Lucid's Gram-similarity
    penalty between the restarts of each unit (at Φ, or at ``diversity_layer``).
    """
    check_options(mode, restarts, relu_leak, cap_leak)
    if unit_weight == 0 and direction is None:
        raise PreimageError("nothing to maximize: give units (a non-zero unit weight) or a direction")
    rep, point, us = check_units(model, units, layer, token)
    sty, opt_kw = resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                          optimizer=None if optimizer == "auto" else optimizer)
    geo = rep.geometry()
    channels = geo.shape[0]
    where = f"layer '{rep.layer or 'output'}' of {rep.name}"
    logits = len(geo.shape) == 1 and (rep.layer is None or rep.layer == rep.spec.classifier_layer)
    if size is None:
        size = unit_image_size(rep)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    sched = scale_schedule(SINGLE_STAGE, iters if iters is not None else sty.iters)
    check_memory(rep, len(us) * restarts, hw, extra_buffers=extra_buffers(sched, opt_kw["optimizer"]))
    device, dtype = rep.device_dtype()
    shape = reference_features(rep, torch.zeros(1, rep.channels, *hw, device=device, dtype=dtype)).shape[1:]

    if stats is None:
        stats = load_stats(rep.spec)
        if point not in stats.points or stats.points[point].channels != channels:
            warn(f"the cached neuron statistics of {rep.name} do not cover {where}; recomputing them")
            stats = load_stats(rep.spec, recompute=True)
    ref, norm = _reference_max(stats, point, us, channels, rep)

    field = geo.receptive_field or hw
    area = min(field[0], hw[0]) * min(field[1], hw[1])
    w_unit = 1e4 / area / norm  # the paper's k is 1: one unit per problem
    k, n = len(us), len(us) * restarts
    unit_of = torch.tensor(us).repeat_interleave(restarts)
    w = w_unit.repeat_interleave(restarts).to(device, dtype)
    weight = torch.zeros(n, *shape, device=device, dtype=dtype)
    rows = torch.arange(n, device=device)
    centre = None
    if len(shape) == 3 and mode == "neuron":
        centre = ((shape[1] - 1) // 2, (shape[2] - 1) // 2)
        weight[rows, unit_of.to(device), centre[0], centre[1]] = w
    elif len(shape) == 3:
        weight[rows, unit_of.to(device)] = (w / (shape[1] * shape[2]))[:, None, None]
    else:
        weight[rows, unit_of.to(device)] = w
    units_term = InnerProduct(weight)
    objective = unit_weight * units_term
    if direction is not None:
        # The direction gets the units' normalization: 10⁴/(ρ²·M) with M the layer's median positive maximum.
        st = stats.get(point).max
        med = float(st[st > 0].median()) if bool((st > 0).any()) else 1.0
        dir_scale = 1e4 / area / med * math.prod(shape[1:])
        along = direction_term(direction.to(device, dtype), shape, dir_scale)
        objective = objective + direction_weight * along
    if diversity:
        objective = objective + diversity * Diversity(unit_of, diversity_layer)
    if sty.C != 1.0:
        objective = sty.C * objective

    with leaky_relus(rep.net, relu_leak), leaky_backward(rep.net, cap_leak):
        trace = optimize(rep, objective, n, hw, sched, init=init, seed=seed, energy=energy, progress=progress,
                         amp=amp, compile=compile, **opt_kw)
    with torch.no_grad():
        phi = rep(trace.x)
    picked = phi[rows, unit_of.to(device)]
    if centre is not None:
        activation = picked[:, centre[0], centre[1]]
    else:
        activation = picked.flatten(1).mean(1) if picked.ndim > 1 else picked
    reference = ref.repeat_interleave(restarts).to(activation)
    metrics = {"activation": activation, "reference_max": reference, "ratio": activation / reference}
    if logits and phi.ndim == 2:
        prob = phi.softmax(1)
        metrics["probability"] = prob[rows, unit_of.to(device)]
        metrics["top1"] = prob.argmax(1)
    problems = [{"unit": u, "restart": r} for u in us for r in range(restarts)]
    quirk = stats.get(point).max[k - 1].item() if k - 1 < channels else None
    if direction is not None:
        metrics["direction"] = along.score(phi) / dir_scale  # mean ⟨Φ, v̂⟩ over the map
    info = {"size": list(hw), "mode": mode, "token": token, "stages": trace.stages, "seed": seed,
            **describe(sty, sched), "relu_leak": relu_leak, "cap_leak": cap_leak,
            "point": f"{point[0]} of {point[1] or 'the network'}",
            "receptive_field": list(geo.receptive_field) if geo.receptive_field else None,
            "stride": list(geo.stride) if geo.stride else None, "centre": list(centre) if centre else None,
            "weight": w_unit.tolist(), "paper_code_reference_max": quirk, "logits": logits,
            "stats": {"source": stats.source, "images": len(stats.images),
                      "size": list(stats.size) if stats.size else None}}
    return Result(rep.to_image(trace.x), problems, metrics, rep.name, rep.layer, trace.iterations, trace.seconds,
                  trace.energy, info)


# --- caricature ------------------------------------------------------------------------------------------------


def caricature(model: Representation | str, images: str | Sequence[str] | torch.Tensor, *,
               layer: str | None = None, size: int | tuple[int, int] | None = None, iters: int | None = None,
               seed: int = 0, optimizer: str | None = None, relu_leak: float = 0.0, cap_leak: float = 0.0,
               limit: bool = False, energy: Energy = Energy(), progress: Progress | None = None,
               amp: bool | str | None = None, compile: bool = False, style: str = "paper", param: str | None = None,
               transforms: str | None = None, prior: str | None = None, prior_weight: float | None = None) -> Result:
    """Exaggerate what a layer sees in images: minimize −⟨Φ(x), Φ0⁺⟩/‖Φ0⁺‖², Φ0⁺ = max(Φ(x0), 0), starting
    from x0, 300 steps with jitter (paper-notes §1.4). Φ0 is computed on the mean-subtracted image the
    optimization starts from (the authors' script used the raw image: a quirk, fixed here).

    images: a path, ``sample:NAME``, a list, or N×C×H×W in 0–255. cap_leak: backward slope where ReLU6 is flat
    (``capped``; 0, the default: the exact gradient; the forward and the scores stay exact).
    limit: also measure how far the score can go (``capped.score_limit``: the same energy from noise, with and
    without the leak; about three times the work). Returns a Result with metrics ``score_start`` and
    ``score_end``: ⟨Φ, Φ0⁺⟩/‖Φ0⁺‖² on the image and on the final image without jitter (``score_start`` is 1
    by construction: ⟨Φ0, Φ0⁺⟩ = ‖Φ0⁺‖²), and with ``limit`` ``score_limit`` (the best score of the noise
    runs and of the caricature itself) and ``share_of_limit`` = score_end / score_limit.
    """
    check_options(relu_leak=relu_leak, cap_leak=cap_leak)
    rep, point = response_point(as_representation(model, layer))
    sty, opt_kw = resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                          optimizer=None if optimizer == "auto" else optimizer)
    sched = scale_schedule(SINGLE_STAGE, iters if iters is not None else sty.iters)
    check_memory(rep, image_count(images), size or rep.defaults.size,
                 extra_buffers=extra_buffers(sched, opt_kw["optimizer"]))
    img, names = prepare_images(rep, images, size)
    x0 = rep.to_paper_units(img)
    phi0 = reference_features(rep, x0)
    if not bool((phi0.flatten(1) > 0).any(1).all()):
        raise PreimageError(f"layer '{rep.layer or 'output'}' of {rep.name} has no positive response to the image: "
                            "there is nothing to exaggerate")
    objective = caricature_objective(phi0)
    with leaky_relus(rep.net, relu_leak), leaky_backward(rep.net, cap_leak):
        trace = optimize(rep, objective, x0.shape[0], tuple(x0.shape[-2:]), sched, init=x0, seed=seed,
                         energy=energy, progress=progress, amp=amp, compile=compile, **opt_kw)
    with torch.no_grad():
        end = objective.score(rep(trace.x))
    start = objective.score(phi0)
    metrics = {"score_start": start, "score_end": end}
    if limit:
        best, _ = score_limit(rep, objective, x0.shape[0], tuple(x0.shape[-2:]), sched,
                              leaks=sorted({0.0, cap_leak or CAP_LEAK}), seed=seed, energy=energy, **opt_kw)
        metrics["score_limit"] = torch.maximum(best.to(end), end)
        metrics["share_of_limit"] = end / metrics["score_limit"]
    problems = [{"input": nm} for nm in names]
    info = {"size": list(x0.shape[-2:]), "stages": trace.stages, "seed": seed, **describe(sty, sched),
            "relu_leak": relu_leak, "cap_leak": cap_leak, "point": f"{point[0]} of {point[1] or 'the network'}",
            "reference": img}
    return Result(rep.to_image(trace.x), problems, metrics, rep.name, rep.layer, trace.iterations, trace.seconds,
                  trace.energy, info)
