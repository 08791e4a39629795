"""Styles: named bundles of a parameterization, transforms, a feature prior and an optimizer.

* ``paper``: exactly the paper's method (pixels, jitter canvas, momentum + AdaGrad, no feature prior);
* ``natural``: the combination chosen on a judge network that never saw the optimization, on the 20 tuning
  classes (benchmarks/transfer.py; scale 0.8–1.2 and 8 crops of 40–100 % of the side per step, and half the
  gradient through residual branches for a class picture: benchmarks/results/transfer.md, rounds 3–11, with the
  20 reporting classes never chosen on);
* ``fast``: inversion in 120 evaluations (the paper takes 350): the Fourier parameterization without jitter,
  10 short steps of Adam (a quarter of its rate), then 110 of L-BFGS (one evaluation each). Chosen on the bundled
  samples and the first held-out photographs; on 12 photographs no choice saw, with efficientnet_lite0, its median
  error is at or below the paper's 350 steps at all of blocks.1–6, and on the bundled samples above it at
  blocks.1, 4 and 6 (benchmarks/results/time_to_quality.md, round 2).

A style is an object (``Style``) users may build themselves; ``param``, ``transforms``, ``prior`` and
``optimizer`` override its parts one by one, as objects or as their shorthand strings.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import PreimageError
from ..representations.base import Representation
from .optimize import OPTIMIZERS
from .param import OWN_OPTIMIZER, Fourier, Parameterization, Pixel, parse_param
from .priors import BNPrior, BNStats, parse_prior
from .schedules import Stage, schedule_record, stages_from_record
from .transforms import Crops, Jitter, Rotate, Scale, Transform, parse_transforms, transforms_spec


@dataclass(frozen=True)
class Style:
    """A named bundle. transforms: a list of transforms (None: the paper's jitter from the layer's stride); prior:
    a feature prior (None: none); optimizer None: the parameterization's own; iters: the default iterations of a
    single-stage task (None: the paper's 300); C: the weight of activation maximization's data term (the paper's is
    1: its normalized unit term is ~0.2·logit/M for a class, small against the priors once Adam, not the paper's
    step size, sets the balance); schedule: the stages of inversion (None: the model's, the paper's 300+50);
    rivals: the weight of a class's log-probability added to its logit in a class objective (0: the logit alone;
    the log-probability lowers the other classes, ``fit_to_small``); bound: the radius B+ of the ball each pixel's
    colour is projected onto, in paper units (None: the energy's, the paper's 160; ``math.inf``: none, for a
    parameterization that keeps its pixels in 0–255 itself). It replaces the energy's B+ only where that is the
    paper's own. cap_leak: the backward slope given to capped activations (ReLU6) where they are flat, in the
    optimizer's gradient only (0: the exact gradient; ``tasks/capped.py``); an explicit ``cap_leak`` of a task
    wins. candidates: pictures optimized for each class picture, of which the one the network itself gives the
    highest p(class) is kept (``tasks/candidates.py``; 1: the one optimized); an explicit ``candidates`` of a task
    wins and applies to any target. skip_grad: the factor on the optimizer's gradient through each residual branch
    of a class picture's network, forward exact (the skip gradient, ``tasks/skip_gradient.py``; 1: the exact
    gradient)."""

    name: str
    param: Parameterization = Pixel()
    transforms: tuple[Transform, ...] | None = None
    prior: BNPrior | None = None
    optimizer: str | None = None
    iters: int | None = None
    C: float = 1.0
    schedule: tuple[Stage, ...] | None = None
    rivals: float = 0.0
    bound: float | None = None
    cap_leak: float = 0.0
    candidates: int = 1
    skip_grad: float = 1.0

    def __post_init__(self) -> None:
        # Strings as shorthand, as the tasks take them: Style("mine", param="fourier", transforms="jitter:3").
        if not isinstance(self.name, str) or not self.name.strip():
            raise PreimageError(f"a style's name is a non-empty string, got {self.name!r}", param="style")
        object.__setattr__(self, "param", parse_param(self.param))
        if self.transforms is not None:  # objects too: parse_transforms refuses what users may not set
            t = self.transforms
            object.__setattr__(self, "transforms", tuple(parse_transforms(list(t) if isinstance(t, tuple) else t)
                                                         or ()))
        if self.prior is not None and not isinstance(self.prior, BNPrior):
            object.__setattr__(self, "prior", parse_prior(self.prior))
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise PreimageError(f"unknown optimizer {self.optimizer!r} (choose {', '.join(OPTIMIZERS)})",
                                param="style")
        if self.iters is not None:
            if isinstance(self.iters, bool) or not isinstance(self.iters, numbers.Integral) or self.iters < 1:
                raise PreimageError(f"a style's iters is a whole number ≥ 1 (None: the paper's), got {self.iters!r}",
                                    param="style")
            object.__setattr__(self, "iters", int(self.iters))
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or not 1 <= self.candidates <= 64:
            raise PreimageError(f"a style's candidates is a whole number from 1 to 64, got {self.candidates!r}",
                                param="style")
        if isinstance(self.cap_leak, bool) or not isinstance(self.cap_leak, (int, float)) or \
                not 0.0 <= self.cap_leak < 1.0:
            raise PreimageError(f"a style's cap_leak is a number in [0, 1), got {self.cap_leak!r}", param="style")
        if isinstance(self.skip_grad, bool) or not isinstance(self.skip_grad, (int, float)) or \
                not 0.0 <= self.skip_grad <= 1.0:
            raise PreimageError(f"a style's skip_grad is a number in [0, 1], got {self.skip_grad!r}", param="style")
        checks = (("C", None), ("rivals", 0.0)) + ((("bound", None),) if self.bound is not None else ())
        for name, low in checks:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or \
                    (not math.isfinite(v) and name != "bound") or (v <= 0 if low is None else v < low):
                need = ("a number above 0 (math.inf: none)" if name == "bound" else
                        "a finite number above 0" if low is None else "a finite number ≥ 0")
                raise PreimageError(f"a style's {name} is {need}, got {v!r}", param="style")


STYLES = {
    "paper": Style("paper"),
    "natural": Style("natural", param=Fourier(),
                     transforms=(Jitter(17), Scale(0.8, 1.2), Rotate(10), Jitter(9), Crops(8, 0.4, 1.0)),
                     prior=BNPrior(1e-4, required=False), iters=64, C=100.0, skip_grad=0.5),
    "fast": Style("fast", param=Fourier(), transforms=(), iters=120,
                  schedule=(Stage(10, 0.25, False, "adam"), Stage(110, 1.0, False, "lbfgs"))),
}


#: The side at which the styles' transforms were chosen (Lucid's, for ImageNet networks at 224 px).
TRANSFORM_SIDE = 224


def fit_transforms(style: Style, hw: tuple[int, int], native: int | None = None) -> tuple[Style, str | None]:
    """The style with its jitters scaled to a scale s = min(side, native)/224 below 1 (⌈d·s⌉, at least 2), and a
    note saying so (None when nothing changed). native: the network's own input side (None: the image's).
    Why: a jitter of 17 px chosen at 224 px moves a 32 px image by half its side, and a network trained at 32 px
    sees features of a few pixels at any input side; the objective is no longer met (benchmarks/results/
    objective_sizes.md: the digits network's units 2/10 at 32 px with jitters 17 and 9, 10/10 with 3 and 2).
    Scale, rotation and crops are relative to the image and stay."""
    side = min(min(hw), native or min(hw))
    if not style.transforms or side >= TRANSFORM_SIDE:
        return style, None
    fitted = tuple(Jitter(max(math.ceil(t.d * side / TRANSFORM_SIDE), 2)) if isinstance(t, Jitter) and t.d > 2
                   else t for t in style.transforms)
    if fitted == style.transforms or all(a.spec() == b.spec() for a, b in zip(fitted, style.transforms, strict=True)):
        return style, None
    note = (f"the {style.name} style's jitters ({transforms_spec(style.transforms)}) were chosen at "
            f"{TRANSFORM_SIDE} px; at {min(hw)} px" + (f" on a network of {native} px" if native and native < min(hw)
                                                      else "") + f" they are scaled to {transforms_spec(fitted)}")
    return replace(style, transforms=fitted), note


#: Below this fraction of the side the transforms were chosen at (s = min(side, network's side)/224), a style's
#: transforms are left out and class objectives lower their rivals (``fit_to_small``): under 67 px on a 224 px
#: network. It was ¼ until round 8 of objective_sizes.md (64 px, s = 0.29: 18/20 tuning classes with ¼, 20/20
#: with 0.3).
SMALL_FRACTION = 0.3
#: The weight of a class's log-probability added to its logit where the transforms are left out.
SMALL_RIVALS = 1.0
#: The backward slope of flat ReLU6 units there (``Style.cap_leak``; 0.02, 0.05 and 0.1 all met 20/20 tuning
#: classes at 32 px, with mean p 0.868, 0.923 and 0.831).
SMALL_CAP_LEAK = 0.05


def fit_to_small(style: Style, hw: tuple[int, int], native: int | None,
                 has_class: bool = True) -> tuple[Style, str | None]:
    """The style without transforms, with class objectives that also raise the class's log-probability
    (``rivals``), and a note saying so, when s = min(image side, network side ``native``)/224 is below
    ``SMALL_FRACTION`` (native None: the image's side; ``has_class``: the objective has a class, which the note
    names only then). Why: the transforms were chosen at 224 px on ImageNet
    networks; on an image a seventh of the network's side, or for a network trained at 32 px, every resampled view
    (scale, rotation, crop) changes the few pixels the network reads; and without transforms a logit alone is
    often raised with a rival raised more. Chosen on the digits network at 32–224 px (classes met 28/40 with the
    fitted transforms and the logit, 31/40 without transforms, 39/40 without transforms and with the
    log-probability; units 38/40 and 40/40) and on efficientnet_lite0's 20 tuning classes at 32 px (9/20 without
    transforms, 12/20 with the log-probability); reported on another small network and lite0's reporting classes
    (benchmarks/results/objective_sizes.md, round 6). At 224 px the log-probability makes pictures that transfer
    worse (benchmarks/results/transfer.md, round 6), so it is added only where the transforms are left out. There
    too the pixels lose the paper's ball of radius B+ = 160 (``bound``): on a grey network with a dark mean it
    capped white at mean + 160, and units whose natural maximum needs white stopped at 0.75-0.8 of it; at 224 px
    the bound's lift cost transfer (18/20 against 20/20 on the tuning classes), so it is lifted only here
    (objective_sizes.md, round 7). A network with ReLU6 also gets ``fit_caps``; ``maximize`` continues a class
    picture that another class still wins with the log-probability alone, and a neuron short of its natural
    maximum for as many iterations again (``activation.continue_short``)."""
    if not _is_small(style, hw, native):
        return style, None
    where = f"at {min(hw)} px" + (f" on a network of {native} px" if native and native < min(hw) else "")
    rivals = ", adds a class's log-probability to its logit (it lowers the other classes)" if has_class else ""
    note = (f"{where}, under {SMALL_FRACTION:g} of the {TRANSFORM_SIDE} px its transforms were chosen at, the "
            f"{style.name} style leaves its transforms ({transforms_spec(style.transforms)}) out{rivals} and lets "
            "pixels take their whole 0-255 range")
    # skip_grad was chosen for transfer at 224 px; here the goal is the network's own objective
    return replace(style, transforms=(), rivals=SMALL_RIVALS, bound=math.inf, skip_grad=1.0), note


def _is_small(style: Style, hw: tuple[int, int], native: int | None) -> bool:
    """Whether ``fit_to_small`` leaves the style's transforms out: it has some and s < ``SMALL_FRACTION``."""
    side = min(min(hw), native or min(hw))
    return bool(style.transforms) and side < SMALL_FRACTION * TRANSFORM_SIDE


