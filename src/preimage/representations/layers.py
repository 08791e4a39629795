"""A network's main layers: what sweeps over "all layers" visit (the atlas, reproduce cnn-layers)."""

from __future__ import annotations

from torch import nn

from .base import ModelSpec

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
