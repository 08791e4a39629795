"""Measured geometry: the output shape, stride and receptive field of a network's layers, measured on the
network itself (never tabulated per architecture; README.md, "Architecture").

Stride: how much the output map grows when the input doubles. Receptive field: the support of the centre output
neuron's gradient in a linearized copy of the network (averaging weights, identity activations), where the
gradient is strictly positive exactly on the field. Token outputs (vision transformers) are measured on their patch
grid (``tokens``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PreimageError
from .hooks import Stop, named_layers, refusal
from .tokens import TokenLayout, find_layout, is_attention, prefix_names


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
        """Jitter amount J = max(round(s/4), 1) from the stride (docs/paper-notes.md §1.6; MATLAB rounding)."""
        s = max(self.stride) if self.stride else 32
        return max(int((s / 4) + 0.5), 1)

    def viewed(self, view: str | None) -> Geometry:
        """The geometry of a view of the output (``Representation.view``): the shape changes, nothing else."""
        if view is None or self.tokens is None or self.tokens.kind != "tokens":
            if view not in (None, "grid"):
                raise PreimageError("this layer has no prefix tokens (class, distillation or register tokens); "
                                    "token applies to vision transformers' token outputs", param="token")
            return self
        c = self.shape[-1]
        if view == "grid":
            if not self.grid or not self.grid[0]:
                raise PreimageError("this layer outputs prefix tokens only: it has no patch grid (give a token)",
                                    param="token")
            return dataclasses.replace(self, shape=(c, *self.grid))
        self.tokens.index(view)
        return dataclasses.replace(self, shape=(c,))


_NONLINEAR = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
              nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Mish, nn.Softplus, nn.Hardtanh,
              nn.Dropout, nn.Dropout2d)


def _linearized_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with averaging weights, identity activations and norms, and average pools.

    In such a network the gradient of an output neuron is strictly positive exactly on its receptive
    field (no dead ReLUs, no max-pool argmax sparsity, no sign cancellation), so its support *is* the field.
    Convolution and linear weights become |w| normalized to sum 1 per output, and every leaf module's output is
    divided by its mean magnitude (a detached scalar: the gradient's support is unchanged), so values stay near 1
    and float32 suffices (float64 depthwise convolutions are very slow on the CPU). Without the second step,
    gates that multiply two activations (squeeze-and-excitation) square the values at each block, and after a
    few blocks they overflow to inf and the gradient to NaN (efficientnet_v2_s: a field of 0 at features.4).
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
    for m in lin.modules():
        if not any(True for _ in m.children()):
            m.register_forward_hook(_unit_mean)
    return lin.requires_grad_(False)


def _unit_mean(_m: nn.Module, _args: tuple, out: object) -> object:
    """A leaf's output divided by its mean magnitude (detached): values near 1, the same gradient support."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.numel() == 0:
        return out
    return out / out.detach().abs().mean().clamp_min(1e-30)


def _support(g: torch.Tensor) -> tuple[int, int, int, int]:
    """Bounding box (r0, r1, c0, c1) of the nonzero entries of a C×H×W gradient."""
    m = ~(g == 0).all(0)  # NaN counts as support: it only arises where the input reaches
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
    watched = named_layers(net) if alias is not None else {n: m for n, m in targets.items() if m is not None}
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
                raise Stop

        handles.append(mod.register_forward_hook(hook))
    for m in net.modules():
        if is_attention(m):
            handles.append(m.register_forward_hook(lambda *_: attended.__setitem__(0, True)))
    error = None
    try:
        final = net(x)
    except Stop:
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
    lin_mods = named_layers(lin)
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
            if r1 < r0:  # no support at all (a layer that ignores its input): never a field of 0, the whole input
                r0, r1, c0, c1 = 0, h - 1, 0, w - 1
            touches = r0 <= 0 or c0 <= 0 or r1 >= h - 1 or c1 >= w - 1
            fields[n] = ((r1 - r0 + 1, c1 - c0 + 1), touches)
            if touches and not fixed and 2 * max(h, w) <= max_size:
                retry[n] = spatial[n]
        spatial = retry
        if spatial:
            h, w = 2 * h, 2 * w
            x, probe = _probe(lin, spatial, channels, (h, w), gen)
    return fields
