"""The paper's networks in MatConvNet's layout: CaffeNet, Caffe AlexNet, VGG-M and VGG-16.

The IJCV figures come from MatConvNet's ``imagenet-caffe-ref``, ``imagenet-caffe-alex``, ``imagenet-vgg-m``
and ``imagenet-vgg-verydeep-16`` (vlfeat.org/matconvnet/models). Each is an ``nn.Sequential`` whose module
names are MatConvNet's layer names (``conv1`` … ``fc8``; VGG-16: ``conv1_1`` … ``pool5``, ``fc6`` … ``fc8``),
with the fully connected layers kept as convolutions so their outputs stay spatial, LRN with MatConvNet's
parameters, grouped convolutions and MatConvNet's pool padding. The layers are also reachable by their
1-based index in MatConvNet's layer list (``--layer 13`` is ``conv5`` of AlexNet, docs/paper-notes.md §3.2); the
final softmax is left out.

Inputs are MatConvNet's: RGB in 0–255 minus the mean colour, i.e. exactly the paper units, so ``std`` is
1/255. ``vgg16`` also takes torchvision's VGG-16 weights, mapped into the same layout; it then keeps
torchvision's input scaling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import PreimageError
from . import matconvnet as mcn
from .base import ModelSpec
from .matconvnet import McnLayer
from .zoo import IMAGENET_MEAN, IMAGENET_STD, load_into, load_state_file, pretrained_torchvision, register_model

__all__ = ["PAPER_NETS", "PaperNet", "architecture", "from_torchvision_vgg16", "layer_aliases"]


@dataclass(frozen=True)
class PaperNet:
    """A network of the paper: its registry name, MatConvNet model file, layers and input conventions."""

    key: str
    file: str  # MatConvNet model name, e.g. imagenet-caffe-ref
    layers: tuple[McnLayer, ...]
    size: tuple[int, int]
    mean: tuple[float, float, float]  # 0–255 RGB, used when the weights carry none


def _conv(name: str, k: int, cin: int, cout: int, stride: int = 1, pad: int = 0) -> McnLayer:
    return McnLayer(name, "conv", shape=(k, k, cin, cout), stride=(stride, stride), pad=(pad,) * 4)


def _pool(name: str, k: int, stride: int, pad: tuple[int, int, int, int] = (0, 0, 0, 0)) -> McnLayer:
    return McnLayer(name, "pool", pool=(k, k), stride=(stride, stride), pad=pad)


def _relu(name: str) -> McnLayer:
    return McnLayer(name, "relu")


def _lrn(name: str, param: tuple[float, float, float, float]) -> McnLayer:
    return McnLayer(name, "lrn", param=param)


# Caffe's LRN (local_size 5, alpha 1e-4, beta 0.75, k 1) in MatConvNet's units: alpha / local_size.
_CAFFE_LRN = (5.0, 1.0, 1e-4 / 5, 0.75)
# VGG-M (Chatfield et al. 2014): Caffe alpha 5e-4, k 2.
_VGGM_LRN = (5.0, 2.0, 5e-4 / 5, 0.75)
# Spatial mean of Caffe's ilsvrc_2012_mean (RGB) and the VGG papers' mean colour: defaults for random weights.
_CAFFE_MEAN = (122.679, 116.669, 104.007)
_VGG_MEAN = (123.68, 116.779, 103.939)


def _alexnet_family(caffenet: bool) -> tuple[McnLayer, ...]:
    def block(i: int, conv: McnLayer) -> list[McnLayer]:
        norm, pool = _lrn(f"norm{i}", _CAFFE_LRN), _pool(f"pool{i}", 3, 2)
        # CaffeNet pools before normalizing; AlexNet normalizes before pooling
        return [conv, _relu(f"relu{i}"), *((pool, norm) if caffenet else (norm, pool))]

    return (*block(1, _conv("conv1", 11, 3, 96, stride=4)),
            *block(2, _conv("conv2", 5, 48, 256, pad=2)),
            _conv("conv3", 3, 256, 384, pad=1), _relu("relu3"),
            _conv("conv4", 3, 192, 384, pad=1), _relu("relu4"),
            _conv("conv5", 3, 192, 256, pad=1), _relu("relu5"), _pool("pool5", 3, 2),
            *_classifier(6, 256))


def _classifier(k: int, cin: int) -> tuple[McnLayer, ...]:
    return (_conv("fc6", k, cin, 4096), _relu("relu6"), _conv("fc7", 1, 4096, 4096), _relu("relu7"),
            _conv("fc8", 1, 4096, 1000))


def _vgg_m() -> tuple[McnLayer, ...]:
    # MatConvNet's Caffe importer pads pool2 by one row and column to reproduce Caffe's ceil rounding
    # (26 → 13 at 224×224); pool1 and pool5 divide evenly and need none.
    return (_conv("conv1", 7, 3, 96, stride=2), _relu("relu1"), _lrn("norm1", _VGGM_LRN),
            _pool("pool1", 3, 2),
            _conv("conv2", 5, 96, 256, stride=2, pad=1), _relu("relu2"), _lrn("norm2", _VGGM_LRN),
            _pool("pool2", 3, 2, (0, 1, 0, 1)),
            _conv("conv3", 3, 256, 512, pad=1), _relu("relu3"),
            _conv("conv4", 3, 512, 512, pad=1), _relu("relu4"),
            _conv("conv5", 3, 512, 512, pad=1), _relu("relu5"), _pool("pool5", 3, 2),
            *_classifier(6, 512))


def _vgg16() -> tuple[McnLayer, ...]:
    layers: list[McnLayer] = []
    cin = 3
    for b, (n, cout) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], start=1):
        for j in range(1, n + 1):
            layers += [_conv(f"conv{b}_{j}", 3, cin, cout, pad=1), _relu(f"relu{b}_{j}")]
            cin = cout
        layers.append(_pool(f"pool{b}", 2, 2))
    return (*layers, *_classifier(7, 512))


PAPER_NETS: dict[str, PaperNet] = {
    "caffenet": PaperNet("caffenet", "imagenet-caffe-ref", _alexnet_family(True), (227, 227), _CAFFE_MEAN),
    "alexnet-caffe": PaperNet("alexnet-caffe", "imagenet-caffe-alex", _alexnet_family(False), (227, 227),
                              _CAFFE_MEAN),
    "vgg-m": PaperNet("vgg-m", "imagenet-vgg-m", _vgg_m(), (224, 224), _VGG_MEAN),
    "vgg16": PaperNet("vgg16", "imagenet-vgg-verydeep-16", _vgg16(), (224, 224), _VGG_MEAN),
}


def architecture(name: str) -> list[McnLayer]:
    """The layers of a paper network (``caffenet``, ``alexnet-caffe``, ``vgg-m``, ``vgg16``), no weights."""
    if name not in PAPER_NETS:
        raise PreimageError(f"unknown paper network '{name}' (one of {', '.join(PAPER_NETS)})")
    return list(PAPER_NETS[name].layers)


def layer_aliases(layers: list[McnLayer]) -> dict[str, str]:
    """MatConvNet's 1-based layer indices → layer names, e.g. ``{"1": "conv1", …, "20": "fc8"}``."""
    return {str(i): ly.name for i, ly in enumerate(layers, start=1)}


