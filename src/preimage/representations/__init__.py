"""Representations Φ: named models (``zoo``), truncation (``base``), measured geometry (``geometry``), token
outputs as maps (``tokens``), a network's layers (``layers``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import PreimageError
from .base import ModelSpec, Representation
from .geometry import Geometry, measure_geometry
from .zoo import IMAGENET_MEAN, IMAGENET_STD, build, list_models, per_channel, register_model

__all__ = ["Geometry", "ModelSpec", "Representation", "build", "list_models", "load", "measure_geometry",
           "model_spec", "parse_device", "register_model"]

#: What a model argument may be: a name users type, any nn.Module, a built spec, or a representation (its spec).
ModelLike = str | nn.Module | ModelSpec | Representation


def model_spec(model: ModelLike, *, weights: str | None = None, random_weights: bool = False,
               mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
               channels: int | None = None, input_size: tuple[int, int] | None = None, **kwargs: object) -> ModelSpec:
    """The network and how to feed it, from a name (registered, torchvision, ``timm:NAME``), any nn.Module (used
    as it is, never modified), a ModelSpec or a Representation (its spec).

    channels: the input's channels, any k (a plain module's; for torchvision/timm names the first convolution is
    built for k). mean/std: the input normalization in [0, 1] units, one number or one per channel (a plain
    module's default: ImageNet's; a name's default: the model's own). input_size: a plain module's native input
    size (default 224×224). kwargs: model arguments for timm/torchvision builders."""
    mean, std = _constants(mean, "mean"), _constants(std, "std")
    if isinstance(model, Representation):
        spec = model.spec
    elif isinstance(model, nn.Module):
        k = channels or 3
        return ModelSpec(type(model).__name__, model, _fit(mean, k, "mean") or per_channel(IMAGENET_MEAN, k),
                         _fit(std, k, "std") or per_channel(IMAGENET_STD, k), channels=k,
                         input_size=tuple(input_size or (224, 224)), weights_id="user")
    elif isinstance(model, ModelSpec):
        spec = model
    elif isinstance(model, str):
        spec = build(model, weights=weights, random_weights=random_weights, channels=channels, **kwargs)
    else:
        raise PreimageError(f"model must be a name (e.g. 'efficientnet_lite0', 'timm:resnet50'), an nn.Module or a "
                            f"representation, got {type(model).__name__}", param="model")
    if mean is not None or std is not None:
        k = spec.channels
        spec = dataclasses.replace(spec, mean=_fit(mean, k, "mean") or spec.mean, std=_fit(std, k, "std") or spec.std)
    return spec


def _constants(v: float | Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    """One number or one per channel, as a tuple of positive-or-zero finite floats (std: positive)."""
    if v is None:
        return None
    try:
        vals = (float(v),) if isinstance(v, (int, float)) else tuple(float(a) for a in v)
    except (TypeError, ValueError):
        raise PreimageError(f"{name} is one number or one per input channel, got {v!r}", param=name) from None
    if not vals or not all(math.isfinite(a) for a in vals) or (name == "std" and min(vals) <= 0):
        raise PreimageError(f"{name} must be finite numbers{', all positive' if name == 'std' else ''}, got {v!r}",
                            param=name)
    return vals


def _fit(vals: tuple[float, ...] | None, k: int, name: str) -> tuple[float, ...] | None:
    """One number for every channel, or exactly one per channel."""
    if vals is None:
        return None
    if len(vals) not in (1, k):
        raise PreimageError(f"{name} has {len(vals)} values for a {k}-channel input: give one, or one per channel",
                            param=name)
    return vals * k if len(vals) == 1 else vals


def load(model: ModelLike, layer: str | None = None, *, weights: str | None = None, random_weights: bool = False,
         mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None, channels: int | None = None,
         input_size: tuple[int, int] | None = None, view: str | None = None,
         device: str | torch.device | None = None, **kwargs: object) -> Representation:
    """Φ at ``layer`` of a model (see ``model_spec`` for ``model`` and the other arguments).

    layer: a module name (``preimage layers`` lists them) or an alias; ``"output"`` is the whole network's
    output; None is the model's documented default layer (``efficientnet_lite0``: ``blocks.4``) or, for a model
    without one, its output. view: how a token output is seen (``Representation``). device: where Φ computes; a
    named model is built there, a user's module is moved there only for the length of each task and put back.
    """
    spec = model_spec(model, weights=weights, random_weights=random_weights, mean=mean, std=std,
                      channels=channels, input_size=input_size, **kwargs)
    if layer is None:
        layer = model.layer or "output" if isinstance(model, Representation) else spec.default_layer or "output"
    dev = parse_device(device) if device is not None else _device_of(spec.module)
    if spec.weights_id != "user":
        spec.module.to(dev)
    rep = Representation(spec, layer, view)
    return rep.to(dev)


def _device_of(module: nn.Module) -> torch.device:
    """Where a module's first parameter or buffer lives (the CPU for a module without any)."""
    t = next(iter(module.parameters()), None)
    if t is None:
        t = next(iter(module.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def parse_device(device: str) -> torch.device:
    """A torch device from its name, or a clear error (unknown name, CUDA asked for but absent)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise PreimageError(f"unknown device '{device}'", param="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PreimageError("device cuda was asked for, but no CUDA GPU is available", param="device")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise PreimageError("device mps was asked for, but MPS is not available", param="device")
    return dev
