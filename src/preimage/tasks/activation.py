"""Activation maximization and caricature (docs/paper-notes.md §1.3, §1.4): the inner-product objective −⟨Φ(x), W⟩
minimized by the same ``optimize()`` loop and energy as inversion.

Targets are objective objects (``engine.targets``: ``Channel``, ``Neuron``, ``Class``, ``Direction``,
``Diversity`` and their weighted sums) or their shorthand strings; ``bind`` turns them into the data term: each
atom is read at its layer's pre-ReLU point (``representations.points``), normalized as the paper does,
w = 10⁴/(ρ²·M_c) (ρ² the receptive field's area clipped to the image, M_c the unit's maximum over reference
images), and a target that reads several layers reads the others through hooks during one forward pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..engine.memory import check_memory
from ..engine.objectives import Diversity as DiversityTerm
from ..engine.objectives import InnerProduct, Sum, Tap, Term
from ..engine.objectives import caricature as caricature_objective
from ..engine.optimize import Energy, Progress, Trace, extra_buffers, optimize
from ..engine.param import Parameterization
from ..engine.priors import BNPrior
from ..engine.runtime import borrowed, per_problem
from ..engine.schedules import SINGLE_STAGE, scale_schedule, schedule_record
from ..engine.styles import Style, adapt, describe, resolve
from ..engine.targets import (
    Atom,
    Channel,
    Class,
    Concept,
    Direction,
    Diversity,
    LogProb,
    Neuron,
    Objective,
    parse_target,
)
from ..engine.transforms import Transform
from ..errors import PreimageError
from ..measures.judge import Judge, judges
from ..measures.metrics import log_odds as class_log_odds
from ..measures.stats import NeuronStats, images_id, load_stats, warn
from ..report.result import Result
from ..report.store import job_config
from ..representations import ModelLike, Representation, model_spec
from ..representations.base import ModelSpec, model_id
from ..representations.geometry import Geometry
from ..representations.hooks import capture, eval_mode, named_layers, swap_modules
from ..representations.points import Point, PreActivation, response_point, unit_view
from .candidates import best_of, candidate_problems, candidate_scores, keep_rows
from .capped import CAP_LEAK, is_capped, leaky_backward, score_limit
from .common import (
    Images,
    as_representation,
    call_options,
    check_count,
    check_number,
    check_size,
    display_scale,
    features,
    image_count,
    image_specs,
    pictures,
    prepare_images,
    reference_features,
    seeds,
)
from .judging import judge_pictures
from .skip_gradient import branch_factor, skip_gradient

#: ``maximize``'s default style: the one that measured better on the judge (benchmarks/README.md, transfer).
MAXIMIZE_STYLE = "natural"


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
    are flat, docs/paper-notes.md §1.3); yields how many were swapped. Restored on exit. Functional ReLUs
    (``F.relu`` in a forward) are not affected. ``leak == 0`` changes nothing."""
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
    """R = round(1.1·ρ/s), made odd by adding one (docs/paper-notes.md §1.3, single unit; MATLAB rounding)."""
    rho, s = max(geometry.receptive_field), max(geometry.stride)
    r = max(int(math.floor(1.1 * rho / s + 0.5)), 1)
    return r + 1 if r % 2 == 0 else r


def unit_image_size(rep: Representation) -> int:
    """The input side for visualizing one unit of ``rep``'s layer (docs/paper-notes.md §1.3).

    Each problem of a batch holds one unit at the centre of its own image, so the paper's single-filter rule
    applies: the response map should be R×R with R = round(1.1·ρ/s) made odd (ρ: receptive field, s: stride,
    both measured), i.e. the unit's field plus a 10% margin, the unit at the exact centre neuron; the image is
    the largest square input whose map is no larger than R (the authors' ``find_image_size``), found here by
    a few forward passes on a blank input. Layers without a spatial map (logits, fc) use the model's native
    input size."""
    g = rep.geometry()
    native = (rep.spec.input_size or (224, 224))[0]
    if g.stride is None or g.receptive_field is None or g.global_field or g.fixed_size or min(g.receptive_field) < 1:
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


def check_options(restarts: int = 1, relu_leak: float = 0.0, cap_leak: float | None = None,
                  candidates: int | None = None) -> tuple[int, float, float | None, int | None]:
    """(restarts, relu_leak, cap_leak, candidates) as Python numbers, or a clear error for a bad restart count,
    ReLU leak, cap leak or candidate count (None: the style's)."""
    return (check_count(restarts, "restarts"), check_number(relu_leak, "relu_leak", 0.0, 0.999999),
            None if cap_leak is None else check_number(cap_leak, "cap_leak", 0.0, 0.999999),
            None if candidates is None else check_count(candidates, "candidates", 1, 64))


# --- binding targets to the network ----------------------------------------------------------------------------


@dataclass
class PointInfo:
    """One pre-ReLU point the targets read: Φ there, its statistics key, its module (and whether its input),
    the features' shape at the run's size and its geometry."""

    rep: Representation
    stats: Point
    module: str | None
    at_input: bool
    shape: tuple[int, ...] = ()
    geometry: Geometry | None = None
    order: int = 0


@dataclass
class Binding:
    """Targets bound to a network: Φ (the deepest point), the data term of N problems, and what the metrics read."""

    rep: Representation
    term: Term
    points: dict[tuple[str | None, str | None], PointInfo]
    atoms: list[list[tuple[float, Atom, tuple[str | None, str | None]]]] = field(default_factory=list)
    weights: list[float | None] = field(default_factory=list)  # per target: 10⁴/(ρ²·M_c) of a one-unit target


#: The "token" of a point that is a layer's output as a dictionary reads it (a Concept's), not its pre-ReLU response.
CONCEPT_POINT = "@output"


