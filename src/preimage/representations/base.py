"""Φ: a network truncated at a layer, fed with images in paper units, with measured geometry.

Paper units: RGB (or grey) in 0–255 minus the representation's mean colour, N×C×H×W. A representation maps
them to what its network expects ((x/255 − mean)/std) inside its own forward, so the energy's constants
(B=80, B+=160, V=B/6.5) carry across models.

A representation never changes the network it reads: every forward pass runs the network in evaluation mode and
puts each module's mode back afterwards (``hooks.eval_mode``); a user's module keeps its training mode, its
``requires_grad`` flags, its device and its parameters (``engine.runtime.borrowed`` does the rest for a whole run).
"""

from __future__ import annotations

import difflib
import hashlib
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import PreimageError
from .geometry import Geometry, measure_geometry
from .hooks import eval_mode, named_layers, truncated_forward
from .tokens import TokenLayout, find_layout, prefix_names


@dataclass
class ModelSpec:
    """What a model builder returns: the network and how to feed it."""

    name: str
    module: nn.Module
    mean: tuple[float, ...]  # normalization mean, in [0, 1] units (torchvision convention)
    std: tuple[float, ...]
    channels: int = 3
    input_size: tuple[int, int] | None = (224, 224)  # the native input size (None: each image's own)
    family: str = "cnn"  # its task defaults (engine.schedules.task_defaults): cnn, shallow or hog
    layer_aliases: dict[str, str] = field(default_factory=dict)  # e.g. "13" → "conv5"
    default_layer: str | None = None  # None: the whole network's output
    weights_id: str = "random"  # identifies the weights (for caches keyed by model and weights)
    classifier_layer: str | None = None  # the layer whose output is class logits, if any


def model_id(spec: ModelSpec) -> str:
    """``name@digest``: the model's name and 16 hex digits of its parameters and buffers (names, shapes, values), so
    that results of different weights never share a key or a seed, whatever ``weights_id`` says. Cached per live
    module until a tensor of the network is replaced or changes (its version counter moves)."""
    head = f"{spec.weights_id}|{spec.family}"  # builder options the tensors do not show
    state = spec.module.state_dict(keep_vars=True)
    # The tensors themselves, not their id(): a freed tensor's id can come back on a new one.
    stamp = (spec.name, head, tuple((t, t._version) for t in state.values()))
    cached = _IDS.get(spec.module)
    if cached is not None and _same_stamp(cached[0], stamp):
        return cached[1]
    h = hashlib.sha256(head.encode())
    for name, t in state.items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        t = t.detach().cpu().contiguous()
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    ident = f"{spec.name}@{h.hexdigest()[:16]}"
    _IDS[spec.module] = (stamp, ident)
    return ident


def _same_stamp(a: tuple, b: tuple) -> bool:
    return a[:2] == b[:2] and len(a[2]) == len(b[2]) and all(
        ta is tb and va == vb for (ta, va), (tb, vb) in zip(a[2], b[2], strict=True))


# Keyed by the module object itself (weakly), never by id(): a freed module's id is reused by the next one, and
# an id-keyed cache then hands the new module the old one's name and digest (two HOG-family networks with no
# tensors shared one key, and one read the other's stored results).
_IDS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def resolve_layer(spec: ModelSpec, layer: str | None, strict: bool = True) -> str | None:
    """Map a user's layer name (module name or alias such as "13") to a module name, or fail clearly.

    None → the model's default layer (``spec.default_layer``; without one, an error, or with ``strict=False`` the
    whole network's output); "output" → None, the whole network's output.
    """
    if layer is None:
        if strict and spec.default_layer is None and _has_layers(spec):
            raise PreimageError(f"give a layer of {spec.name}: it has no default layer (list them with "
                                "preimage.layers(model) or 'preimage layers')", param="layer")
        return spec.default_layer
    if not isinstance(layer, str) or not layer.strip():
        raise PreimageError(f"layer must be a module name of {spec.name} (or 'output'), got {layer!r}", param="layer")
    if layer == "output":
        return None
    layer = spec.layer_aliases.get(layer, layer)
    names = named_layers(spec.module)
    if layer in names:
        return layer
    close = difflib.get_close_matches(layer, list(names) + list(spec.layer_aliases), n=4, cutoff=0.5)
    hint = (f"; close matches: {', '.join(close)}" if close else
            "; list them with preimage.layers(model) or 'preimage layers'")
    raise PreimageError(f"unknown layer '{layer}' for model '{spec.name}'{hint}", param="layer")