def fit_caps(style: Style, hw: tuple[int, int], native: int | None) -> tuple[Style, str | None]:
    """The style with a backward slope ``SMALL_CAP_LEAK`` where capped activations (ReLU6) are flat, and a note,
    where ``fit_to_small`` leaves its transforms out (None: unchanged). Why: at 32 px efficientnet_lite0's head
    reads a 1×1 map; where most of its units sat at 0 the exact gradient reached the logit through few of them and
    the run stalled (20 tuning classes at 32 px: 17/20 top-1 with the exact gradient, 20/20 with the slope; at
    64 px, with ``SMALL_FRACTION`` raised from ¼ to 0.3, 18/20 → 20/20; reported on 20 other classes: 16/20 → 20/20
    and 17/20 → 20/20; benchmarks/results/objective_sizes.md, round 8). The forward pass, and so every reported
    number, stays the real network's."""
    if not _is_small(style, hw, native) or style.cap_leak:
        return style, None
    return replace(style, cap_leak=SMALL_CAP_LEAK), (f"capped activations (ReLU6) get a backward slope of "
                                                      f"{SMALL_CAP_LEAK:g} where they are flat")


#: The widest scale range kept for an objective read at one point (a zoom of 0.8–1.2 changes the size of what a
#: neuron sees by ±20 %: the digits network's conv3 neurons 9/10, 10/10, 8/10, 8/10 at 32, 64, 128, 224 px with
#: it, 10/10, 10/10, 10/10, 8/10 with 0.9–1.1; benchmarks/results/objective_sizes.md, round 5).
POINT_SCALE = (0.9, 1.1)