# ---------------------------------------------------------------------------------------------------------
# Matching a MatConvNet file against an architecture
# ---------------------------------------------------------------------------------------------------------


def _mismatch(expected: tuple[McnLayer, ...], got: list[McnLayer]) -> str | None:
    """Why ``got`` (a file's layers) is not ``expected`` or a prefix of it; None when it fits."""
    if not got:
        return "it has no layers"
    if len(got) > len(expected):
        return f"it has {len(got)} layers, the network has {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got, strict=False), start=1):
        if e.type != g.type:
            return f"layer {i} ('{g.name}') is {g.type}, {e.name} should be {e.type}"
        if e.type == "conv" and e.shape != g.shape:
            return (f"layer {i} ('{g.name}') has filters {'×'.join(map(str, g.shape))}, {e.name} needs "
                    f"{'×'.join(map(str, e.shape))}")
        if e.type == "pool" and e.pool != g.pool:
            return f"layer {i} ('{g.name}') pools {g.pool}, {e.name} pools {e.pool}"
    return None


def _match(net: PaperNet, net_file: mcn.SimpleNN) -> list[McnLayer]:
    """The file's layers renamed to ``net``'s names, after checking types, filter shapes and geometry.

    A file cut after some layer (e.g. only the convolutional part) gives those layers only. Strides,
    padding and LRN parameters are the file's own.
    """
    why = _mismatch(net.layers, net_file.layers)
    if why:
        other = next((k for k, n in PAPER_NETS.items()
                      if k != net.key and _mismatch(n.layers, net_file.layers) is None), None)
        hint = f"; it looks like {PAPER_NETS[other].file} (--model {other})" if other else ""
        raise PreimageError(f"{net_file.source} is not MatConvNet's {net.file} ({net.key}): {why}{hint}")
    layers = [replace(g, name=e.name) for e, g in zip(net.layers, net_file.layers, strict=False)]
    size = net_file.image_size or net.size
    sizes = mcn.output_sizes(layers, size)
    for i, (ly, (h, w)) in enumerate(zip(layers, sizes, strict=True)):
        if ly.name == "fc6" and i > 0 and sizes[i - 1] != ly.shape[:2]:
            # fc6 must see its whole input at once; otherwise the file's pool padding was misread
            raise PreimageError(f"{net_file.source}: at {size[0]}×{size[1]} {layers[i - 1].name} gives "
                                f"{sizes[i - 1][0]}×{sizes[i - 1][1]} but fc6 filters are "
                                f"{ly.shape[0]}×{ly.shape[1]}")
        if h < 1 or w < 1:
            raise PreimageError(f"{net_file.source}: layer {ly.name} has no output at the input size "
                                f"{size[0]}×{size[1]}")
    return layers


