"""MatConvNet ``simplenn`` models: read the ``.mat`` files and run their layers with MatConvNet's semantics.

A simplenn file holds ``layers`` (a cell array of structs: ``type``, ``name``, ``weights = {filters, biases}``
or the older ``filters``/``biases`` fields, ``stride``, ``pad``, ``pool``, ``method``, ``param``) and
``meta.normalization`` (older files: a top-level ``normalization``) with ``averageImage`` and ``imageSize``.
Version-5 files (MATLAB's default ``-v7``) are read with SciPy, version-7.3 files (HDF5) with h5py; both
decode to the same plain Python values (dicts, lists, str, numpy arrays in MATLAB's dimension order).

MatConvNet conventions kept here: filters are H×W×Cin/groups×Cout (correlation, like torch), padding is
[top bottom left right], max pooling ignores the padded cells, and the cross-channel normalization is
y = x / (κ + α·Σ_{q∈Q(k)} x_q²)^β with Q(k) = [k − ⌊(N−1)/2⌋, k + ⌈(N−1)/2⌉] (Caffe's α is N times larger).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError

__all__ = ["LRN", "MaxPool2d", "PadConv2d", "McnLayer", "SimpleNN", "build_sequential", "file_sha1",
           "load_weights", "output_sizes", "read_mat", "read_simplenn"]


# ---------------------------------------------------------------------------------------------------------
# Layers with MatConvNet semantics
# ---------------------------------------------------------------------------------------------------------


class LRN(nn.Module):
    """Cross-channel local response normalization with MatConvNet's ``param = [N, κ, α, β]``.

    ``y_k = x_k / (κ + α·Σ_{q∈Q(k)} x_q²)^β``, channels outside ``0..C−1`` count as zero. torch's
    ``nn.LocalResponseNorm`` averages instead of summing (its α is N·α) and centres even windows one
    channel lower, hence this module. Input and output: N×C×H×W.
    """

    def __init__(self, size: int, kappa: float, alpha: float, beta: float) -> None:
        super().__init__()
        if size < 1:
            raise PreimageError(f"normalization window size must be positive, got {size}")
        self.size, self.kappa, self.alpha, self.beta = int(size), float(kappa), float(alpha), float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = (self.size - 1) // 2, self.size // 2  # ⌊(N−1)/2⌋ channels before k, ⌈(N−1)/2⌉ after
        sq = F.pad(x.pow(2).unsqueeze(1), (0, 0, 0, 0, lo, hi))
        window_sum = F.avg_pool3d(sq, (self.size, 1, 1), stride=1).squeeze(1) * self.size
        return x / (self.kappa + self.alpha * window_sum).pow(self.beta)

    def extra_repr(self) -> str:
        return f"N={self.size}, kappa={self.kappa}, alpha={self.alpha:g}, beta={self.beta}"


class MaxPool2d(nn.MaxPool2d):
    """Max pooling with MatConvNet's padding ``(top, bottom, left, right)``; padded cells never win.

    The inherited ``padding``/``ceil_mode`` attributes hold the closest torch pooling (exact for the
    bottom/right padding MatConvNet's Caffe importer adds to emulate Caffe's ceil rounding). Tools that
    rebuild pools from those attributes (the geometry measurement turns max pools into average pools)
    then see the same windows; the forward pass always applies the exact padding.
    """

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int]) -> None:
        t, b, left, r = pad
        kh, kw = kernel
        ceil = b > t or r > left
        super().__init__(kernel, stride, padding=(min(t, kh // 2), min(left, kw // 2)), ceil_mode=ceil)
        self.pad = (int(t), int(b), int(left), int(r))
        # torch's own padding is -inf padding too, usable when symmetric and at most half the window
        self._native = t == b and left == r and t <= kh // 2 and left <= kw // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._native:
            return super().forward(x)
        t, b, left, r = self.pad
        x = F.pad(x, (left, r, t, b), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, pad(t,b,l,r)={self.pad}"


class PadConv2d(nn.Conv2d):
    """A convolution with zero padding ``(top, bottom, left, right)`` that may be asymmetric."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int], groups: int = 1, dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, dilation=dilation)
        self.pad = tuple(int(p) for p in pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, left, r = self.pad
        return super().forward(F.pad(x, (left, r, t, b)))


# ---------------------------------------------------------------------------------------------------------
# Network description
# ---------------------------------------------------------------------------------------------------------


@dataclass
class McnLayer:
    """One simplenn layer. ``type``: conv | relu | lrn | pool. ``shape``: conv filters as MatConvNet stores
    them, H×W×Cin/groups×Cout. ``filters``/``biases``: the file's arrays (None for an architecture only)."""

    name: str
    type: str
    shape: tuple[int, int, int, int] | None = None
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    pool: tuple[int, int] | None = None
    method: str = "max"
    param: tuple[float, float, float, float] | None = None  # [N κ α β]
    leak: float = 0.0
    dilate: tuple[int, int] = (1, 1)
    filters: np.ndarray | None = field(default=None, repr=False)
    biases: np.ndarray | None = field(default=None, repr=False)


@dataclass
class SimpleNN:
    """A parsed simplenn file: layers in order (softmax and dropout dropped) and normalization metadata."""

    layers: list[McnLayer]
    mean_colour: tuple[float, float, float] | None  # spatial mean of averageImage, 0–255 RGB
    image_size: tuple[int, int] | None
    source: str
    dropped: list[str] = field(default_factory=list)  # names of layers left out (prob, dropout)


def output_sizes(layers: list[McnLayer], size: tuple[int, int]) -> list[tuple[int, int]]:
    """Spatial output size (H, W) of every layer for an input of ``size``, by MatConvNet's floor rule."""
    h, w = size
    out = []
    for ly in layers:
        if ly.type in ("conv", "pool"):
            kh, kw = (ly.shape[:2] if ly.type == "conv" else ly.pool)
            dh, dw = ly.dilate if ly.type == "conv" else (1, 1)
            t, b, left, r = ly.pad
            h = (h + t + b - (dh * (kh - 1) + 1)) // ly.stride[0] + 1
            w = (w + left + r - (dw * (kw - 1) + 1)) // ly.stride[1] + 1
        out.append((h, w))
    return out


def build_sequential(layers: list[McnLayer], in_channels: int = 3, init: bool = True) -> nn.Sequential:
    """Modules for ``layers`` named by the layers' names, with torch's default init.

    Grouped convolutions are inferred as MatConvNet does: groups = input channels / filter depth.
    ``init=False`` leaves the weights uninitialized, for callers that load every tensor next (drawing
    random numbers for VGG-16's 138M weights takes seconds).
    """
    if not init:
        with torch.device("meta"):
            net = build_sequential(layers, in_channels)
        return net.to_empty(device="cpu")
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    c = in_channels
    for ly in layers:
        if ly.type == "conv":
            kh, kw, cin, cout = ly.shape
            if cin <= 0 or c % cin:
                raise PreimageError(f"layer {ly.name}: filters of depth {cin} do not divide the {c} input "
                                    "channels")
            groups = c // cin
            if cout % groups:
                raise PreimageError(f"layer {ly.name}: {cout} filters do not split into {groups} groups")
            t, b, left, r = ly.pad
            if t == b and left == r:
                mods[ly.name] = nn.Conv2d(c, cout, (kh, kw), ly.stride, padding=(t, left), groups=groups,
                                          dilation=ly.dilate)
            else:
                mods[ly.name] = PadConv2d(c, cout, (kh, kw), ly.stride, ly.pad, groups, ly.dilate)
            c = cout
        elif ly.type == "relu":
            mods[ly.name] = nn.LeakyReLU(ly.leak) if ly.leak else nn.ReLU()
        elif ly.type == "lrn":
            n, kappa, alpha, beta = ly.param
            mods[ly.name] = LRN(int(n), kappa, alpha, beta)
        elif ly.type == "pool":
            if ly.method != "max":
                raise PreimageError(f"layer {ly.name}: only max pooling is supported, not '{ly.method}'")
            mods[ly.name] = MaxPool2d(ly.pool, ly.stride, ly.pad)
        else:
            raise PreimageError(f"layer {ly.name}: unsupported MatConvNet layer type '{ly.type}'")
    return nn.Sequential(mods)


def load_weights(net: nn.Sequential, layers: list[McnLayer], source: str) -> None:
    """Copy each conv layer's filters (H×W×Cin×Cout → Cout×Cin×H×W) and biases into ``net``."""
    mods = dict(net.named_children())
    with torch.no_grad():
        for ly in layers:
            if ly.type != "conv":
                continue
            conv = mods[ly.name]
            f = np.asarray(ly.filters, dtype=np.float32)
            # copy through a strided view: no temporary the size of fc6 (400 MB for VGG-16)
            w = torch.from_numpy(f).permute(3, 2, 0, 1)
            if tuple(w.shape) != tuple(conv.weight.shape):
                co, ci, kh, kw = conv.weight.shape
                raise PreimageError(f"weights in {source} do not fit layer {ly.name}: filters "
                                    f"{_dims(f.shape)}, the model needs {_dims((kh, kw, ci, co))}")
            conv.weight.copy_(w)
            bias = np.zeros(w.shape[0], np.float32) if ly.biases is None else np.asarray(ly.biases,
                                                                                         np.float32)
            if bias.size != w.shape[0]:
                raise PreimageError(f"weights in {source} do not fit layer {ly.name}: {bias.size} biases for "
                                    f"{w.shape[0]} filters")
            conv.bias.copy_(torch.from_numpy(bias.reshape(-1)))


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(str(int(s)) for s in shape)


# ---------------------------------------------------------------------------------------------------------
# Reading .mat files
# ---------------------------------------------------------------------------------------------------------


def file_sha1(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-1 of a file's bytes (hex), to identify a weights file independently of its path."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_mat(path: str | Path, variables: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Top-level variables of a MATLAB file (v5 or v7.3) as plain Python values.

    Structs become dicts, cell arrays lists (column-major order), char arrays str, numeric arrays numpy
    arrays in MATLAB's dimension order with MATLAB's shape (at least 2-D; trailing singletons dropped).
    """
    p = Path(path)
    if not p.is_file():
        raise PreimageError(f"weights file not found: {path}")
    with open(p, "rb") as fh:
        head = fh.read(128)
    import h5py

    if head.startswith(b"MATLAB 7.3") or h5py.is_hdf5(str(p)):
        return _read_hdf5(p, variables)
    if not head.startswith(b"MATLAB 5.0"):
        raise PreimageError(f"{path} is not a MATLAB .mat file")
    import scipy.io

    try:
        raw = scipy.io.loadmat(str(p), squeeze_me=False, struct_as_record=False, chars_as_strings=True,
                               variable_names=list(variables) if variables else None)
    except Exception as e:  # noqa: BLE001 - zlib, struct and value errors all mean a damaged file
        raise PreimageError(f"cannot read {path}: truncated or corrupt .mat file "
                            f"({e.__class__.__name__}: {_short(e)})") from None
    return {k: _from_scipy(v) for k, v in raw.items() if not k.startswith("__")}


def _short(e: Exception, n: int = 80) -> str:
    s = " ".join(str(e).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _from_scipy(v: Any) -> Any:
    from scipy.io.matlab import mat_struct

    if isinstance(v, mat_struct):
        return {f: _from_scipy(getattr(v, f)) for f in v._fieldnames}
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            items = list(v.ravel(order="F"))
            if items and all(isinstance(i, mat_struct) for i in items):  # a struct array
                dicts = [_from_scipy(i) for i in items]
                return dicts[0] if len(dicts) == 1 else dicts
            return [_from_scipy(i) for i in items]  # a cell array: every element is an array
        if v.dtype.kind == "U":
            strings = [str(s) for s in v.ravel(order="F")]
            return strings[0] if len(strings) == 1 else ("" if not strings else strings)
        return v
    return v


def _read_hdf5(p: Path, variables: tuple[str, ...] | None) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            names = [k for k in f if not k.startswith("#")]
            return {k: _from_h5(f, f[k]) for k in names if variables is None or k in variables}
    except PreimageError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError on damaged files
        raise PreimageError(f"cannot read {p}: truncated or corrupt MATLAB v7.3 file "
                            f"({e.__class__.__name__}: {_short(e)})") from None


def _attr(obj: Any, name: str) -> str:
    a = obj.attrs.get(name)
    if a is None:
        return ""
    return a.decode() if isinstance(a, bytes) else str(a)


def _from_h5(f: Any, obj: Any) -> Any:
    import h5py

    cls = _attr(obj, "MATLAB_class")
    if isinstance(obj, h5py.Group):
        return {k: _from_h5(f, obj[k]) for k in obj}
    data = obj[()]
    if obj.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else ([] if cls == "cell" else np.zeros((0, 0)))
    if obj.dtype == h5py.ref_dtype or cls == "cell":
        # HDF5 is row-major: MATLAB's dims come reversed, so the C-order walk is MATLAB's column-major order
        items = [_from_h5(f, f[ref]) for ref in np.asarray(data).ravel(order="C")]
        if cls == "cell":
            return items
        return items[0] if len(items) == 1 else items  # a field of a struct array
    arr = np.asarray(data).T
    if cls == "char":
        return "".join(chr(int(c)) for c in arr.ravel(order="F"))
    if cls == "logical":
        return arr.astype(bool)
    return arr


# ---------------------------------------------------------------------------------------------------------
# Parsing simplenn
# ---------------------------------------------------------------------------------------------------------

_SKIP = ("softmax", "softmaxloss", "dropout")
_TYPES = {"conv": "conv", "relu": "relu", "lrn": "lrn", "normalize": "lrn", "pool": "pool"}


def read_simplenn(path: str | Path) -> SimpleNN:
    """Parse a MatConvNet simplenn ``.mat`` file into layers (with weights) and normalization metadata."""
    src = str(path)
    top = read_mat(path, ("layers", "meta", "normalization", "net", "params", "vars"))
    if "net" in top and isinstance(top["net"], dict) and "layers" not in top:
        top = top["net"]  # saved as save(file, 'net') instead of save(file, '-struct', 'net')
    if "params" in top and "vars" in top:
        raise PreimageError(f"{src} is a MatConvNet DagNN model; these networks need the simplenn file")
    if "layers" not in top:
        raise PreimageError(f"{src} has no 'layers' variable: not a MatConvNet simplenn model")
    cells = top["layers"]
    if isinstance(cells, dict):
        cells = [cells]
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise PreimageError(f"{src}: 'layers' is not a cell array of structs")
    layers: list[McnLayer] = []
    dropped: list[str] = []
    for i, cell in enumerate(cells, start=1):
        name = cell.get("name") if isinstance(cell.get("name"), str) else f"layer{i}"
        if "type" not in cell or not isinstance(cell["type"], str):
            raise PreimageError(f"{src}: layer {i} ({name}) has no 'type' field")
        t = cell["type"].lower()
        if t in _SKIP:
            dropped.append(name)
            continue
        if t not in _TYPES:
            raise PreimageError(f"{src}: layer {i} ({name}) has unsupported type '{cell['type']}'")
        layers.append(_parse_layer(cell, _TYPES[t], name, src))
    meta = top.get("meta") if isinstance(top.get("meta"), dict) else {}
    norm = meta.get("normalization", top.get("normalization"))
    norm = norm if isinstance(norm, dict) else {}
    return SimpleNN(layers, _mean_colour(norm.get("averageImage")), _image_size(norm.get("imageSize")), src,
                    dropped)


def _ints(v: Any, n: int, what: str, layer: str, src: str, default: tuple[int, ...] | None = None) -> tuple:
    if v is None or (isinstance(v, np.ndarray) and v.size == 0):
        if default is None:
            raise PreimageError(f"{src}: layer {layer} has no '{what}' field")
        return default
    a = np.asarray(v, dtype=np.float64).ravel(order="F")
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n or not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or np.any(a < 0):
        raise PreimageError(f"{src}: layer {layer} has an invalid '{what}' {a.tolist()} (expected {n} "
                            "non-negative integers)")
    return tuple(int(x) for x in a)


def _parse_layer(cell: dict[str, Any], t: str, name: str, src: str) -> McnLayer:
    if t == "relu":
        leak = cell.get("leak")
        return McnLayer(name, t, leak=float(np.asarray(leak).ravel()[0]) if _nonempty(leak) else 0.0)
    if t == "lrn":
        p = cell.get("param")
        if not _nonempty(p):
            p = np.array([5, 1, 1e-4 / 5, 0.75])  # vl_simplenn_tidy's default
        p = np.asarray(p, dtype=np.float64).ravel()
        if p.size != 4:
            raise PreimageError(f"{src}: layer {name} has a 'param' of {p.size} numbers, expected "
                                "[N kappa alpha beta]")
        return McnLayer(name, t, param=(float(p[0]), float(p[1]), float(p[2]), float(p[3])))
    stride = _ints(cell.get("stride"), 2, "stride", name, src, (1, 1))
    pad = _ints(cell.get("pad"), 4, "pad", name, src, (0, 0, 0, 0))
    if min(stride) < 1:
        raise PreimageError(f"{src}: layer {name} has a zero stride")
    if t == "pool":
        pool = _ints(cell.get("pool"), 2, "pool", name, src)
        method = cell.get("method", "max")
        return McnLayer(name, t, stride=stride, pad=pad, pool=pool,
                        method=method.lower() if isinstance(method, str) else "max")
    # conv
    if "weights" in cell:
        w = cell["weights"]
        if not isinstance(w, list) or not w:
            raise PreimageError(f"{src}: layer {name} has a malformed 'weights' field (expected {{filters, "
                                "biases}})")
        filters, biases = w[0], (w[1] if len(w) > 1 else None)
    elif "filters" in cell:
        filters, biases = cell["filters"], cell.get("biases")
    else:
        raise PreimageError(f"{src}: conv layer {name} has no 'weights' (or 'filters') field")
    if not isinstance(filters, np.ndarray) or filters.dtype.kind not in "fiu" or not 2 <= filters.ndim <= 4:
        raise PreimageError(f"{src}: conv layer {name} has no numeric filter array")
    f = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops trailing singleton dims
    b = biases if _nonempty(biases) else None
    if b is not None and (not isinstance(b, np.ndarray) or b.dtype.kind not in "fiu"):
        raise PreimageError(f"{src}: conv layer {name} has non-numeric biases")
    dilate = _ints(cell.get("dilate"), 2, "dilate", name, src, (1, 1))
    return McnLayer(name, "conv", shape=tuple(int(s) for s in f.shape), stride=stride, pad=pad,
                    dilate=tuple(max(d, 1) for d in dilate), filters=f, biases=b)


def _nonempty(v: Any) -> bool:
    return v is not None and not (isinstance(v, (np.ndarray, list, str)) and len(np.atleast_1d(v)) == 0)


def _mean_colour(avg: Any) -> tuple[float, float, float] | None:
    if not isinstance(avg, np.ndarray) or avg.dtype.kind not in "fiu":
        return None
    a = np.asarray(avg, dtype=np.float64)
    if a.size == 3:
        return tuple(float(x) for x in a.ravel())
    if a.ndim == 3 and a.shape[2] == 3:
        # the IJCV scripts replace the mean image by its spatial mean (docs/paper-notes.md §1.1)
        return tuple(float(x) for x in a.mean(axis=(0, 1)))
    return None  # e.g. the importer's [0 0] placeholder when no average was given


def _image_size(sz: Any) -> tuple[int, int] | None:
    if not isinstance(sz, np.ndarray) or sz.size < 2:
        return None
    h, w = (float(x) for x in sz.ravel()[:2])
    if h < 1 or w < 1 or not (math.isfinite(h) and math.isfinite(w)):
        return None
    return int(h), int(w)
