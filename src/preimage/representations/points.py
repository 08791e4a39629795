"""The response a unit is read at: a layer's **pre-ReLU** point (docs/paper-notes.md §1.3).

When the chosen module is a ReLU-family activation, or a timm norm+activation layer whose ``act`` is one
(``BatchNormAct2d``), the response is that activation's input, as the paper truncates the network at the conv
layer. Other modules are read at their output (a conv followed by an in-place ReLU is already pre-ReLU, since
truncation stops right after it). Known limit: a composite block that applies a ReLU in its own ``forward``
(torchvision ResNet blocks) is seen after that ReLU. Token outputs are read on their patch grid, or at a prefix
token (``view``).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ModelSpec, Representation
from .hooks import eval_mode, truncated_forward

#: ReLU-family modules whose *input* is the response (the pre-ReLU point).
RELUS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
#: A point of the network: ("output", module name), ("input", name of a ReLU-family module), ("grid", name) or
#: ("token<k>", name) (the neuron statistics' keys).
Point = tuple[str, str]


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
        with eval_mode(self.net):
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
