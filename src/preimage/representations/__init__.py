"""Representations Φ: named models (``zoo``), truncation and geometry (``base``), token outputs as maps
(``tokens``)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PreimageError
from .base import (
    CNN_INVERSION,
    SHALLOW_INVERSION,
    Geometry,
    ModelSpec,
    Representation,
    Stage,
    TaskDefaults,
    measure_geometry,
)
from .zoo import IMAGENET_MEAN, IMAGENET_STD, build, list_models, per_channel, register_model

__all__ = ["CNN_INVERSION", "SHALLOW_INVERSION", "Geometry", "ModelSpec", "Representation", "Stage",
           "TaskDefaults", "build", "list_models", "load", "measure_geometry", "parse_device", "register_model"]


def load(model: str | nn.Module | ModelSpec, layer: str | None = None, *, weights: str | None = None,
         random_weights: bool = False, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
         channels: int | None = None, input_size: tuple[int, int] = (224, 224), view: str | None = None,
         device: str | torch.device | None = None, **kwargs: object) -> Representation:
    """Φ at ``layer`` of a model: a registered/torchvision/``timm:NAME`` name, a ModelSpec, or any nn.Module.

    channels: the input's channels, any k (a plain module's; for torchvision/timm names the first convolution
    is built for k). ``mean``/``std`` give the input normalization in [0, 1] units, one value or one per
    channel (a plain module's default: ImageNet's; a name's default: the model's own). ``layer`` is a module
    name (see ``preimage layers``) or an alias; None means the whole network's output. view: how a token
    output is seen (``Representation``). kwargs: model arguments for timm/torchvision builders.
    """
    if isinstance(model, nn.Module):
        k = channels or 3
        spec = ModelSpec(type(model).__name__, model, tuple(mean or per_channel(IMAGENET_MEAN, k)),
                         tuple(std or per_channel(IMAGENET_STD, k)), channels=k,
                         defaults=TaskDefaults(size=tuple(input_size)), weights_id="user")
    elif isinstance(model, ModelSpec):
        spec = model
    else:
        spec = build(model, weights=weights, random_weights=random_weights, channels=channels, **kwargs)
    if not isinstance(model, nn.Module) and (mean is not None or std is not None):
        spec = dataclasses.replace(spec, mean=tuple(mean or spec.mean), std=tuple(std or spec.std))
    rep = Representation(spec, layer, view)
    return rep.to(parse_device(device)) if device is not None else rep


def parse_device(device: str) -> torch.device:
    """A torch device from its name, or a clear error (unknown name, CUDA asked for but absent)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise PreimageError(f"unknown device '{device}'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PreimageError("--device cuda was asked for, but no CUDA GPU is available")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise PreimageError("--device mps was asked for, but MPS is not available")
    return dev