# ---------------------------------------------------------------------------------------------------------
# torchvision's VGG-16 in the paper's layout
# ---------------------------------------------------------------------------------------------------------


def from_torchvision_vgg16(sd: dict[str, torch.Tensor],
                           source: str = "the state dict") -> dict[str, torch.Tensor]:
    """Map a torchvision ``vgg16`` state dict (``features.N.*``, ``classifier.N.*``) onto the paper VGG-16.

    The 13 convolutions keep their weights; the three Linear layers become 7×7 and 1×1 convolutions
    (torchvision flattens pool5 as C×H×W, so an ``out×25088`` matrix is ``out×512×7×7``).
    """
    def order(key: str) -> tuple[int, int]:
        part, idx, _ = key.split(".")
        return (0 if part == "features" else 1, int(idx))

    keys = [k for k in sd if len(k.split(".")) == 3 and k.split(".")[0] in ("features", "classifier")
            and k.split(".")[1].isdigit() and k.split(".")[2] in ("weight", "bias")]
    if len(keys) != len(sd) or not keys:
        extra = sorted(set(sd) - set(keys))[:3]
        raise PreimageError(f"{source} is not a torchvision vgg16 state dict (unexpected keys, e.g. "
                            f"{', '.join(extra) or 'none'})")
    weights = sorted((k for k in keys if k.endswith(".weight")), key=order)
    convs = [ly for ly in PAPER_NETS["vgg16"].layers if ly.type == "conv"]
    if len(weights) != len(convs):
        raise PreimageError(f"{source} has {len(weights)} weight tensors, torchvision vgg16 has {len(convs)}")
    out: dict[str, torch.Tensor] = {}
    for key, ly in zip(weights, convs, strict=True):
        kh, kw, cin, cout = ly.shape
        w, b = sd[key], sd.get(key[: -len("weight")] + "bias")
        if b is None or w.numel() != cout * cin * kh * kw or b.numel() != cout or w.shape[0] != cout:
            raise PreimageError(f"{source}: '{key}' has shape {tuple(w.shape)}, {ly.name} needs "
                                f"{(cout, cin, kh, kw)} (is it vgg16?)")
        out[f"{ly.name}.weight"] = w.reshape(cout, cin, kh, kw)
        out[f"{ly.name}.bias"] = b.reshape(cout)
    return out


# ---------------------------------------------------------------------------------------------------------
# Registry builders
# ---------------------------------------------------------------------------------------------------------


def _spec(net: PaperNet, layers: list[McnLayer], module: nn.Module, mean: tuple[float, ...],
          std: tuple[float, ...], size: tuple[int, int], weights_id: str) -> ModelSpec:
    names = {ly.name for ly in layers}
    return ModelSpec(net.key, module, mean=tuple(mean), std=tuple(std), input_size=size,
                     layer_aliases=layer_aliases(layers), weights_id=weights_id,
                     classifier_layer="fc8" if "fc8" in names else None)