def _has_layers(spec: ModelSpec) -> bool:
    """Whether the network has named layers to choose from (HOG and DSIFT are one block: their output)."""
    return any(True for _ in spec.module.named_children())


class Representation(nn.Module):
    """Φ(x): paper-unit images N×C×H×W → features N×D×h×w (or N×D) at one layer of a frozen network (layer None:
    the model's default layer, or its output for a model without one).

    Token outputs (vision transformers) are seen through ``view``: None, the whole output (N×T×C tokens, prefix
    tokens included; channels-last maps permuted to N×C×H×W); ``"grid"``, the patch grid N×C×h×w; or a prefix
    token's name or index (``"cls"``, ``"dist"``, ``"reg0"``, ``"0"``), N×C.
    """

    def __init__(self, spec: ModelSpec, layer: str | None = None, view: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        # A plain attribute, not a submodule: moving or copying Φ never moves or copies the user's network.
        object.__setattr__(self, "net", spec.module)
        self.layer = resolve_layer(spec, layer, strict=False)
        self.view = view
        self._target = named_layers(self.net)[self.layer] if self.layer else None
        self._prefix_names = prefix_names(self.net)
        self._layout: TokenLayout | None | bool = False  # False: not read yet (at the first forward)
        c = spec.channels
        mean = torch.as_tensor(spec.mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(spec.std, dtype=torch.float32).reshape(-1)
        if mean.numel() not in (1, c) or std.numel() not in (1, c):
            raise PreimageError(f"mean and std must have 1 or {c} entries", param=("mean", "std"))
        # Paper units to network input: (x + 255·mean)/255 − mean)/std = x / (255·std).
        self.register_buffer("mean", (mean.expand(c) * 255.0).clone())
        self.register_buffer("scale", (1.0 / (255.0 * std.expand(c))).reshape(1, c, 1, 1).clone())
        self._geometry: Geometry | None = None

    @property
    def channels(self) -> int:
        return self.spec.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N×C×H×W in paper units → features N×... (the target layer's output, seen through the view)."""
        with eval_mode(self.net):
            return self.as_view(truncated_forward(self.net, x * self.scale, self._target), x)

    def as_view(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The layer's raw output ``y`` for input ``x`` → what Φ returns (see the class docstring)."""
        if self._layout is False:
            self._layout = (find_layout(tuple(y.shape[1:]), tuple(x.shape[-2:]), self._prefix_names)
                            if y.ndim in (3, 4) and y.shape[0] == x.shape[0] else None)
        lay = self._layout
        if lay is None or lay.kind == "nhwc":
            if self.view not in (None, "grid"):
                raise PreimageError(f"layer '{self.layer or 'output'}' of {self.name} has no prefix tokens; "
                                    "token applies to vision transformers' token outputs", param="token")
            return y if lay is None else y.permute(0, 3, 1, 2)
        if self.view is None:
            return y
        if self.view == "grid":
            return lay.to_map(y, tuple(x.shape[-2:]))
        return lay.token(y, lay.index(self.view))

    def with_view(self, view: str | None) -> Representation:
        """The same Φ seen through another view (shares the network and the measured geometry)."""
        rep = Representation(self.spec, self.layer, view)
        rep._geometry = self._geometry
        return rep.to(*self.device_dtype())

    def to_paper_units(self, img: torch.Tensor) -> torch.Tensor:
        """N×C×H×W image in 0–255 → paper units (mean colour subtracted)."""
        return img - self.mean.view(1, -1, 1, 1)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Paper units → 0–255 image units (mean colour added back; not clipped)."""
        return x + self.mean.view(1, -1, 1, 1)

    def geometry(self) -> Geometry:
        """Stride and receptive field of this layer, measured on the network once (at the default size); the
        shape is the view's."""
        if self._geometry is None:
            size = self.spec.input_size or (224, 224)
            key = self.layer or ""
            self._geometry = measure_geometry(self.net, {key: self._target}, self.channels, size)[key]
        return self._geometry.viewed(self.view)

    def device_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where Φ computes, and in what dtype (those of its normalization, moved with the network)."""
        return self.scale.device, self.scale.dtype