def _atom_layer(atom: Atom, spec: ModelSpec) -> tuple[str | None, str | None]:
    """(layer, token) where an atom is read; a Class reads the classifier layer (or the whole network); a Concept
    reads the layer's output (``CONCEPT_POINT``)."""
    if isinstance(atom, Class):
        return atom.layer or spec.classifier_layer, None
    if isinstance(atom, Concept):
        return atom.layer, CONCEPT_POINT
    return atom.layer, getattr(atom, "token", None)


def point_of(spec: ModelSpec, layer: str | None, token: str | None, device: tuple) -> PointInfo:
    """The pre-ReLU point of a layer (on the patch grid of token outputs, or a prefix token's channels)."""
    rep = Representation(spec, layer if layer is not None else "output").to(*device)
    if token == CONCEPT_POINT:  # the output a dictionary was trained on (a token output's patch grid)
        out = unit_view(rep)
        return PointInfo(out, response_point(out)[1], layer, False, geometry=out.geometry())
    rp, key = response_point(unit_view(rep, token))
    if isinstance(rp, PreActivation):
        module, at_input = rp.act_name, True
    else:
        module, at_input = rp.layer, False
    return PointInfo(rp, key, module, at_input, geometry=rp.geometry())


def _order(spec: ModelSpec, points: Sequence[PointInfo], hw: tuple[int, int], device: tuple) -> None:
    """Each point's place in the forward pass (the first call of its module), at the run's size."""
    mods = named_layers(spec.module)
    seen: list[str] = []
    handles = []
    for p in points:
        if p.module is None:
            continue
        m = mods[p.module]

        def hook(*_a: Any, name: str = p.module) -> None:
            if name not in seen:
                seen.append(name)

        handles.append(m.register_forward_pre_hook(hook) if p.at_input else m.register_forward_hook(hook))
    rep = points[0].rep
    try:
        with torch.no_grad(), eval_mode(spec.module):
            spec.module(torch.zeros(1, spec.channels, *hw, device=device[0], dtype=device[1]) * rep.scale)
    except Exception:  # noqa: BLE001 - the order only picks Φ; a network that fails here fails clearly later
        pass
    finally:
        for h in handles:
            h.remove()
    for p in points:
        p.order = seen.index(p.module) if p.module in seen else len(seen) + 1