def _mcn_units(mean255: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # MatConvNet networks take 0–255 RGB minus the mean colour: the paper units themselves
    return tuple(m / 255.0 for m in mean255), (1.0 / 255.0,) * 3


def _from_mat(net: PaperNet, path: str) -> ModelSpec:
    net_file = mcn.read_simplenn(path)
    layers = _match(net, net_file)
    module = mcn.build_sequential(layers, init=False)
    mcn.load_weights(module, layers, path)
    mean, std = _mcn_units(net_file.mean_colour or net.mean)
    return _spec(net, layers, module, mean, std, net_file.image_size or net.size,
                 f"matconvnet:{mcn.file_sha1(path)}")


def _check(key: str, weights: str | None, random_weights: bool, kw: dict[str, object]) -> None:
    if kw:
        raise PreimageError(f"unexpected options for {key}: {', '.join(sorted(kw))}")
    if weights and random_weights:
        raise PreimageError("--weights and --random-weights exclude each other")


def _build(key: str, weights: str | None, random_weights: bool, kw: dict[str, object]) -> ModelSpec:
    net = PAPER_NETS[key]
    _check(key, weights, random_weights, kw)
    if not weights and not random_weights:
        raise PreimageError(f"{key} needs its MatConvNet weights: --weights {net.file}.mat "
                            "(vlfeat.org/matconvnet/models), or --random-weights")
    if weights and Path(weights).suffix.lower() == ".mat":
        return _from_mat(net, weights)
    layers = list(net.layers)
    mean, std = _mcn_units(net.mean)
    if random_weights:
        return _spec(net, layers, mcn.build_sequential(layers), mean, std, net.size, "random")
    # a state dict saved from this very module (e.g. a converted .mat): names match one to one
    sd = load_state_file(weights)
    module = mcn.build_sequential(layers, init=False)
    load_into(module, sd, weights)
    return _spec(net, layers, module, mean, std, net.size, f"file:{Path(weights).resolve()}")


@register_model("caffenet", "CaffeNet (MatConvNet imagenet-caffe-ref: pool before LRN); --weights FILE.mat")
def caffenet(weights: str | None = None, random_weights: bool = False, **kw: object) -> ModelSpec:
    """CaffeNet, MatConvNet's ``imagenet-caffe-ref`` (227×227; layers conv1 … fc8, aliases 1 … 20)."""
    return _build("caffenet", weights, random_weights, kw)


@register_model("alexnet-caffe",
                "Caffe AlexNet (MatConvNet imagenet-caffe-alex: LRN before pool); --weights FILE.mat")
def alexnet_caffe(weights: str | None = None, random_weights: bool = False, **kw: object) -> ModelSpec:
    """Caffe's AlexNet, MatConvNet's ``imagenet-caffe-alex`` (227×227; conv1 … fc8, aliases 1 … 20)."""
    return _build("alexnet-caffe", weights, random_weights, kw)


@register_model("vgg-m", "VGG-M (MatConvNet imagenet-vgg-m, Chatfield et al. 2014); --weights FILE.mat")
def vgg_m(weights: str | None = None, random_weights: bool = False, **kw: object) -> ModelSpec:
    """VGG-M, MatConvNet's ``imagenet-vgg-m`` (224×224; conv1 … fc8, aliases 1 … 20)."""
    return _build("vgg-m", weights, random_weights, kw)


@register_model("vgg16",
                "VGG-16 in MatConvNet's layout (conv1_1 … fc8): FILE.mat, torchvision weights, or random")
def vgg16(weights: str | None = None, random_weights: bool = False, **kw: object) -> ModelSpec:
    """VGG-16 as ``imagenet-vgg-verydeep-16`` (224×224; conv1_1 … fc8, aliases 1 … 36).

    Weights: a MatConvNet ``.mat``; a torchvision ``vgg16`` state dict file; or, with neither,
    torchvision's pretrained download. Torchvision weights keep torchvision's input scaling; a state dict
    saved from this module itself is taken as MatConvNet's (0–255 minus the VGG mean colour).
    """
    net = PAPER_NETS["vgg16"]
    _check("vgg16", weights, random_weights, kw)
    if random_weights or (weights and Path(weights).suffix.lower() == ".mat"):
        return _build("vgg16", weights, random_weights, {})
    layers = list(net.layers)
    if weights:
        sd = load_state_file(weights)
        module = mcn.build_sequential(layers, init=False)
        wid = f"file:{Path(weights).resolve()}"
        if any(k.startswith(("features.", "classifier.")) for k in sd):
            load_into(module, from_torchvision_vgg16(sd, weights), weights)
            return _spec(net, layers, module, IMAGENET_MEAN, IMAGENET_STD, net.size, wid)
        load_into(module, sd, weights)
        mean, std = _mcn_units(net.mean)
        return _spec(net, layers, module, mean, std, net.size, wid)
    sd, enum = pretrained_torchvision("vgg16")
    module = mcn.build_sequential(layers, init=False)
    load_into(module, from_torchvision_vgg16(sd, f"torchvision {enum}"), f"torchvision {enum}")
    return _spec(net, layers, module, IMAGENET_MEAN, IMAGENET_STD, net.size, f"torchvision:{enum}")
