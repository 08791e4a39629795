"""A network's layers: every one with its measured geometry (``preimage layers``), and the main ones that sweeps
over "all layers" visit (the atlas, reproduce cnn-layers)."""

from __future__ import annotations

from torch import nn

from ..errors import PreimageError
from .base import ModelSpec
from .geometry import measure_geometry
from .hooks import named_layers, one_module

#: Modules whose output equals their input's: not worth a layer of their own.
PASS_THROUGH = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.Softmax, nn.LogSoftmax)


def main_layers(spec: ModelSpec) -> list[str]:
    """MatConvNet's numbered layers for the paper networks, else the network's top-level modules with
    sequential containers opened one level (e.g. ``conv_stem, bn1, blocks.0 … blocks.6, conv_head, bn2,
    global_pool, classifier``), skipping dropout/identity/flatten/softmax."""
    mods = dict(spec.module.named_modules())
    if spec.layer_aliases and all(k.isdigit() for k in spec.layer_aliases):
        names = [spec.layer_aliases[k] for k in sorted(spec.layer_aliases, key=int)]
    else:
        names = []
        for name, child in spec.module.named_children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 0:
                names += [f"{name}.{sub}" for sub, _ in child.named_children()]
            else:
                names.append(name)
    return [n for n in names if n in mods and not isinstance(mods[n], PASS_THROUGH)]


def layer_rows(spec: ModelSpec, size: tuple[int, int] | None = None) -> list[dict]:
    """Every named layer of a model with its measured geometry, as ``preimage layers`` lists them (JSON-ready).

    Token outputs add ``tokens``: {"prefix", "names", "grid"} (the patch grid's h×w) and ``layout`` ("tokens"
    or "nhwc"); ``fixed_size`` marks layers measured at the one input size the network accepts.
    """
    mods = named_layers(spec.module)
    hw = size or spec.input_size or (224, 224)
    whole = one_module(spec.module)
    try:
        geo = measure_geometry(spec.module, {"output": None} if whole else mods, spec.channels, hw)
    except PreimageError as e:
        native = spec.input_size
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
        rows.append({"name": n, "type": type(spec.module if whole else mods[n]).__name__, "shape": list(g.shape),
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
