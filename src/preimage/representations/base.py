"""Φ: a network truncated at a layer, fed with images in paper units, with measured geometry.

Paper units: RGB (or grey) in 0–255 minus the representation's mean colour, N×C×H×W. A representation maps
them to what its network expects ((x/255 − mean)/std) inside its own forward, so the energy's constants
(B=80, B+=160, V=B/6.5) carry across models.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import PreimageError


@dataclass(frozen=True)
class Stage:
    """One optimizer stage: ``iters`` steps at ``lr_scale``·lr0, with or without jitter."""

    iters: int
    lr_scale: float = 1.0
    jitter: bool = True


#: The IJCV inversion schedule: 300 steps with jitter, then 50 at lr0/10 without (paper-notes §1.2).
CNN_INVERSION = (Stage(300, 1.0, True), Stage(50, 0.1, False))
#: The IJCV HOG/DSIFT schedule: 300 steps, no jitter (paper-notes §2.3).
SHALLOW_INVERSION = (Stage(300, 1.0, False),)


@dataclass(frozen=True)
class TaskDefaults:
    """Per-model defaults for inversion: data-term weight C, schedule, input size (None = the image's own),
    and whether to start coarse-to-fine (``tasks.coarse_to_fine``)."""

    C: float = 100.0
    schedule: tuple[Stage, ...] = CNN_INVERSION
    size: tuple[int, int] | None = (224, 224)
    coarse_to_fine: bool = False


@dataclass
class ModelSpec:
    """What a model builder returns: the network and how to feed it."""

    name: str
    module: nn.Module
    mean: tuple[float, ...]  # normalization mean, in [0, 1] units (torchvision convention)
    std: tuple[float, ...]
    channels: int = 3
    defaults: TaskDefaults = field(default_factory=TaskDefaults)
    layer_aliases: dict[str, str] = field(default_factory=dict)  # e.g. "13" → "conv5"
    default_layer: str | None = None  # None: the whole network's output
    weights_id: str = "random"  # identifies the weights (for caches keyed by model and weights)
    classifier_layer: str | None = None  # the layer whose output is class logits, if any


@dataclass(frozen=True)
class Geometry:
    """Stride and receptive field of a layer (pixels, (rows, cols)); ``None`` for non-spatial outputs."""

    shape: tuple[int, ...]  # one sample's output shape at the measured input size
    stride: tuple[int, int] | None
    receptive_field: tuple[int, int] | None
    global_field: bool = False  # the field covers the whole input (attention, global pooling, SE gates)

    @property
    def jitter(self) -> int:
        """Jitter amount J = max(round(s/4), 1) from the stride (paper-notes §1.6; MATLAB rounding)."""
        s = max(self.stride) if self.stride else 32
        return max(int((s / 4) + 0.5), 1)


class _Stop(Exception):
    """Raised by the truncation hook so the network stops right after the target layer."""


def _named_layers(net: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in net.named_modules() if name}


def resolve_layer(spec: ModelSpec, layer: str | None) -> str | None:
    """Map a user's layer name (module name or alias such as "13") to a module name, or fail clearly.

    None/"" → the model's default layer; "output" → None, the whole network's output.
    """
    if layer is None or layer == "":
        return spec.default_layer
    if layer == "output":
        return None
    layer = spec.layer_aliases.get(layer, layer)
    names = _named_layers(spec.module)
    if layer in names:
        return layer
    close = difflib.get_close_matches(layer, list(names) + list(spec.layer_aliases), n=4, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else "; run 'preimage layers --model ...' to list them"
    raise PreimageError(f"unknown layer '{layer}' for model '{spec.name}'{hint}")


def truncated_forward(net: nn.Module, x: torch.Tensor, target: nn.Module | None,
                      at_input: bool = False) -> torch.Tensor:
    """Run ``net`` on ``x`` only as far as ``target``'s output (or its first input with ``at_input``, e.g. the
    pre-activation of a ReLU module); the whole net if ``target`` is None."""
    if target is None:
        return net(x)
    box: list[object] = []

    def hook(_m: nn.Module, args: tuple, out: object = None) -> None:
        box.append(args[0] if at_input else out)
        raise _Stop

    handle = target.register_forward_pre_hook(hook) if at_input else target.register_forward_hook(hook)
    try:
        net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not box:
        raise PreimageError("the target layer was never called in the network's forward pass")
    out = box[0]
    if not isinstance(out, torch.Tensor):
        raise PreimageError("the target layer does not output a single tensor; choose another layer")
    return out


class Representation(nn.Module):
    """Φ(x): paper-unit images N×C×H×W → features N×D×h×w (or N×D) at one layer of a frozen network."""

    def __init__(self, spec: ModelSpec, layer: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.net = spec.module.eval().requires_grad_(False)
        self.layer = resolve_layer(spec, layer)
        self._target = _named_layers(self.net)[self.layer] if self.layer else None
        c = spec.channels
        mean = torch.as_tensor(spec.mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(spec.std, dtype=torch.float32).reshape(-1)
        if mean.numel() not in (1, c) or std.numel() not in (1, c):
            raise PreimageError(f"mean/std must have 1 or {c} entries")
        # Paper units to network input: (x + 255·mean)/255 − mean)/std = x / (255·std).
        self.register_buffer("mean", (mean.expand(c) * 255.0).clone())
        self.register_buffer("scale", (1.0 / (255.0 * std.expand(c))).reshape(1, c, 1, 1).clone())
        self._geometry: Geometry | None = None

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def defaults(self) -> TaskDefaults:
        return self.spec.defaults

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N×C×H×W in paper units → features N×... (the target layer's output)."""
        return truncated_forward(self.net, x * self.scale, self._target)

    def to_paper_units(self, img: torch.Tensor) -> torch.Tensor:
        """N×C×H×W image in 0–255 → paper units (mean colour subtracted)."""
        return img - self.mean.view(1, -1, 1, 1)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Paper units → 0–255 image units (mean colour added back; not clipped)."""
        return x + self.mean.view(1, -1, 1, 1)

    def geometry(self) -> Geometry:
        """Stride and receptive field of this layer, measured on the network once (at the default size)."""
        if self._geometry is None:
            size = self.spec.defaults.size or (224, 224)
            key = self.layer or ""
            self._geometry = measure_geometry(self.net, {key: self._target}, self.channels, size)[key]
        return self._geometry

    def device_dtype(self) -> tuple[torch.device, torch.dtype]:
        return self.scale.device, self.scale.dtype


_NONLINEAR = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
              nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Mish, nn.Softplus, nn.Hardtanh,
              nn.Dropout, nn.Dropout2d)


def _linearized_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with averaging weights, identity activations and norms, and average pools.

    In such a network the gradient of an output neuron is strictly positive exactly on its receptive
    field (no dead ReLUs, no max-pool argmax sparsity, no sign cancellation), so its support *is* the field.
    Convolution and linear weights become |w| normalized to sum 1 per output, so values stay bounded and
    float32 suffices (float64 depthwise convolutions are very slow on the CPU).
    """
    lin = copy.deepcopy(net).float().eval()
    for parent in list(lin.modules()):
        for cname, child in list(parent.named_children()):
            if isinstance(child, _NONLINEAR):
                setattr(parent, cname, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, cname, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                    ceil_mode=child.ceil_mode))
            elif isinstance(child, nn.AdaptiveMaxPool2d):
                setattr(parent, cname, nn.AdaptiveAvgPool2d(child.output_size))
    with torch.no_grad():
        for m in lin.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                w = m.weight.abs_().add_(1e-3)
                w.div_(w.flatten(1).sum(1).view(-1, *[1] * (w.ndim - 1)))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):  # kept, so its children stay addressable
                for t, v in ((m.weight, 1.0), (m.bias, 0.0), (m.running_mean, 0.0), (m.running_var, 1.0)):
                    if t is not None:
                        t.fill_(v)
            else:
                for p in m.parameters(recurse=False):
                    p.abs_().add_(1e-3)
    return lin.requires_grad_(False)