def _narrow(t: Scale) -> Scale:
    """The scale range clipped to ``POINT_SCALE`` (a range outside it becomes its nearest end)."""
    lo = min(max(t.lo, POINT_SCALE[0]), POINT_SCALE[1])
    return Scale(lo, max(min(t.hi, POINT_SCALE[1]), lo))


def fit_to_point(style: Style) -> tuple[Style, str | None]:
    """The style without its crops and with its scale range narrowed to ``POINT_SCALE``, and a note saying so
    (None when nothing changed), for an objective read at one point of the map (a neuron, a concept at the
    centre). Why: a crop resamples the image around a random place, so the fixed point sees a different, rescaled
    part at every step and no part is driven to its maximum (benchmarks/results/objective_sizes.md: the digits
    network's conv3 neurons 6/10, 6/10, 5/10 at 64, 128 and 224 px with crops, 10/10, 10/10, 8/10 without); a wide
    zoom does the same, less. Jitter and rotation move the point by a few pixels."""
    if not style.transforms:
        return style, None
    kept = tuple(_narrow(t) if isinstance(t, Scale) else t for t in style.transforms if not isinstance(t, Crops))
    if transforms_spec(kept) == transforms_spec(style.transforms):
        return style, None
    note = (f"the {style.name} style's crops and wide zoom ({transforms_spec(style.transforms)}) move a single "
            f"point's view; for a neuron they are left out or narrowed ({transforms_spec(kept)})")
    return replace(style, transforms=kept), note


