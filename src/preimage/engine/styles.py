"""Styles: named combinations of parameterization, transforms, feature prior and optimizer.

* ``paper``: exactly the paper's method (pixels, jitter canvas, momentum + AdaGrad, no feature prior);
* ``natural``: the combination that measured best on a judge network that never saw the optimization
  (benchmarks/transfer.py; the numbers are in benchmarks/README.md);
* ``fast``: inversion in a third of the paper's iterations: a Laplacian-pyramid parameterization without jitter,
  20 steps of Adam, then 100 of L-BFGS (one evaluation each; benchmarks/time_to_quality.py).

``--param``, ``--transforms`` and ``--prior`` override a style's parts one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from ..errors import PreimageError
from ..representations.base import Representation, Stage
from .param import OWN_OPTIMIZER, PARAMS
from .priors import PRIORS, make_prior
from .transforms import parse_transforms


@dataclass(frozen=True)
class Style:
    """A named combination. transforms: a ``--transforms`` spec (None: the paper's jitter); prior: ``bn``,
    ``none`` or ``auto`` (bn where the network has BatchNorm); optimizer None: the parameterization's own;
    iters: the default iterations of a single-stage task (None: the paper's 300); C: the weight of
    activation maximization's data term (the paper's is 1: its normalized unit term is ~0.2·logit/M for a
    class, small against the priors once Adam, not the paper's step size, sets the balance); schedule: the
    stages of inversion (None: the model's, the paper's 300+50)."""

    name: str
    param: str = "pixel"
    transforms: str | None = None
    prior: str = "none"
    prior_weight: float = 0.01
    optimizer: str | None = None
    iters: int | None = None
    C: float = 1.0
    schedule: tuple[Stage, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


STYLES = {
    "paper": Style("paper"),
    "natural": Style("natural", param="fourier",
                     transforms="jitter:17,scale:0.9-1.1,rotate:10,jitter:9,crops:4:0.6-1",
                     prior="auto", prior_weight=1e-4, iters=64, C=100.0),
    "fast": Style("fast", param="pyramid", transforms="none", iters=120,
                  schedule=(Stage(20, 1.0, False, "adam"), Stage(100, 1.0, False, "lbfgs"))),
}


def get_style(name: str) -> Style:
    if name not in STYLES:
        raise PreimageError(f"unknown style '{name}' (choose {', '.join(STYLES)})")
    return STYLES[name]


def has_batchnorm(rep: Representation) -> bool:
    """Whether a BatchNorm layer runs before ``rep``'s target (in the module order, or inside the target)."""
    modules = list(rep.net.named_modules())
    names = [n for n, _ in modules]
    if rep.layer is None or rep.layer not in names:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for _, m in modules)
    cut = names.index(rep.layer)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (i <= cut or n.startswith(rep.layer + "."))
               for i, (n, m) in enumerate(modules))


def resolve(rep: Representation, style: str | Style = "paper", *, param: str | None = None,
            transforms: str | None = None, prior: str | None = None, prior_weight: float | None = None,
            optimizer: str | None = None) -> tuple[Style, dict[str, Any]]:
    """The style with the overrides applied, and the keyword arguments it gives ``optimize``.

    Bad names fail here, before any work: an unknown style, parameterization, transform or prior, or
    ``--prior bn`` on a network without BatchNorm."""
    s = get_style(style) if isinstance(style, str) else style
    s = replace(s, param=param or s.param, transforms=s.transforms if transforms is None else transforms,
                prior=prior or s.prior, prior_weight=s.prior_weight if prior_weight is None else prior_weight,
                optimizer=optimizer or s.optimizer)
    if s.prior not in PRIORS + ("auto",):
        raise PreimageError(f"unknown prior '{s.prior}' (choose {', '.join(PRIORS)})")
    if s.prior_weight < 0:
        raise PreimageError("--prior-weight must not be negative")
    prior_name = ("bn" if has_batchnorm(rep) else "none") if s.prior == "auto" else s.prior
    if s.param not in PARAMS:
        raise PreimageError(f"unknown parameterization '{s.param}' (choose {', '.join(PARAMS)})")
    s = replace(s, prior=prior_name)
    kw = {"param": s.param, "transforms": parse_transforms(s.transforms), "optimizer": s.optimizer,
          "prior": make_prior(prior_name, rep, s.prior_weight)}
    return s, kw


def describe(s: Style, schedule: Sequence[Stage] = ()) -> dict[str, Any]:
    """JSON-ready description of a resolved style run with ``schedule``; ``optimizer`` names the stages' optimizers
    in order, joined by ``+`` (``adam+lbfgs`` for the fast style)."""
    own = OWN_OPTIMIZER[s.param]
    names = [s.optimizer] if s.optimizer else list(dict.fromkeys(st.optimizer or own for st in schedule)) or [own]
    return {"style": s.name, "param": s.param, "transforms": s.transforms, "prior": s.prior,
            "prior_weight": s.prior_weight if s.prior != "none" else None, "optimizer": "+".join(names)}