def _support(g: torch.Tensor) -> tuple[int, int, int, int]:
    """Bounding box (r0, r1, c0, c1) of the nonzero entries of a C×H×W gradient."""
    m = g.abs().sum(0) > 0
    rows = torch.nonzero(m.any(1)).flatten()
    cols = torch.nonzero(m.any(0)).flatten()
    if rows.numel() == 0:
        return 0, -1, 0, -1
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


#: Modules that act on each pixel separately (in a linearized copy): they keep their input's geometry.
_POINTWISE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LocalResponseNorm, nn.Identity) + _NONLINEAR


def _layer_outputs(net: nn.Module, x: torch.Tensor, targets: dict[str, nn.Module | None],
                   alias: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Outputs of several modules (None: the whole net) in one forward pass; stops early for one target.

    With ``alias`` (a dict to fill), every named module of ``net`` is watched, and a module that only passes
    on or pointwise-transforms another module's output is mapped to that module: they share a geometry.
    """
    if len(targets) == 1 and alias is None:
        (name, mod), = targets.items()
        return {name: truncated_forward(net, x, mod)}
    outs: dict[str, torch.Tensor] = {}
    producer: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # holds every output so that tensor ids are not reused during the pass
    watched = _named_layers(net) if alias is not None else {n: m for n, m in targets.items() if m is not None}
    handles = []
    for name, mod in watched.items():

        def hook(m, inputs, o, name=name):  # reused modules report their first call
            if name in outs or not isinstance(o, torch.Tensor):
                return
            outs[name] = o
            if alias is not None:
                src = producer.get(id(o))
                if src is None and isinstance(m, _POINTWISE) and inputs and isinstance(inputs[0], torch.Tensor):
                    src = producer.get(id(inputs[0]))
                alias[name] = alias.get(src, src) if src else name
                producer.setdefault(id(o), name)
                keep.append(o)

        handles.append(mod.register_forward_hook(hook))
    try:
        final = net(x)
    finally:
        for hd in handles:
            hd.remove()
    for name, mod in targets.items():
        if mod is None:
            outs[name] = final
    return outs


def _probe(lin: nn.Module, targets: dict[str, nn.Module | None], channels: int, size: tuple[int, int],
           gen: torch.Generator, alias: dict[str, str] | None = None, grad: bool = True) -> tuple[torch.Tensor, dict]:
    # Positive and non-constant: shallow nets (HOG) have zero gradient on a constant image.
    x = (1 + torch.rand(1, channels, *size, generator=gen)).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        return x, _layer_outputs(lin, x, targets, alias)


def measure_geometry(net: nn.Module, layers: dict[str, nn.Module | None], channels: int,
                     size: tuple[int, int], max_size: int | None = None) -> dict[str, Geometry]:
    """Measure output shape, stride and receptive field of layers of ``net`` (None: the whole net's output).

    Stride: how much the output map grows when the input doubles. Receptive field: the support of the
    gradient of the centre output neuron in a linearized copy of the network, measured from a small input
    and again on larger ones while it reaches the border, up to ``max_size`` (default: twice ``size``);
    beyond, it is reported clipped with ``global_field``. Layers that only pass on another layer's output
    pointwise share its measurement.
    """
    # Averaging chains produce subnormal floats that make the CPU ~10× slower; flushing them to zero
    # leaves the measured supports unchanged (checked on EfficientNet-Lite0, VGG-16, AlexNet).
    torch.set_flush_denormal(True)
    try:
        return _measure_geometry(net, layers, channels, size, max_size or 2 * max(size))
    finally:
        torch.set_flush_denormal(False)


def _measure_geometry(net: nn.Module, layers: dict[str, nn.Module | None], channels: int,
                      size: tuple[int, int], max_size: int) -> dict[str, Geometry]:
    lin = _linearized_copy(net)
    lin_mods = _named_layers(lin)
    gen = torch.Generator().manual_seed(0)
    targets = {name: (lin_mods[name] if mod is not None else None) for name, mod in layers.items()}
    alias: dict[str, str] | None = {} if len(layers) > 1 else None
    _, outs = _probe(lin, targets, channels, size, gen, alias, grad=False)
    shapes = {n: tuple(outs[n].shape[1:]) if n in outs else () for n in targets}
    shared = {n: a for n, a in (alias or {}).items() if n in targets and a != n and targets[n] is not None}
    todo = {n: m for n, m in targets.items() if n not in shared}
    todo.update({a: lin_mods[a] for a in set(shared.values()) - set(todo)})
    _, outs2 = _probe(lin, todo, channels, (2 * size[0], 2 * size[1]), gen, grad=False)
    strides: dict[str, tuple[int, int] | None] = {}
    for n in todo:
        y1, y2 = outs.get(n), outs2.get(n)
        if y1 is None or y1.ndim != 4 or y2 is None or y2.ndim != 4:
            strides[n] = None
            continue
        dh, dw = y2.shape[-2] - y1.shape[-2], y2.shape[-1] - y1.shape[-1]
        strides[n] = (round(size[0] / dh), round(size[1] / dw)) if dh > 0 and dw > 0 else None
    del outs, outs2
    fields: dict[str, tuple[tuple[int, int], bool]] = {}
    spatial = {n: m for n, m in todo.items() if strides[n] is not None}
    h, w = size
    for div in (4, 2, 1):  # start small: most layers see little, and the cost grows with the area
        try:
            h, w = max(size[0] // div, 8), max(size[1] // div, 8)
            x, outs = _probe(lin, spatial, channels, (h, w), gen)
            break
        except RuntimeError:  # the input is too small for the deeper layers
            continue
    while spatial:
        retry = {}
        for n in spatial:
            y = outs.get(n)
            if y is None or y.ndim != 4:
                fields[n] = ((h, w), True)
                continue
            cy, cx = (y.shape[-2] - 1) // 2, (y.shape[-1] - 1) // 2
            (g,) = torch.autograd.grad(y[0, :, cy, cx].sum(), x, retain_graph=True)
            r0, r1, c0, c1 = _support(g[0])
            touches = r0 <= 0 or c0 <= 0 or r1 >= h - 1 or c1 >= w - 1
            if touches and 2 * max(h, w) <= max_size:
                retry[n] = spatial[n]
            else:
                fields[n] = ((r1 - r0 + 1, c1 - c0 + 1), touches)
        spatial = retry
        if spatial:
            h, w = 2 * h, 2 * w
            x, outs = _probe(lin, spatial, channels, (h, w), gen)
    result = {}
    for n in targets:
        m = shared.get(n, n)
        rf, clipped = fields.get(m, (None, True))
        result[n] = Geometry(shapes[n], strides[m], rf if strides[m] else None, global_field=clipped)
    return {name: result[name] for name in layers}