#: How many times its own iterations a style takes on an image whose transforms ``fit_to_small`` left out.
SMALL_ITERS = 4


def fit_iterations(style: Style, hw: tuple[int, int]) -> tuple[Style, str | None]:
    """The style with ``SMALL_ITERS`` × its own iterations, and a note, on an image under ``SMALL_FRACTION`` of
    224 px (67 px) once ``fit_to_small`` left its transforms out (None: unchanged). Why: there a step costs under
    1/10 of a 224 px step, and the runs that stall are many (efficientnet_lite0 at 32 px, 20 tuning classes: 12/20
    top-1 after 64 iterations, 14/20 after 128, 16/20 after 256; reported on 20 other classes: 16/20 and 18/20
    after 64 and 256: benchmarks/results/objective_sizes.md, round 6)."""
    if style.transforms != () or not style.rivals or not style.iters or min(hw) >= SMALL_FRACTION * TRANSFORM_SIDE:
        return style, None
    more = replace(style, iters=style.iters * SMALL_ITERS)
    return more, (f"at {min(hw)} px a step is cheap: {more.iters} iterations instead of {style.iters}")


def adapt(style: Style, hw: tuple[int, int], native: int | None, at_point: bool,
          more_iters: bool = True, caps: bool = False, has_class: bool = True) -> tuple[Style, str | None]:
    """The style's own transforms fitted to the problem, and one note saying how (None: unchanged): left out for a
    small image or a small network, whose class objectives then lower their rivals (``fit_to_small``), and more
    iterations on a small image (``fit_iterations``, when ``more_iters``: the objective has a class and the caller
    gives no iterations; units were met without them), jitters scaled to a small image (``fit_transforms``), crops
    left out for an objective read at one point (``fit_to_point``, when ``at_point``), and a backward slope for
    flat ReLU6 units where the transforms are left out (``fit_caps``, when ``caps``: the network has them and the
    caller gives no slope). ``has_class``: the objective has a class (the note says how classes change only then)."""
    style, leak = fit_caps(style, hw, native) if caps else (style, None)
    style, small = fit_to_small(style, hw, native, has_class)
    style, more = fit_iterations(style, hw) if more_iters else (style, None)
    style, scaled = fit_transforms(style, hw, native)
    style, point = fit_to_point(style) if at_point else (style, None)
    return style, "; ".join(n for n in (small, leak, more, scaled, point) if n) or None


def _bound_record(style: Style) -> dict[str, Any]:
    """``{"bound": B}`` for a style with its own pixel bound (``"none"`` for ∞, which JSON cannot hold)."""
    return {} if style.bound is None else {"bound": "none" if style.bound == math.inf else style.bound}


