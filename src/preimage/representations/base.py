"""Φ: a network truncated at a layer, fed with images in paper units, with measured geometry.

Paper units: RGB (or grey) in 0–255 minus the representation's mean colour, N×C×H×W. A representation maps
them to what its network expects ((x/255 − mean)/std) inside its own forward, so the energy's constants
(B=80, B+=160, V=B/6.5) carry across models.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import PreimageError
from .tokens import TokenLayout, find_layout, is_attention, prefix_names


@dataclass(frozen=True)
class Stage:
    """One optimizer stage: ``iters`` steps at ``lr_scale``·lr0, with or without jitter; ``optimizer``: the
    stage's own (``paper``, ``adam``, ``hybrid``, ``lbfgs``) when the run asks for none (None: the
    parameterization's)."""

    iters: int
    lr_scale: float = 1.0
    jitter: bool = True
    optimizer: str | None = None


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
    """Stride and receptive field of a layer (pixels, (rows, cols)); ``None`` for non-spatial outputs.

    For token outputs (``tokens`` set, see ``tokens.py``) the stride is the patch grid's step; ``shape`` is what
    Φ returns: T×C tokens, or C×H×W for channels-last maps (permuted).
    """

    shape: tuple[int, ...]  # one sample's output shape at the measured input size
    stride: tuple[int, int] | None
    receptive_field: tuple[int, int] | None  # None with global_field: after attention, the whole input
    global_field: bool = False  # the field covers the whole input (attention, global pooling, SE gates)
    tokens: TokenLayout | None = None  # how the output holds its map, when not N×C×H×W
    grid: tuple[int, int] | None = None  # the patch grid (h, w) of a token output
    fixed_size: bool = False  # the network refused another input size: measured at this one only

    @property
    def jitter(self) -> int:
        """Jitter amount J = max(round(s/4), 1) from the stride (paper-notes §1.6; MATLAB rounding)."""
        s = max(self.stride) if self.stride else 32
        return max(int((s / 4) + 0.5), 1)

    def viewed(self, view: str | None) -> Geometry:
        """The geometry of a view of the output (``Representation.view``): the shape changes, nothing else."""
        if view is None or self.tokens is None or self.tokens.kind != "tokens":
            if view not in (None, "grid"):
                raise PreimageError("this layer has no prefix tokens (class, distillation or register tokens); "
                                    "--token applies to vision transformers' token outputs")
            return self
        c = self.shape[-1]
        if view == "grid":
            if not self.grid or not self.grid[0]:
                raise PreimageError("this layer outputs prefix tokens only: it has no patch grid (use --token)")
            return dataclasses.replace(self, shape=(c, *self.grid))
        self.tokens.index(view)
        return dataclasses.replace(self, shape=(c,))


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