def _norms(stats: NeuronStats, info: PointInfo) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(M_c of every channel, the positive normalizer per channel, the layer's median positive maximum). A unit
    whose maximum is not positive (a pre-ReLU unit never excited by the reference images) is normalized by the
    median of the layer's positive maxima."""
    st = stats.get(info.stats)
    channels = info.shape[0]
    if st.channels != channels:
        raise PreimageError(f"the neuron statistics of {stats.model} have {st.channels} channels at layer "
                            f"'{info.rep.layer}', the layer has {channels}; compute them again (images, or "
                            "'preimage stats')", param="images")
    m = st.max.double()
    pos = m[m > 0]
    med = float(pos.median()) if pos.numel() else 1.0
    return m, torch.where(m > 0, m, torch.full_like(m, med)), med


def target_points(spec: ModelSpec, targets: Sequence[Objective], hw: tuple[int, int], device: tuple
                  ) -> tuple[dict[tuple[str | None, str | None], PointInfo], list[list[tuple]]]:
    """The pre-ReLU points the targets read, with their features' shape at ``hw``, and each target's weighted atoms
    with their point; every unit and direction checked against its layer (one clear line, before any work)."""
    keys: dict[tuple[str | None, str | None], PointInfo] = {}

    def info_of(key: tuple[str | None, str | None]) -> PointInfo:
        if key not in keys:
            info = point_of(spec, *key, device)
            info.shape = tuple(reference_features(info.rep, torch.zeros(1, spec.channels, *hw, device=device[0],
                                                                        dtype=device[1])).shape[1:])
            if len(info.shape) not in (1, 3):
                raise PreimageError(f"layer '{info.rep.layer or 'output'}' of {spec.name} outputs "
                                    f"{'×'.join(map(str, info.shape)) or 'no tensor'} per image: no channel axis to "
                                    "pick a unit from (need N×C×h×w or N×C)", param="target")
            keys[key] = info
        return keys[key]

    per_target = []
    for t in targets:
        atoms = []
        for w, a in t.terms():
            if isinstance(a, Diversity):
                continue
            key = _atom_layer(a, spec)
            info = info_of(key)
            if isinstance(a, Concept):
                if a.dictionary.d != info.shape[0]:
                    raise PreimageError(f"the dictionary does not fit layer '{a.layer}': its encoder is K×D = "
                                        f"{a.dictionary.k}×{a.dictionary.d}, the layer has {info.shape[0]} channels",
                                        param="target")
            elif isinstance(a, Direction):
                if a.vector.numel() != info.shape[0]:
                    raise PreimageError(f"the direction has {a.vector.numel()} entries, layer '{a.layer}' has "
                                        f"{info.shape[0]} channels", param="target")
            else:
                u = a.unit if isinstance(a, (Channel, Neuron)) else a.index
                if isinstance(a, Class) and a.layer is None and spec.classifier_layer is None \
                        and len(info.shape) != 1:
                    raise PreimageError(f"{a.spec()} reads class scores (N×C), and {spec.name} has no classifier: its "
                                        f"output is a {'×'.join(map(str, info.shape))} map; name a channel instead "
                                        f"(e.g. 'output:{u}')", param="target")
                if isinstance(a, LogProb) and len(info.shape) != 1:
                    raise PreimageError(f"{a.spec()}: a log-probability needs class scores (N×C), and layer "
                                        f"'{info.rep.layer}' of {spec.name} gives a {'×'.join(map(str, info.shape))} "
                                        "map; name the classifier layer or leave the layer out", param="target")
                if u >= info.shape[0]:
                    where = f"layer '{info.rep.layer or 'output'}' of {spec.name}"
                    raise PreimageError(f"unit {u} is out of range for {where}: it has {info.shape[0]} channels "
                                        f"(0–{info.shape[0] - 1})", param="target")
            atoms.append((w, a, key))
        if not atoms:
            raise PreimageError(f"{t.spec()}: a diversity term alone has nothing to maximize; add a unit, class or "
                                "direction", param="target")
        for w, a in t.terms():
            if isinstance(a, Diversity):
                key = (a.layer, None) if a.layer else atoms[0][2]
                info_of(key)
                atoms.append((w, a, key))
        per_target.append(atoms)
    if len(keys) > 1:
        _order(spec, list(keys.values()), hw, device)
    return keys, per_target


def bind(spec: ModelSpec, targets: Sequence[Objective], restarts: int, hw: tuple[int, int], stats: NeuronStats,
         device: tuple, C: float = 1.0, rivals: float = 0.0) -> Binding:
    """The data term of ``len(targets) × restarts`` problems (target-major), each target's restarts coupled by its
    diversity terms, and what the metrics need. rivals: each class logit term also raises the class's
    log-probability with this share of its weight (``Style.rivals``)."""
    keys, per_target = target_points(spec, targets, hw, device)
    phi_key = max(keys, key=lambda k: keys[k].order)
    n = len(targets) * restarts
    weights = {k: torch.zeros(n, *info.shape, dtype=torch.float64) for k, info in keys.items()}
    log_probs: dict[tuple, torch.Tensor] = {}  # LogProb atoms' weights, by point (classifier points only)
    diversity: dict[tuple, torch.Tensor] = {}
    norms = {k: _norms(stats, info) for k, info in keys.items() if k in {a[2] for t in per_target for a in t
                                                                         if not isinstance(a[1], Diversity)}}
    for ti, atoms in enumerate(per_target):
        rows = slice(ti * restarts, (ti + 1) * restarts)
        for w, a, key in atoms:
            info = keys[key]
            if isinstance(a, Diversity):
                diversity.setdefault(key, torch.zeros(n))[rows] += w
                continue
            field_hw = info.geometry.receptive_field if info.geometry.receptive_field and \
                min(info.geometry.receptive_field) > 0 else hw
            area = max(min(field_hw[0], hw[0]) * min(field_hw[1], hw[1]), 1)
            _, norm, med = norms[key]
            spatial = len(info.shape) == 3
            cells = info.shape[1] * info.shape[2] if spatial else 1
            if isinstance(a, Concept):
                weights[key][rows] += w * 1e4 / area * concept_weight(a, info.shape)
                continue
            if isinstance(a, Direction):
                v = (a.vector.double() / a.vector.double().norm()).view(-1, *([1] * (len(info.shape) - 1)))
                # Normalized as a unit with the layer's median maximum; summed over the map, as Lucid's.
                weights[key][rows] += w * 1e4 / area / med * v
                continue
            u = a.unit if isinstance(a, (Channel, Neuron)) else a.index
            wu = w * 1e4 / area / float(norm[u])  # the paper's k is 1: one unit per problem
            if spatial and isinstance(a, Neuron):
                cy, cx = (info.shape[1] - 1) // 2, (info.shape[2] - 1) // 2
                weights[key][rows, u, cy, cx] += wu
            elif spatial:
                weights[key][rows, u] += wu / cells
            else:
                share = 1.0 if isinstance(a, LogProb) else rivals if isinstance(a, Class) else 0.0
                if share:
                    log_probs.setdefault(key, torch.zeros(n, *info.shape, dtype=torch.float64))[rows, u] += share * wu
                if not isinstance(a, LogProb):
                    weights[key][rows, u] += wu
    unit_weights = []
    for t, atoms in zip(targets, per_target, strict=True):
        u, (_, a, key) = _unit(t), atoms[0]
        if u is None:
            unit_weights.append(None)
            continue
        g = keys[key].geometry
        field_hw = g.receptive_field if g.receptive_field and min(g.receptive_field) > 0 else hw
        unit_weights.append(1e4 / max(min(field_hw[0], hw[0]) * min(field_hw[1], hw[1]), 1) / float(norms[key][1][u]))
    groups = torch.arange(len(targets)).repeat_interleave(restarts)
    terms: list[tuple[float, Term]] = []
    for key, info in keys.items():
        tap = None if key == phi_key else Tap(info.module, info.at_input,
                                              view=lambda raw, r=info.rep: r.as_view(raw, torch.empty(
                                                  raw.shape[0], 1, *hw)))
        if bool((weights[key] != 0).any()):
            terms.append((C, InnerProduct(weights[key].to(device[0], device[1]), tap)))
        if key in log_probs:
            terms.append((C, InnerProduct(log_probs[key].to(device[0], device[1]), tap, log_softmax=True)))
        if key in diversity:
            terms.append((C, DiversityTerm(groups, tap, weight=diversity[key].to(device[0], device[1]))))
    return Binding(keys[phi_key].rep, Sum(terms), keys, per_target, unit_weights)


def concept_norm(a: Concept) -> float:
    """A concept's natural maximum M_k (its largest pre-activation where the dictionary was measured); a concept
    never positive there, or a dictionary not measured, gets the median positive maximum (else 1)."""
    m = a.dictionary.concept_max
    if m is None or not bool((m > 0).any()):
        return 1.0
    return float(m[a.k]) if float(m[a.k]) > 0 else float(m[m > 0].median())


def concept_weight(a: Concept, shape: tuple[int, ...]) -> torch.Tensor:
    """The inner-product weight of a concept's pre-activation on one problem's features D×h×w (or D), divided by
    M_k: Wₑ[k] at the centre position, or spread over the map for ``mean`` (the bias is a constant: left out)."""
    v = a.dictionary.encoder.weight[a.k].detach().double().cpu() / concept_norm(a)
    if len(shape) == 1:
        return v
    out = torch.zeros(shape, dtype=torch.float64)
    if a.position == "centre":
        out[:, (shape[1] - 1) // 2, (shape[2] - 1) // 2] = v
    else:
        out += v.view(-1, 1, 1) / (shape[1] * shape[2])
    return out


def read_points(binding: Binding, x: torch.Tensor) -> dict[tuple, torch.Tensor]:
    """Every bound point's features for paper-unit images x (one forward pass)."""
    rep = binding.rep
    points = {str(k): (named_layers(rep.net)[info.module] if info.module else None, info.at_input)
              for k, info in binding.points.items()}
    rows = [x[i:i + 1] for i in range(x.shape[0])] if per_problem(x.device) else [x]  # as ``features``
    out: dict[tuple, list[torch.Tensor]] = {k: [] for k in binding.points}
    with torch.no_grad(), eval_mode(rep.net):
        for r in rows:
            raw = capture(rep.net, r * rep.scale, points)
            for k, info in binding.points.items():
                out[k].append(info.rep.as_view(raw[str(k)], r))
    return {k: torch.cat(v) for k, v in out.items()}


def atom_value(a: Atom, phi: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    """An atom's raw value on features (no normalization): a channel's mean, a neuron, a logit (a log-probability
    for ``LogProb``), the mean of the projection on a direction."""
    f = phi[rows]
    if isinstance(a, Concept):
        return a.value(f.double()).float()
    if isinstance(a, Direction):
        v = (a.vector / a.vector.norm()).to(f).view(1, -1, *([1] * (f.ndim - 2)))
        return (f * v).sum(1).flatten(1).mean(1)
    u = a.unit if isinstance(a, (Channel, Neuron)) else a.index
    c = (f.float().log_softmax(1) if isinstance(a, LogProb) else f)[:, u]
    if c.ndim == 1:
        return c
    if isinstance(a, Neuron):
        return c[:, (c.shape[1] - 1) // 2, (c.shape[2] - 1) // 2]
    return c.flatten(1).mean(1)


# --- activation maximization -----------------------------------------------------------------------------------


def maximize(model: ModelLike, target: str | Objective | Sequence[str | Objective], *, restarts: int = 1,
             style: str | Style = MAXIMIZE_STYLE, param: str | Parameterization | None = None,
             transforms: str | Transform | Sequence[Transform | str] | None = None,
             prior: str | BNPrior | None = None, optimizer: str | None = None,
             size: int | tuple[int, int] | None = None, iters: int | None = None, seed: int = 0,
             images: str | Sequence[str] | None = None, stats: NeuronStats | None = None,
             judge: str | Sequence[str] | None = None, relu_leak: float = 0.0, cap_leak: float | None = None,
             energy: Energy | dict = Energy(), device: str | None = None, amp: bool | str | None = None,
             compile: bool = False, progress: Progress | None = None, attribution: bool = False,
             candidates: int | None = None, skip_grad: float | None = None) -> Result:
    """Images that excite a target most: one problem per target and restart.

    model: a name, any nn.Module, or a representation. target: an objective (``Channel("blocks.4", 5)``,
    ``Neuron(...)``, ``Class(25)``, ``Direction(layer, v)``, weighted sums with ``Diversity()``) or its shorthand
    (``"blocks.4:5"`` is channel 5's mean, ``"neuron:blocks.4:5"`` its centre neuron, ``"classifier:25"`` or
    ``"class:25"`` a class logit, ``"layer2:0-7"`` eight channels, one picture each), or a list of them.
    style: ``natural`` (the default: Fourier parameterization, transforms, a BatchNorm prior, 64 steps) or
    ``paper`` (pixels, jitter, momentum + AdaGrad, 300 steps), or a ``Style``; param, transforms, prior and
    optimizer replace its parts. size: the input side (default: from the first target's receptive field, the
    model's native size for logits). images: reference images for each unit's natural maximum M_c (a folder, a list;
    default: the cached statistics, else the bundled samples), or ``stats`` computed already. judge: classifier
    name(s) whose p(class) on each class picture is reported (``info["transfer"]``). relu_leak: slope given to the
    net's ReLUs while optimizing; cap_leak: backward slope where ReLU6 is flat (the reported numbers use the real
    network; None: the style's, which on a small image is ``styles.SMALL_CAP_LEAK``). seed: each problem's
    randomness is seeded by the problem itself and this number.

    Returns a Result: ``images`` N×C×H×W in 0–255 and, per picture, ``activation`` (the target's raw value: the
    channel's mean, the neuron, the logit, the projection, or a sum's weighted sum), ``reference_max`` (M_c of a
    one-unit target, else NaN), ``ratio`` (activation ÷ reference_max), and for class logits ``probability``
    (softmax) and ``top1``. attribution: also return ``Result.attribution`` (N×1×H×W), the summed |∂ data term /
    ∂ image| over the steps (MaCo's transparency; the pictures are unchanged). candidates: pictures optimized for
    each target and restart, of which the one the network itself scores highest is kept (p(class) for a class, else
    the activation; ``problems[i]["candidate"]`` says which); None: the style's where every target is a class
    (``Style.candidates``), else 1. skip_grad: the factor on the optimizer's gradient through each residual branch,
    the forward exact (``tasks/skip_gradient.py``; 1: the exact gradient); None: the style's where every target is
    a class (``Style.skip_grad``), else 1.
    """
    call = call_options(maximize, locals(), ("model", "target", "stats", "progress"))
    if not attribution:
        call.pop("attribution", None)  # runs without the map keep their keys
    targets = parse_target(target)
    spec = model_spec(model)
    rep0 = as_representation(model, _atom_layer(targets[0].atoms()[0], spec)[0] or "output", device=device)
    judge = loaded_judges(judge, targets, spec, rep0.device_dtype()[0])
    with borrowed(rep0):
        return _maximize(rep0, targets, restarts, style, param, transforms, prior, optimizer, size, iters, seed,
                         images, stats, judge, relu_leak, cap_leak, energy, amp, compile, progress, call, attribution,
                         candidates, skip_grad)


def _maximize(rep0: Representation, targets: list[Objective], restarts: int, style: Any, param: Any,
              transforms: Any, prior: Any, optimizer: str | None, size: Any, iters: int | None, seed: int,
              images: Any, stats: NeuronStats | None, judge: Any, relu_leak: float, cap_leak: float | None,
              energy: Energy | dict, amp: Any, compile: bool, progress: Progress | None,
              call: dict[str, Any], attribution: bool = False, candidates: int | None = None,
              skip_grad: float | None = None) -> Result:
    spec = rep0.spec
    device = rep0.device_dtype()
    restarts, relu_leak, cap_leak, candidates = check_options(restarts, relu_leak, cap_leak, candidates)
    seed = check_count(seed, "seed", 0, 2**63 - 1)
    energy = Energy(**energy) if isinstance(energy, dict) else energy
    if iters is not None:
        iters = check_count(iters, "iters", 1, 1_000_000)
    if len({t.spec() for t in targets}) != len(targets):
        raise PreimageError("a target is named twice: each would give the same picture", param="target")
    first = point_of(spec, *_atom_layer(targets[0].atoms()[0], spec), device)
    sty, opt_kw = resolve(first.rep, style, param=param, transforms=transforms, prior=prior, optimizer=optimizer,
                          cap_leak=cap_leak)
    hw = check_size(size) or ((unit_image_size(first.rep),) * 2)
    fit_note = None
    if transforms is None:  # the style's own transforms, chosen at 224 px: fitted to a smaller image (issue 28)
        native = min(spec.input_size) if spec.input_size else None
        at_point = any(isinstance(a, (Neuron, Concept)) for t in targets for a in t.atoms())
        has_class = any(isinstance(a, Class) for t in targets for a in t.atoms())
        sty, fit_note = adapt(sty, hw, native, at_point, more_iters=iters is None and has_class,
                              caps=cap_leak is None and is_capped(rep0.net), has_class=has_class)
        opt_kw["transforms"] = None if sty.transforms is None else list(sty.transforms)
        opt_kw["bound"] = sty.bound
    sched = scale_schedule(SINGLE_STAGE, iters if iters is not None else sty.iters)
    classes_only = all(_is_class(t, spec) for t in targets)
    k = candidates if candidates is not None else sty.candidates if classes_only else 1
    # the style's factor was chosen on class pictures (benchmarks/results/transfer.md, round 11)
    skip_grad = branch_factor(rep0.net, skip_grad, sty.skip_grad if classes_only else 1.0)
    per_target = restarts * k  # each target's problems while optimizing: its restarts' candidates, adjacent
    n = len(targets) * per_target
    check_memory(first.rep, n, hw, extra_buffers=extra_buffers(sched, opt_kw["optimizer"]))
    target_points(spec, targets, hw, device)  # every unit checked before the statistics are read
    if stats is None:
        stats = load_stats(spec, images=images)
    binding = bind(spec, targets, per_target, hw, stats, device, rivals=sty.rivals)
    missing = [info for info in binding.points.values() if info.stats not in stats.points]
    if missing and images is None and stats is not None:
        warn(f"the cached neuron statistics of {spec.name} do not cover layer '{missing[0].rep.layer}'; "
             "recomputing them")
        stats = load_stats(spec, recompute=True)
        binding = bind(spec, targets, per_target, hw, stats, device, rivals=sty.rivals)
    if sty.C != 1.0:
        binding.term = sty.C * binding.term
    rep = binding.rep
    if sty.prior is not None and rep is not first.rep:  # the prior watches Φ's own forward pass
        opt_kw["prior"] = sty.prior.build(rep)
    options = {**describe(sty, sched), "schedule": schedule_record(sched), "size": list(hw),
               "relu_leak": relu_leak, "cap_leak": sty.cap_leak, "energy": vars(energy),
               "stats_id": images_id(stats.images), **({"skip_grad": skip_grad} if skip_grad != 1 else {})}
    problems = [{"target": t.spec(), "label": t.label, "restart": r, "restarts": restarts,
                 **({"unit": _unit(t)} if _unit(t) is not None else {})}
                for t in targets for r in range(restarts)]
    prob_seeds = seeds("maximize", rep, candidate_problems(
        [{"target": t.spec(), "restart": r} for t in targets for r in range(restarts)], k), options, seed)

    def run(term: Term, k: int, init: torch.Tensor | None, problem_seeds: list[int]) -> Trace:
        with leaky_relus(rep.net, relu_leak), leaky_backward(rep.net, sty.cap_leak), \
                skip_gradient(rep.net, skip_grad):
            return optimize(rep, term, k, hw, sched, init=init, seed=problem_seeds, energy=energy,
                            progress=progress, amp=amp, compile=compile, attribution=bool(attribution), **opt_kw)

    trace = run(binding.term, n, None, prob_seeds)
    out = pictures(rep, trace.x)
    metrics = _metrics(binding, targets, per_target, out, stats)
    finished = None
    if iters is None and (sty.rivals or classes_only):  # meet the goal: a small image's (fit_to_small) or a class's
        trace, metrics, finished = continue_short(binding, targets, per_target, trace, metrics, stats, sty.C, run,
                                                  prob_seeds, k, units=bool(sty.rivals))
        if finished:
            out = pictures(rep, trace.x)
    if k > 1:
        score = candidate_scores(metrics)
        kept = best_of(score, k)
        trace, out, metrics = keep_rows(trace, kept), out[kept], {name: v[kept] for name, v in metrics.items()}
        for i, (p, row) in enumerate(zip(problems, kept.tolist(), strict=True)):
            p.update(candidate=row % k, candidates=k, candidate_scores=score[i * k:(i + 1) * k].tolist())
    mid = model_id(spec)
    jobs = [{"config": job_config("maximize", mid, target_layer(t, spec), [t.spec()], (), call),
             "rows": list(range(i * restarts, (i + 1) * restarts)), "names": [f"r{r}" for r in range(restarts)],
             "subject": t.spec()} for i, t in enumerate(targets)]
    head = binding.points[binding.atoms[0][0][2]]
    info = {"task": "maximize", **options, "restarts": restarts, **({"candidates": k} if k > 1 else {}),
            "seed": seed, "stages": trace.stages, "display": display_scale(sty.name), "model_id": mid,
            "point": f"{head.stats[0]} of {head.stats[1] or 'the network'}",
            "points": [f"{v.stats[0]} of {v.stats[1] or 'the network'}" for v in binding.points.values()],
            "receptive_field": list(head.geometry.receptive_field) if head.geometry.receptive_field else None,
            "stride": list(head.geometry.stride) if head.geometry.stride else None,
            "centre": [(head.shape[1] - 1) // 2, (head.shape[2] - 1) // 2] if len(head.shape) == 3 else None,
            "logits": len(head.shape) == 1 and head.rep.layer in (None, spec.classifier_layer),
            "weight": binding.weights, "paper_code_reference_max": float(stats.get(head.stats).max[0]),
            "stats": {"source": stats.source, "images": len(stats.images),
                      "size": list(stats.size) if stats.size else None}}
    if fit_note:
        info["adapted"] = fit_note
    if finished:
        info["finished"] = finished
    logits_only = not sty.rivals and not any(isinstance(a, LogProb) for t in targets for a in t.atoms())
    missed = missed_classes([_unit(t) for t in targets for _ in range(restarts)], metrics, spec.name,
                            advise=logits_only)
    if missed:
        info["missed"] = missed
    result = Result(out, problems, metrics, spec.name, rep.layer, trace.iterations, trace.seconds, trace.energy, info,
                    jobs, attribution=None if trace.attribution is None else trace.attribution.float().cpu())
    if judge:
        classes = [_unit(t) for t in targets]
        result.info["transfer"] = judge_pictures(judge, result, targets=[c for c in classes for _ in range(restarts)])
    return result


def target_layer(t: Objective, spec: ModelSpec) -> str | None:
    """The layer a target is filed under (its first term's; a class's is the classifier layer)."""
    return _atom_layer(t.atoms()[0], spec)[0]


def _unit(t: Objective) -> int | None:
    """The unit (channel or class) of a one-unit target, else None."""
    terms = t.terms()
    if len(terms) != 1 or terms[0][0] != 1:
        return None
    a = terms[0][1]
    return a.unit if isinstance(a, (Channel, Neuron)) else a.index if isinstance(a, Class) else None


def missed_classes(classes: Sequence[int | None], metrics: dict[str, torch.Tensor], model: str,
                   advise: bool = True) -> str | None:
    """A note naming the class targets whose pictures another class wins on the network itself, or None.
    classes: each picture's class (None: not a class target); metrics: ``top1`` and ``probability`` (N);
    advise: end with the log-probability as the remedy (for logit targets), else with more iterations.
    Why: a logit can reach many times its natural maximum while a rival's rises more (the digits network's
    class 3 at 224 px, even from pixels without transforms after 400 steps; its log-probability makes all ten
    classes top-1 there: benchmarks/results/objective_sizes.md, round 6)."""
    top1, prob = metrics.get("top1"), metrics.get("probability")
    if top1 is None or prob is None:
        return None
    lost = {c: (int(t), float(p)) for c, t, p in zip(classes, top1.tolist(), prob.tolist(), strict=True)
            if c is not None and int(t) >= 0 and int(t) != c}
    if not lost:
        return None
    which = ", ".join(f"class {c} (top-1 {t}, p {p:.2f})" for c, (t, p) in lost.items())
    note = f"not the top-1 of their own pictures on {model}: {which}"
    return note + (f"; a logit can rise while a rival rises more: 'logprob:{next(iter(lost))}' lowers the rivals"
                   if advise else "; more iterations often help")


def continue_short(binding: Binding, targets: list[Objective], restarts: int, trace: Trace,
                   metrics: dict[str, torch.Tensor], stats: NeuronStats, C: float,
                   run: Callable[[Term, int, torch.Tensor | None, list[int]], Trace],
                   problem_seeds: list[int], candidates: int = 1,
                   units: bool = True) -> tuple[Trace, dict[str, torch.Tensor], str | None]:
    """Continue, for as many iterations again and from where they stopped, the pictures short of their goal: a class
    that another class wins on the network itself (with the class's log-probability alone), and a neuron under its
    natural maximum (with its own objective); keep whichever picture scores higher (p(class), the activation).
    Returns the trace with those pictures (N×C×H×W, paper units), their metrics, and a note (None: every goal
    was met; the trace and metrics are then the ones given).

    binding, targets, restarts: the run's (``bind``; restarts: each target's rows, its restarts' ``candidates``
    adjacent); metrics: its ``_metrics``; run: ``run(term, k, init, seeds)``
    optimizes k problems as the run did; units: also continue neurons (``maximize`` does where ``fit_to_small``
    applies; classes it continues at any size). Why: the logit plus the log-probability (``Style.rivals``), or the
    logit alone, can stay stuck where a rival rises faster than the class (a linear head whose rival shares the
    class's features: the gradient 2∇z_c − ∇z_rival keeps raising both), while the log-probability alone moves
    along ∇z_c − ∇z_rival (efficientnet_lite0's class 999 at 224 px: objective_sizes.md, round 11); and a neuron
    that needs more steps than the style's (benchmarks/results/objective_sizes.md, round 9)."""
    top1, prob = metrics.get("top1"), metrics.get("probability")
    act, ref = metrics["activation"], metrics["reference_max"]
    rows, specs = [], []
    for i in range(len(targets) * restarts):
        t = targets[i // restarts]
        a = t.atoms()[0] if _unit(t) is not None else None
        if type(a) is Class and top1 is not None and int(top1[i]) not in (-1, a.index):
            rows.append(i)
            specs.append(LogProb(a.index, a.layer).spec())
        elif units and type(a) is Neuron and float(ref[i]) > 0 and float(act[i]) < float(ref[i]):
            rows.append(i)
            specs.append(t.spec())
    if not rows:
        return trace, metrics, None
    rep = binding.rep
    sub = bind(rep.spec, parse_target(specs), 1, tuple(trace.x.shape[-2:]), stats, rep.device_dtype())
    more = run(sub.term if C == 1.0 else C * sub.term, len(rows), trace.x[rows], [problem_seeds[i] for i in rows])
    x = trace.x.clone()
    x[rows] = more.x
    after = _metrics(binding, targets, restarts, pictures(rep, x), stats)
    score = {i: ("probability" if specs[k].startswith("logprob") else "activation") for k, i in enumerate(rows)}
    keep = [i for i in rows if float(after[score[i]][i]) >= float(metrics[score[i]][i])]
    back = [i for i in rows if i not in keep]
    x[back] = trace.x[back]
    kept = {k: v.clone() for k, v in after.items()}
    for k, v in kept.items():
        v[back] = metrics[k][back]
    attribution = trace.attribution
    if attribution is not None and keep:
        attribution = attribution.clone()
        attribution[keep] += more.attribution[[rows.index(i) for i in keep]]

    def said(i: int) -> str:
        r, c = divmod(i % restarts, candidates)
        name = (targets[i // restarts].spec() + (f" r{r}" if restarts > candidates else "")
                + (f" candidate {c}" if candidates > 1 else ""))
        if score[i] == "probability":
            first = f"{name} (top-1 {int(top1[i])}, p {float(prob[i]):.2f}) with its log-probability alone → "
            end = f"p {float(after['probability'][i]):.2f}" + (
                "" if int(after["top1"][i]) == targets[i // restarts].atoms()[0].index
                else f", still not top-1 (top-1 {int(after['top1'][i])})")
        else:
            first = f"{name} at {float(act[i] / ref[i]):.2f}× its natural maximum → "
            end = f"{float(after['activation'][i] / ref[i]):.2f}×"
        return first + (end if i in keep else end + ", lower: the first picture is kept")

    why = " (a class's log-probability lowers its rivals)" if any(v == "probability" for v in score.values()) else ""
    note = (f"short of their goal after {trace.iterations} iterations, continued for {more.iterations} more from "
            f"where they stopped{why}: " + "; ".join(map(said, rows)))
    return (Trace(x, trace.energy, trace.iterations, trace.seconds + more.seconds, trace.stages, attribution), kept,
            note)


def loaded_judges(judge: str | Judge | Sequence[str | Judge] | None, targets: Sequence[Objective], spec: ModelSpec,
                  device: torch.device) -> list[Judge] | None:
    """The judges loaded, and the targets checked, before any work: a judge reads one class's logit per picture."""
    if judge is None or isinstance(judge, Sequence) and len(judge) == 0:
        return None
    if not all(_is_class(t, spec) for t in targets):
        raise PreimageError("a judge needs class targets (e.g. 'class:25' or 'classifier:25')", param="judge")
    return judges(judge, device)


def _is_class(t: Objective, spec: ModelSpec) -> bool:
    """Whether the target is one class's logit or log-probability (``LogProb`` is a ``Class``): what a judge reads
    and a style's ``candidates`` applies to."""
    return _unit(t) is not None and (isinstance(t.atoms()[0], Class) or _is_logit_layer(t, spec))


def _is_logit_layer(t: Objective, spec: ModelSpec) -> bool:
    a = t.atoms()[0]
    return getattr(a, "layer", None) is not None and a.layer == spec.classifier_layer


def _metrics(binding: Binding, targets: list[Objective], restarts: int, out: torch.Tensor,
             stats: NeuronStats) -> dict[str, torch.Tensor]:
    rep = binding.rep
    feats = read_points(binding, rep.to_paper_units(out))
    n = out.shape[0]
    activation = torch.zeros(n, dtype=torch.float64)
    reference = torch.full((n,), float("nan"), dtype=torch.float64)
    prob = torch.full((n,), float("nan"))
    log_odds = torch.full((n,), float("nan"), dtype=torch.float64)
    top1 = torch.full((n,), -1, dtype=torch.long)
    for ti, atoms in enumerate(binding.atoms):
        rows = slice(ti * restarts, (ti + 1) * restarts)
        for w, a, key in atoms:
            if not isinstance(a, Diversity):
                activation[rows] += w * atom_value(a, feats[key], rows).double().cpu()
        u = _unit(targets[ti])
        terms = targets[ti].terms()
        if len(terms) == 1 and terms[0][0] == 1 and isinstance(terms[0][1], Concept):
            m = terms[0][1].dictionary.concept_max  # the concept's natural maximum
            reference[rows] = float(m[terms[0][1].k]) if m is not None else float("nan")
        if u is not None:
            key = atoms[0][2]
            if not isinstance(atoms[0][1], LogProb):  # the statistics hold logits' maxima, not log-probabilities'
                reference[rows] = float(stats.get(binding.points[key].stats).max[u])
            phi = feats[key]
            if phi.ndim == 2 and (isinstance(atoms[0][1], Class) or binding.points[key].rep.layer in
                                  (None, rep.spec.classifier_layer)):
                p = phi[rows].float().softmax(1)
                prob[rows] = p[:, u].cpu()
                top1[rows] = p.argmax(1).cpu()
                log_odds[rows] = class_log_odds(phi[rows].double(), u).cpu()
    # A multiple of a maximum that is not positive (a unit the reference images never excite) means nothing.
    ratio = torch.where(reference > 0, activation / reference, torch.full_like(activation, float("nan")))
    metrics = {"activation": activation.float(), "reference_max": reference.float(), "ratio": ratio.float()}
    if bool((top1 >= 0).any()):
        metrics["probability"] = prob
        metrics["log_odds"] = log_odds.float()
        metrics["top1"] = top1
    return metrics


# --- caricature ------------------------------------------------------------------------------------------------


def caricature(model: ModelLike, images: Images, *, layer: str | None = None, size: int | tuple[int, int] | None = None,
               iters: int | None = None, seed: int = 0, style: str | Style = "paper",
               param: str | Parameterization | None = None,
               transforms: str | Transform | Sequence[Transform | str] | None = None,
               prior: str | BNPrior | None = None, optimizer: str | None = None, relu_leak: float = 0.0,
               cap_leak: float | None = None, limit: bool = False, energy: Energy | dict = Energy(),
               device: str | None = None, amp: bool | str | None = None, compile: bool = False,
               progress: Progress | None = None) -> Result:
    """Exaggerate what a layer sees in images: minimize −⟨Φ(x), Φ0⁺⟩/‖Φ0⁺‖², Φ0⁺ = max(Φ(x0), 0), starting
    from x0, 300 steps with jitter (docs/paper-notes.md §1.4). Φ0 is computed on the mean-subtracted image the
    optimization starts from (the authors' script used the raw image: a quirk, fixed here).

    images: a path, ``sample:NAME``, a list, or N×C×H×W in 0–255. layer: as for ``invert``. cap_leak: backward
    slope where ReLU6 is flat (``capped``; None: the style's, 0 for the named styles: the exact gradient; the
    forward and the scores stay exact). limit: also measure how far the score can go (``capped.score_limit``: the
    same energy from noise, with and without the leak; about three times the work). Returns a Result with
    ``images`` in 0–255 and metrics ``score_start`` and ``score_end``: ⟨Φ, Φ0⁺⟩/‖Φ0⁺‖² on the image and on the
    picture (``score_start`` is 1 by construction), and with ``limit`` ``score_limit`` (the best score of the noise
    runs and of the caricature itself) and ``share_of_limit`` = score_end / score_limit.
    """
    call = call_options(caricature, locals(), ("model", "images", "layer", "progress"))
    rep, _ = response_point(as_representation(model, layer, device=device))
    with borrowed(rep):
        return _caricature(rep, images, size, iters, seed, style, param, transforms, prior, optimizer, relu_leak,
                           cap_leak, limit, energy, amp, compile, progress, call)


def _caricature(rep: Representation, images: Images, size: Any, iters: int | None, seed: int, style: Any, param: Any,
                transforms: Any, prior: Any, optimizer: str | None, relu_leak: float, cap_leak: float | None,
                limit: bool,
                energy: Energy | dict, amp: Any, compile: bool, progress: Progress | None,
                call: dict[str, Any]) -> Result:
    _, relu_leak, cap_leak, _ = check_options(relu_leak=relu_leak, cap_leak=cap_leak)
    seed = check_count(seed, "seed", 0, 2**63 - 1)
    energy = Energy(**energy) if isinstance(energy, dict) else energy
    if iters is not None:
        iters = check_count(iters, "iters", 1, 1_000_000)
    hw = check_size(size)
    sty, opt_kw = resolve(rep, style, param=param, transforms=transforms, prior=prior, optimizer=optimizer,
                          cap_leak=cap_leak)
    sched = scale_schedule(SINGLE_STAGE, iters if iters is not None else sty.iters)
    check_memory(rep, image_count(images), hw or rep.spec.input_size,
                 extra_buffers=extra_buffers(sched, opt_kw["optimizer"]))
    specs = image_specs(images)
    img, names, prints = prepare_images(rep, images, hw)
    x0 = rep.to_paper_units(img)
    phi0 = reference_features(rep, x0)
    if not bool((phi0.flatten(1) > 0).any(1).all()):
        raise PreimageError(f"layer '{rep.layer or 'output'}' of {rep.name} has no positive response to the image: "
                            "there is nothing to exaggerate", param="layer")
    objective = caricature_objective(phi0)
    options = {**describe(sty, sched), "schedule": schedule_record(sched), "size": list(img.shape[-2:]),
               "relu_leak": relu_leak, "cap_leak": sty.cap_leak, "energy": vars(energy), "limit": limit}
    prob_seeds = seeds("caricature", rep, [{"image": p} for p in prints], options, seed)
    with leaky_relus(rep.net, relu_leak), leaky_backward(rep.net, sty.cap_leak):
        trace = optimize(rep, objective, x0.shape[0], tuple(x0.shape[-2:]), sched, init=x0, seed=prob_seeds,
                         energy=energy, progress=progress, amp=amp, compile=compile, **opt_kw)
    out = pictures(rep, trace.x)
    with torch.no_grad():
        end = objective.score(features(rep, rep.to_paper_units(out)))
    start = objective.score(phi0)
    metrics = {"score_start": start, "score_end": end}
    if limit:
        best, _ = score_limit(rep, objective, x0.shape[0], tuple(x0.shape[-2:]), sched,
                              leaks=sorted({0.0, sty.cap_leak or CAP_LEAK}), seed=prob_seeds, energy=energy, **opt_kw)
        metrics["score_limit"] = torch.maximum(best.to(end), end)
        metrics["share_of_limit"] = end / metrics["score_limit"]
    problems = [{"input": specs[i] if specs else names[i], "input_name": names[i]} for i in range(len(names))]
    mid = model_id(rep.spec)
    jobs = [{"config": job_config("caricature", mid, rep.layer, (), [specs[i] if specs else prints[i]], call),
             "rows": [i], "names": ["caricature"], "subject": names[i]} for i in range(len(names))]
    info = {"task": "caricature", **options, "seed": seed, "stages": trace.stages,
            "display": display_scale(sty.name), "model_id": mid,
            "point": f"{response_point(rep)[1][0]} of {response_point(rep)[1][1] or 'the network'}",
            "reference": img}
    return Result(out, problems, metrics, rep.name, rep.layer, trace.iterations, trace.seconds, trace.energy, info,
                  jobs)
