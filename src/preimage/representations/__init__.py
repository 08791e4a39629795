"""Representations Φ: named models (``zoo``), truncation and geometry (``base``)."""

from __future__ import annotations

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
from .zoo import IMAGENET_MEAN, IMAGENET_STD, build, list_models, register_model

__all__ = ["CNN_INVERSION", "SHALLOW_INVERSION", "Geometry", "ModelSpec", "Representation", "Stage",
           "TaskDefaults", "build", "list_models", "load", "measure_geometry", "parse_device", "register_model"]


def load(model: str | nn.Module | ModelSpec, layer: str | None = None, *, weights: str | None = None,
         random_weights: bool = False, mean: tuple[float, ...] = IMAGENET_MEAN,
         std: tuple[float, ...] = IMAGENET_STD, channels: int = 3, input_size: tuple[int, int] = (224, 224),
         device: str | torch.device | None = None, **kwargs: object) -> Representation:
    """Φ at ``layer`` of a model: a registered/torchvision/``timm:NAME`` name, a ModelSpec, or any nn.Module.

    For a plain module, ``mean``/``std`` give its input normalization in [0, 1] units (ImageNet's by default).
    ``layer`` is a module name (see ``preimage layers``) or an alias; None means the whole network's output.
    """
    if isinstance(model, nn.Module):
        spec = ModelSpec(type(model).__name__, model, tuple(mean), tuple(std), channels=channels,
                         defaults=TaskDefaults(size=tuple(input_size)), weights_id="user")
    elif isinstance(model, ModelSpec):
        spec = model
    else:
        spec = build(model, weights=weights, random_weights=random_weights, **kwargs)
    rep = Representation(spec, layer)
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