@contextlib.contextmanager
def swap_modules(net: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> Iterator[int]:
    """Temporarily put ``replace(child)`` in place of every submodule for which it returns a module; yields how
    many were swapped. Restored on exit, also on error."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)


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
    """Φ(x): paper-unit images N×C×H×W → features N×D×h×w (or N×D) at one layer of a frozen network.

    Token outputs (vision transformers) are seen through ``view``: None, the whole output (N×T×C tokens, prefix
    tokens included; channels-last maps permuted to N×C×H×W); ``"grid"``, the patch grid N×C×h×w; or a prefix
    token's name or index (``"cls"``, ``"dist"``, ``"reg0"``, ``"0"``), N×C.
    """

    def __init__(self, spec: ModelSpec, layer: str | None = None, view: str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.net = spec.module.eval().requires_grad_(False)
        self.layer = resolve_layer(spec, layer)
        self.view = view
        self._target = _named_layers(self.net)[self.layer] if self.layer else None
        self._prefix_names = prefix_names(self.net)
        self._layout: TokenLayout | None | bool = False  # False: not read yet (at the first forward)
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
        """x: N×C×H×W in paper units → features N×... (the target layer's output, seen through the view)."""
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
                                    "--token applies to vision transformers' token outputs")
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
            size = self.spec.defaults.size or (224, 224)
            key = self.layer or ""
            self._geometry = measure_geometry(self.net, {key: self._target}, self.channels, size)[key]
        return self._geometry.viewed(self.view)

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


@dataclass
class _Pass:
    """What one probing forward pass saw: raw outputs, the layers that completed after the first attention
    module (their field is the whole input), and the error that stopped the network, if any."""

    outs: dict[str, torch.Tensor]
    late: set[str]
    error: Exception | None = None


def _layer_outputs(net: nn.Module, x: torch.Tensor, targets: dict[str, nn.Module | None],
                   alias: dict[str, str] | None = None) -> _Pass:
    """Outputs of several modules (None: the whole net) in one forward pass; stops right after the last target
    when every target is a module. A network that fails part way (an input size it refuses) keeps the
    outputs it made before.

    With ``alias`` (a dict to fill), every named module of ``net`` is watched, and a module that only passes
    on or pointwise-transforms another module's output is mapped to that module: they share a geometry.
    """
    outs: dict[str, torch.Tensor] = {}
    late: set[str] = set()
    attended = [False]  # has an attention module completed?
    producer: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # holds every output so that tensor ids are not reused during the pass
    watched = _named_layers(net) if alias is not None else {n: m for n, m in targets.items() if m is not None}
    wanted = {n for n, m in targets.items() if m is not None}
    stop = alias is None and len(wanted) == len(targets)
    handles = []
    for name, mod in watched.items():

        def hook(m, inputs, o, name=name):  # reused modules report their first call
            if name in outs or not isinstance(o, torch.Tensor):
                return
            outs[name] = o
            if attended[0] or is_attention(m):
                late.add(name)
            if alias is not None:
                src = producer.get(id(o))
                if src is None and isinstance(m, _POINTWISE) and inputs and isinstance(inputs[0], torch.Tensor):
                    src = producer.get(id(inputs[0]))
                if src and name in late and src not in late:
                    src = None  # an attention module's output mixes all positions: not its last sub-layer's map
                alias[name] = alias.get(src, src) if src else name
                producer.setdefault(id(o), name)
                keep.append(o)
            if stop and wanted <= outs.keys():
                raise _Stop

        handles.append(mod.register_forward_hook(hook))
    for m in net.modules():
        if is_attention(m):
            handles.append(m.register_forward_hook(lambda *_: attended.__setitem__(0, True)))
    error = None
    try:
        final = net(x)
    except _Stop:
        final = None
    except Exception as e:  # noqa: BLE001 - the network refuses this input; the caller decides
        final, error = None, e
    finally:
        for hd in handles:
            hd.remove()
    for name, mod in targets.items():
        if mod is None and isinstance(final, torch.Tensor):
            outs[name] = final
            if attended[0]:
                late.add(name)
    return _Pass(outs, late, error)


def _probe(lin: nn.Module, targets: dict[str, nn.Module | None], channels: int, size: tuple[int, int],
           gen: torch.Generator, alias: dict[str, str] | None = None, grad: bool = True) -> tuple[torch.Tensor, _Pass]:
    # Positive and non-constant: shallow nets (HOG) have zero gradient on a constant image.
    x = (1 + torch.rand(1, channels, *size, generator=gen)).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        return x, _layer_outputs(lin, x, targets, alias)


def refusal(error: Exception) -> str:
    """A network's own complaint about an input, on one short line (for error messages)."""
    msg = " ".join(str(error).split())
    msg = msg if len(msg) <= 160 else msg[:157] + "..."
    return f"{error.__class__.__name__}: {msg}" if msg else error.__class__.__name__


def _as_map(y: torch.Tensor | None, layout: TokenLayout | None, size: tuple[int, int]) -> torch.Tensor | None:
    """A probed output as a 1×C×h×w map (token grids and channels-last maps converted), or None."""
    if y is None:
        return None
    if layout is not None:
        try:
            return layout.to_map(y, size)
        except PreimageError:  # prefix tokens only, or no grid at this size
            return None
    return y if y.ndim == 4 else None


def measure_geometry(net: nn.Module, layers: dict[str, nn.Module | None], channels: int,
                     size: tuple[int, int], max_size: int | None = None) -> dict[str, Geometry]:
    """Measure output shape, stride and receptive field of layers of ``net`` (None: the whole net's output).

    Stride: how much the output map grows when the input doubles, or, for a network that refuses other
    input sizes (``fixed_size``), the input's size over the map's. Receptive field: the support of the
    gradient of the centre output neuron in a linearized copy of the network, measured from a small input
    and again on larger ones while it reaches the border, up to ``max_size`` (default: twice ``size``);
    beyond, it is reported clipped with ``global_field``. After the first attention module the field is the
    whole input (``global_field``, no measurement). Token outputs are measured on their patch grid
    (``tokens.py``). Layers that only pass on another layer's output pointwise share its measurement.
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
    names = prefix_names(net)
    gen = torch.Generator().manual_seed(0)
    targets = {name: (lin_mods[name] if mod is not None else None) for name, mod in layers.items()}
    alias: dict[str, str] | None = {} if len(layers) > 1 else None
    _, first = _probe(lin, targets, channels, size, gen, alias, grad=False)
    if first.error is not None and not targets.keys() <= first.outs.keys():
        raise PreimageError(f"the network does not accept a {channels}×{size[0]}×{size[1]} input "
                            f"({refusal(first.error)})")
    outs = first.outs
    layouts = {n: find_layout(tuple(y.shape[1:]), size, names) if y.ndim in (3, 4) and y.shape[0] == 1 else None
               for n, y in outs.items() if n in targets or n in (alias or {}).values()}
    maps = {n: _as_map(outs.get(n), layouts.get(n), size) for n in layouts}
    shared = {n: a for n, a in (alias or {}).items() if n in targets and a != n and targets[n] is not None}
    todo = {n: m for n, m in targets.items() if n not in shared}
    todo.update({a: lin_mods[a] for a in set(shared.values()) - set(todo)})
    late = first.late
    big = (2 * size[0], 2 * size[1])
    spatial = {n: m for n, m in todo.items() if maps.get(n) is not None}
    second = _probe(lin, spatial, channels, big, gen, grad=False)[1] if spatial else _Pass({}, set())
    fixed = second.error is not None
    strides: dict[str, tuple[int, int] | None] = {}
    refused: set[str] = set()
    for n in todo:
        m1 = maps.get(n)
        if m1 is None:
            strides[n] = None
            continue
        m2 = _as_map(second.outs.get(n), layouts.get(n), big)
        h1, w1 = m1.shape[-2:]
        if m2 is not None:
            dh, dw = m2.shape[-2] - h1, m2.shape[-1] - w1
            strides[n] = (round(size[0] / dh), round(size[1] / dw)) if dh > 0 and dw > 0 else None
        else:  # the network refuses twice the size: the map's step over the input it accepts
            refused.add(n)
            strides[n] = (round(size[0] / h1), round(size[1] / w1)) if h1 * w1 > 1 else None
    del outs, maps, second
    fields = _receptive_fields(lin, {n: m for n, m in todo.items() if strides[n] is not None and n not in late},
                               layouts, channels, size, max_size, gen, fixed)
    result = {}
    for n in targets:
        m = shared.get(n, n)
        y = first.outs.get(n)
        lay = layouts.get(m) if m in layouts else layouts.get(n)
        shape = tuple(y.shape[1:]) if y is not None else ()
        grid = None
        if lay is not None and lay.kind == "nhwc":
            shape = (shape[2], shape[0], shape[1])
        elif lay is not None:
            grid = lay.grid_size(shape[0], size)
        if strides.get(m) is None:
            rf, glob = None, m in late
        elif m in late:
            rf, glob = None, True
        else:
            rf, glob = fields.get(m, (None, True))
        result[n] = Geometry(shape, strides.get(m), rf, global_field=glob, tokens=lay, grid=grid,
                             fixed_size=m in refused)
    return {name: result[name] for name in layers}


def _receptive_fields(lin: nn.Module, spatial: dict[str, nn.Module | None], layouts: dict[str, TokenLayout | None],
                      channels: int, size: tuple[int, int], max_size: int, gen: torch.Generator,
                      fixed: bool) -> dict[str, tuple[tuple[int, int], bool]]:
    """(support of the centre neuron's gradient, whether it reached the border) for each layer: one forward
    pass per input size, one backward pass per layer."""
    fields: dict[str, tuple[tuple[int, int], bool]] = {}
    if not spatial:
        return fields
    h, w = size
    for div in ((1,) if fixed else (4, 2, 1)):  # start small: most layers see little, the cost grows with the area
        h, w = max(size[0] // div, 8), max(size[1] // div, 8)
        x, probe = _probe(lin, spatial, channels, (h, w), gen)
        if probe.error is None:
            break
    while spatial:
        retry = {}
        for n in spatial:
            y = _as_map(probe.outs.get(n), layouts.get(n), (h, w))
            if y is None:  # refused at this size: the last support measured (clipped), or the whole input
                fields.setdefault(n, ((h, w), True))
                continue
            cy, cx = (y.shape[-2] - 1) // 2, (y.shape[-1] - 1) // 2
            (g,) = torch.autograd.grad(y[0, :, cy, cx].sum(), x, retain_graph=True)
            r0, r1, c0, c1 = _support(g[0])
            touches = r0 <= 0 or c0 <= 0 or r1 >= h - 1 or c1 >= w - 1
            fields[n] = ((r1 - r0 + 1, c1 - c0 + 1), touches)
            if touches and not fixed and 2 * max(h, w) <= max_size:
                retry[n] = spatial[n]
        spatial = retry
        if spatial:
            h, w = 2 * h, 2 * w
            x, probe = _probe(lin, spatial, channels, (h, w), gen)
    return fields


def layer_rows(spec: ModelSpec, size: tuple[int, int] | None = None) -> list[dict]:
    """Every named layer of a model with its measured geometry, as ``preimage layers`` lists them (JSON-ready).

    Token outputs add ``tokens``: {"prefix", "names", "grid"} (the patch grid's h×w) and ``layout`` ("tokens"
    or "nhwc"); ``fixed_size`` marks layers measured at the one input size the network accepts.
    """
    mods = _named_layers(spec.module)
    hw = size or spec.defaults.size or (224, 224)
    try:
        geo = measure_geometry(spec.module, mods, spec.channels, hw)
    except PreimageError as e:
        native = spec.defaults.size
        hint = f"; it was built for {native[0]}×{native[1]}" if native and tuple(native) != tuple(hw) else ""
        raise PreimageError(f"{spec.name}: {e}{hint}") from None
    aliases: dict[str, list[str]] = {}
    for a, target in spec.layer_aliases.items():
        aliases.setdefault(target, []).append(a)
    rows = []
    for n, g in geo.items():
        if not g.shape:
            continue
        lay = g.tokens
        rows.append({"name": n, "type": type(mods[n]).__name__, "shape": list(g.shape),
                     "stride": _pair(g.stride), "receptive_field": _pair(g.receptive_field),
                     "global_field": g.global_field, "fixed_size": g.fixed_size, "aliases": aliases.get(n, []),
                     "layout": lay.kind if lay else None,
                     "tokens": {"prefix": lay.prefix, "names": list(lay.names), "grid": list(g.grid or (0, 0))}
                     if lay and lay.kind == "tokens" else None})
    return rows


def _pair(p: tuple[int, int] | None) -> int | list[int] | None:
    """(a, a) → a; (a, b) → [a, b]; None → None."""
    if p is None:
        return None
    return p[0] if p[0] == p[1] else list(p)