def style_record(style: Style) -> str | dict[str, Any]:
    """A style as JSON: its name when it is one of ``STYLES``, else its parts (``get_style`` reads both)."""
    if STYLES.get(style.name) == style:
        return style.name
    return {"name": style.name, "param": style.param.spec(), "transforms": transforms_spec(style.transforms),
            "prior": style.prior.spec() if style.prior else None, "optimizer": style.optimizer, "iters": style.iters,
            "C": style.C, "schedule": schedule_record(style.schedule) if style.schedule is not None else None,
            **({"rivals": style.rivals} if style.rivals else {}), **_bound_record(style),
            **({"cap_leak": style.cap_leak} if style.cap_leak else {}),
            **({"candidates": style.candidates} if style.candidates != 1 else {}),
            **({"skip_grad": style.skip_grad} if style.skip_grad != 1 else {})}


def get_style(style: str | Style | dict[str, Any]) -> Style:
    """A style object from itself, its name or its record (``style_record``); a clear error otherwise."""
    if isinstance(style, Style):
        return style
    if isinstance(style, str) and style in STYLES:
        return STYLES[style]
    if isinstance(style, dict) and isinstance(style.get("name"), str):
        t = parse_transforms(style.get("transforms"))
        return Style(style["name"], param=parse_param(style.get("param") or "pixel"),
                     transforms=None if t is None else tuple(t), prior=parse_prior(style.get("prior")),
                     optimizer=style.get("optimizer"), iters=style.get("iters"), C=style.get("C", 1.0),
                     schedule=stages_from_record(style["schedule"]) if style.get("schedule") else None,
                     rivals=style.get("rivals", 0.0),  # Style checks the numbers
                     bound=math.inf if style.get("bound") == "none" else style.get("bound"),
                     cap_leak=style.get("cap_leak", 0.0), candidates=style.get("candidates", 1),
                     skip_grad=style.get("skip_grad", 1.0))
    raise PreimageError(f"unknown style {style!r} (choose {', '.join(STYLES)}, or a preimage.Style)", param="style")


def resolve(rep: Representation, style: str | Style = "paper", *, param: str | Parameterization | None = None,
            transforms: str | Transform | Sequence[Transform | str] | None = None,
            prior: str | BNPrior | None = None, prior_weight: float | None = None,
            optimizer: str | None = None, cap_leak: float | None = None) -> tuple[Style, dict[str, Any]]:
    """The style with the overrides applied, and the keyword arguments it gives ``optimize``. cap_leak: the
    caller's backward slope on flat ReLU6 units (None: the style's; ``adapt`` may set one only then).

    Bad names fail here, before any work: an unknown style, parameterization, transform, prior or optimizer, or a
    required BatchNorm prior on a network without BatchNorm."""
    s = get_style(style)
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise PreimageError(f"unknown optimizer {optimizer!r} (choose {', '.join(OPTIMIZERS)})", param="optimizer")
    t = parse_transforms(transforms)
    if isinstance(prior, str) and ":" not in prior and prior_weight is None and s.prior is not None:
        prior_weight = s.prior.weight  # "bn" on a style with a prior: the style's weight
    p = s.prior if prior is None and prior_weight is None else parse_prior(prior if prior is not None else (
        s.prior or "bn"), prior_weight)
    s = replace(s, param=s.param if param is None else parse_param(param),
                transforms=s.transforms if t is None else tuple(t), prior=p, optimizer=optimizer or s.optimizer,
                cap_leak=s.cap_leak if cap_leak is None else cap_leak)
    built: BNStats | None = s.prior.build(rep) if s.prior is not None else None
    if s.prior is not None and built is None:
        s = replace(s, prior=None)  # "auto" on a network without BatchNorm
    kw = {"param": s.param, "transforms": None if s.transforms is None else list(s.transforms),
          "optimizer": s.optimizer, "prior": built, "bound": s.bound}
    return s, kw


def describe(s: Style, schedule: Sequence[Stage] = ()) -> dict[str, Any]:
    """JSON-ready description of a resolved style run with ``schedule``; ``optimizer`` names the stages' optimizers
    in order, joined by ``+`` (``adam+lbfgs`` for the fast style)."""
    own = OWN_OPTIMIZER[s.param.name]
    names = [s.optimizer] if s.optimizer else list(dict.fromkeys(st.optimizer or own for st in schedule)) or [own]
    return {"style": s.name, "param": s.param.spec(), "transforms": transforms_spec(s.transforms),
            "prior": s.prior.spec() if s.prior else None, "optimizer": "+".join(names),
            **({"rivals": s.rivals} if s.rivals else {}), **_bound_record(s),
            **({"cap_leak": s.cap_leak} if s.cap_leak else {})}
