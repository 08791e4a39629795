"""The paper's networks: MatConvNet simplenn files (v5 and v7.3), MatConvNet's layer semantics, geometry.

The .mat files here are written in the layout MatConvNet saves (a cell array of layer structs with
``weights = {filters, biases}``, ``meta.normalization``; older files: ``filters``/``biases``,
``normalize`` and a top-level ``normalization``) with small random weights, and the networks built from
them are compared with a reference computed from the raw arrays by MatConvNet's formulas.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F

from preimage.errors import PreimageError
from preimage.representations import Representation, load, measure_geometry
from preimage.representations.matconvnet import LRN, MaxPool2d, build_sequential
from preimage.representations.paper_nets import PAPER_NETS, architecture, layer_aliases

NETS = ("caffenet", "alexnet-caffe", "vgg-m", "vgg16")

# ---------------------------------------------------------------------------------------------------------
# Writing simplenn files
# ---------------------------------------------------------------------------------------------------------


def _row(*v: float) -> np.ndarray:
    return np.array([v], dtype=np.float64)  # MATLAB 1×n double


def _cell(items: list) -> np.ndarray:
    c = np.empty((1, len(items)), dtype=object)
    for i, it in enumerate(items):
        c[0, i] = it
    return c


def mcn_layers(name: str, upto: str | None, rng: np.random.Generator, old: bool = False) -> list[dict]:
    """Layer structs of network ``name`` up to layer ``upto``, random weights, as MatConvNet stores them."""
    cells = []
    for ly in architecture(name):
        d: dict = {"name": ly.name, "type": ly.type, "precious": False}
        if ly.type == "conv":
            kh, kw, cin, cout = ly.shape
            f = rng.standard_normal(ly.shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / (kh * kw * cin)))
            b = rng.standard_normal((1, cout), dtype=np.float32) * np.float32(0.1)
            if old:
                d.update(filters=f, biases=b)
            else:
                d.update(weights=_cell([f, b]), learningRate=_row(1, 2), weightDecay=_row(1, 0),
                         dilate=_row(1), opts=np.empty((0, 0), dtype=object))
            d.update(stride=_row(*ly.stride), pad=_row(*ly.pad))
        elif ly.type == "pool":
            d.update(method="max", pool=_row(*ly.pool), stride=_row(*ly.stride), pad=_row(*ly.pad),
                     opts=np.empty((0, 0), dtype=object))
        elif ly.type == "lrn":
            d.update(type="normalize" if old else "lrn", param=_row(*ly.param))
        elif ly.type == "relu":
            d.update(leak=0.0)
        cells.append(d)
        if ly.name == upto:
            break
    else:
        cells.append({"name": "prob", "type": "softmax", "precious": False})
    return cells


def mean_image(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    base = np.array([122.7, 116.7, 104.0], np.float32)
    return (base + rng.standard_normal((*size, 3)).astype(np.float32) * 5).astype(np.float32)


def save_simplenn(path: Path, cells: list[dict], avg: np.ndarray, size: tuple[int, int], old: bool = False,
                  compress: bool = True) -> Path:
    """A v5 file as MATLAB's ``save(file, '-struct', 'net')`` writes it (or import-caffe.py's layout)."""
    norm = {"averageImage": avg, "imageSize": _row(size[0], size[1], 3), "keepAspect": False,
            "border": _row(29, 29), "interpolation": "bicubic"}
    classes = {"name": _cell(["n01440764", "n01443537"]), "description": _cell(["tench", "goldfish"])}
    if old:
        top = {"layers": _cell(cells), "normalization": norm, "classes": classes}
    else:
        top = {"layers": _cell(cells),
               "meta": {"inputs": {"name": "data", "size": _row(size[0], size[1], 3, 10)},
                        "classes": classes, "normalization": norm}}
    scipy.io.savemat(str(path), top, do_compression=compress, oned_as="row")
    return path


def save_mat73(path: Path, top: dict) -> Path:
    """A MATLAB v7.3 (HDF5) file: structs as groups, cells as reference datasets into ``#refs#``, arrays
    with MATLAB's dimensions reversed, char as uint16, a 512-byte header in the user block."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        count = iter(range(10**9))

        def put(parent: h5py.Group, name: str, v: object) -> h5py.HLObject:
            if isinstance(v, dict):
                g = parent.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_("struct")
                for k, x in v.items():
                    put(g, k, x)
                return g
            if isinstance(v, np.ndarray) and v.dtype == object:
                items = [put(refs, f"r{next(count)}", x).ref for x in v.ravel(order="F")]
                if not items:
                    ds = parent.create_dataset(name, data=np.array(v.shape, np.uint64))
                    ds.attrs["MATLAB_empty"] = np.uint8(1)
                else:
                    ds = parent.create_dataset(name, data=np.array(items, dtype=h5py.ref_dtype).reshape(
                        v.shape[::-1]))
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
                return ds
            if isinstance(v, str):
                ds = parent.create_dataset(name, data=np.array([[ord(c)] for c in v], np.uint16))
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
                return ds
            if isinstance(v, bool):
                ds = parent.create_dataset(name, data=np.array([[int(v)]], np.uint8))
                ds.attrs["MATLAB_class"] = np.bytes_("logical")
                return ds
            a = np.asarray(v)
            a = a.reshape(1, 1) if a.ndim == 0 else a
            ds = parent.create_dataset(name, data=a.T)
            ds.attrs["MATLAB_class"] = np.bytes_("single" if a.dtype == np.float32 else "double")
            return ds

        for k, x in top.items():
            put(f, k, x)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema "
                 b"1.00 .".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    return path


# ---------------------------------------------------------------------------------------------------------
# Reference: MatConvNet's formulas on the raw arrays, float64
# ---------------------------------------------------------------------------------------------------------


def reference(cells: list[dict], x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    for d in cells:
        t = d["type"]
        if t == "conv":
            f, b = (d["weights"][0, 0], d["weights"][0, 1]) if "weights" in d else (d["filters"], d["biases"])
            w = torch.from_numpy(np.asarray(f, np.float64)).permute(3, 2, 0, 1)  # H×W×Cin×Cout → Cout×Cin×H×W
            top, bot, left, right = (int(p) for p in d["pad"].ravel())
            bias = torch.from_numpy(np.asarray(b, np.float64)).ravel()
            x = F.conv2d(F.pad(x, (left, right, top, bot)), w, bias, stride=int(d["stride"].ravel()[0]),
                         groups=x.shape[1] // w.shape[1])
        elif t == "relu":
            x = x.clamp_min(0)
        elif t in ("lrn", "normalize"):
            n, kappa, alpha, beta = d["param"].ravel()
            c = x.shape[1]
            lo, hi = math.floor((n - 1) / 2), math.ceil((n - 1) / 2)
            s = torch.stack([(x[:, max(0, k - lo): min(c - 1, k + hi) + 1] ** 2).sum(1) for k in range(c)], 1)
            x = x / (kappa + alpha * s) ** beta
        elif t == "pool":
            top, bot, left, right = (int(p) for p in d["pad"].ravel())
            kh, kw = (int(p) for p in d["pool"].ravel())
            s = int(d["stride"].ravel()[0])
            xp = F.pad(x, (left, right, top, bot), value=float("-inf"))  # padding never wins the max
            x = xp.unfold(2, kh, s).unfold(3, kw, s).amax((-1, -2))
    return x


def assert_matches(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------------------
# MatConvNet layers
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 4, 1])
def test_lrn_is_matconvnets_normalization(n: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 4, dtype=torch.float64) * 30
    kappa, alpha, beta = 2.0, 1e-4, 0.75
    y = LRN(n, kappa, alpha, beta)(x)
    lo, hi = (n - 1) // 2, math.ceil((n - 1) / 2)  # Q(k) = [k − ⌊(N−1)/2⌋, k + ⌈(N−1)/2⌉]
    for k in range(7):
        window = [q for q in range(k - lo, k + hi + 1) if 0 <= q < 7]
        expect = x[:, k] / (kappa + alpha * sum(x[:, q] ** 2 for q in window)) ** beta
        torch.testing.assert_close(y[:, k], expect)
    if n % 2:  # torch's LRN averages over the window: its alpha is N times MatConvNet's
        torch.testing.assert_close(y, torch.nn.LocalResponseNorm(n, alpha * n, beta, kappa)(x))


def test_max_pool_padding_is_asymmetric_and_never_wins() -> None:
    torch.manual_seed(0)
    x = -torch.rand(1, 2, 26, 26) - 1  # all negative: a zero-padded pool would output zeros at the border
    caffe = MaxPool2d((3, 3), (2, 2), (0, 1, 0, 1))  # MatConvNet's emulation of Caffe's ceil rounding
    y = caffe(x)
    assert y.shape == (1, 2, 13, 13)
    torch.testing.assert_close(y, F.max_pool2d(x, 3, 2, ceil_mode=True))
    assert float(y.max()) < -1
    odd = MaxPool2d((3, 2), (2, 1), (2, 0, 1, 0))
    xp = F.pad(x, (1, 0, 2, 0), value=float("-inf"))
    torch.testing.assert_close(odd(x), xp.unfold(2, 3, 2).unfold(3, 2, 1).amax((-1, -2)))
    # the geometry measurement rebuilds pools from torch's attributes: those give the same windows
    rebuilt = torch.nn.AvgPool2d(caffe.kernel_size, caffe.stride, caffe.padding, ceil_mode=caffe.ceil_mode)
    assert rebuilt(x).shape == y.shape


# ---------------------------------------------------------------------------------------------------------
# Loading MatConvNet files
# ---------------------------------------------------------------------------------------------------------


def test_caffenet_mat_matches_matconvnet_formulas(tmp_path: Path, rng: np.random.Generator) -> None:
    cells = mcn_layers("caffenet", "pool5", rng)  # the conv part, as net.layers(16:end) = [] leaves it
    avg = mean_image((227, 227), rng)
    path = save_simplenn(tmp_path / "imagenet-caffe-ref.mat", cells, avg, (227, 227))
    x = torch.from_numpy(rng.standard_normal((2, 3, 99, 99)).astype(np.float32)) * 60
    rep = load("caffenet", layer="pool5", weights=str(path))
    with torch.no_grad():
        assert_matches(rep(x), reference(cells, x))
        conv5 = load("caffenet", layer="13", weights=str(path))  # MatConvNet's index of conv5
        assert conv5.layer == "conv5"
        assert_matches(conv5(x), reference(cells[:13], x))
    spec = rep.spec
    np.testing.assert_allclose(np.array(spec.mean) * 255, avg.mean((0, 1)), rtol=1e-5)  # spatial mean colour
    assert spec.std == (1 / 255,) * 3 and float(rep.scale.flatten()[0]) == pytest.approx(1.0)
    assert spec.input_size == (227, 227)
    assert spec.weights_id.startswith("matconvnet:") and len(spec.weights_id) == len("matconvnet:") + 40
    assert [n for n, _ in spec.module.named_children()] == [c["name"] for c in cells]
    assert spec.classifier_layer is None  # fc8 is not in this file


def test_alexnet_in_the_importers_old_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    # import-caffe.py's layout: filters/biases fields, 'normalize', top-level normalization, uncompressed
    cells = mcn_layers("alexnet-caffe", "pool5", rng, old=True)
    avg = np.array([[[123.0, 117.0, 104.0]]], np.float32)  # a 1×1×3 mean colour
    path = save_simplenn(tmp_path / "alex.mat", cells, avg, (227, 227), old=True, compress=False)
    rep = load("alexnet-caffe", layer="pool5", weights=str(path))
    x = torch.from_numpy(rng.standard_normal((1, 3, 83, 91)).astype(np.float32)) * 60
    with torch.no_grad():
        assert_matches(rep(x), reference(cells, x))
        norm2 = Representation(rep.spec, "7")  # AlexNet normalizes before pooling
        assert norm2.layer == "norm2"
        assert_matches(norm2(x), reference(cells[:7], x))
    assert rep.spec.mean == pytest.approx((123 / 255, 117 / 255, 104 / 255))


def test_vgg_m_mat_with_pool_padding(tmp_path: Path, rng: np.random.Generator) -> None:
    cells = mcn_layers("vgg-m", "pool2", rng)
    assert cells[7]["name"] == "pool2" and cells[7]["pad"].ravel().tolist() == [0, 1, 0, 1]
    path = save_simplenn(tmp_path / "imagenet-vgg-m.mat", cells, mean_image((224, 224), rng), (224, 224))
    x = torch.from_numpy(rng.standard_normal((1, 3, 99, 99)).astype(np.float32)) * 60  # pool2 sees 23×23
    rep = load("vgg-m", layer="pool2", weights=str(path))
    with torch.no_grad():
        assert_matches(rep(x), reference(cells, x))
    assert rep.spec.input_size == (224, 224)


def test_vgg16_mat_v73(tmp_path: Path, rng: np.random.Generator) -> None:
    cells = mcn_layers("vgg16", "pool2", rng)
    top = {"layers": _cell(cells),
           "meta": {"normalization": {"averageImage": np.array([[[123.68, 116.779, 103.939]]], np.float32),
                                      "imageSize": _row(224, 224, 3), "keepAspect": True}}}
    path = save_mat73(tmp_path / "imagenet-vgg-verydeep-16.mat", top)
    assert h5py.is_hdf5(path)
    x = torch.from_numpy(rng.standard_normal((1, 3, 40, 44)).astype(np.float32)) * 60
    rep = load("vgg16", layer="pool2", weights=str(path))
    with torch.no_grad():
        assert_matches(rep(x), reference(cells, x))
    assert rep.spec.mean == pytest.approx((123.68 / 255, 116.779 / 255, 103.939 / 255))
    assert rep.spec.layer_aliases["10"] == "pool2" and rep.spec.std == (1 / 255,) * 3


# ---------------------------------------------------------------------------------------------------------
# torchvision's VGG-16 in the paper layout
# ---------------------------------------------------------------------------------------------------------


def test_torchvision_vgg16_state_dict_gives_torchvisions_logits(tmp_path: Path) -> None:
    import torchvision

    from preimage.representations import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(0)
    with torch.device("meta"):  # torchvision's own init of 138M weights takes seconds: draw them directly
        tv = torchvision.models.vgg16(weights=None)
    tv = tv.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in tv.parameters():
            p.normal_(0, math.sqrt(2 / p[0].numel())) if p.ndim > 1 else p.uniform_(-0.1, 0.1)
    path = tmp_path / "vgg16.pth"
    torch.save(tv.state_dict(), path)
    img = torch.rand(1, 3, 224, 224) * 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expect = tv((img / 255 - mean) / std)
        del tv
        rep = load("vgg16", weights=str(path))
        got = rep(rep.to_paper_units(img))
    assert got.shape == (1, 1000, 1, 1)
    torch.testing.assert_close(got.flatten(1), expect, rtol=1e-4, atol=1e-4 * float(expect.abs().max()))
    assert rep.spec.mean == IMAGENET_MEAN and rep.spec.std == IMAGENET_STD
    assert rep.spec.weights_id == f"file:{path.resolve()}"


def test_vgg16_without_weights_offline_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*_a: object, **_k: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PreimageError,
                       match="cannot get pretrained weights for 'vgg16'.*--random-weights") as e:
        load("vgg16")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------
# Geometry: stride, receptive field and jitter per layer
# ---------------------------------------------------------------------------------------------------------

# (stride, receptive field) by hand: field_l = field_{l−1} + (k_l − 1)·stride_{l−1},
# stride_l = stride_{l−1}·s_l
# (ReLU and LRN layers, where not listed, keep the geometry of the layer before)
GEOMETRY = {
    "caffenet": {"conv1": (4, 11), "pool1": (8, 19), "norm1": (8, 19), "conv2": (8, 51), "pool2": (16, 67),
                 "norm2": (16, 67), "conv3": (16, 99), "conv4": (16, 131), "conv5": (16, 163),
                 "pool5": (32, 195), "fc6": (32, 355), "fc7": (32, 355), "fc8": (32, 355)},
    "alexnet-caffe": {"conv1": (4, 11), "norm1": (4, 11), "pool1": (8, 19), "conv2": (8, 51),
                      "norm2": (8, 51), "pool2": (16, 67), "conv3": (16, 99), "conv4": (16, 131),
                      "conv5": (16, 163), "pool5": (32, 195), "fc6": (32, 355), "fc7": (32, 355),
                      "fc8": (32, 355)},
    "vgg-m": {"conv1": (2, 7), "norm1": (2, 7), "pool1": (4, 11), "conv2": (8, 27), "norm2": (8, 27),
              "pool2": (16, 43), "conv3": (16, 75), "conv4": (16, 107), "conv5": (16, 139),
              "pool5": (32, 171), "fc6": (32, 331), "fc7": (32, 331), "fc8": (32, 331)},
    "vgg16": {"conv1_1": (1, 3), "conv1_2": (1, 5), "pool1": (2, 6), "conv2_1": (2, 10), "conv2_2": (2, 14),
              "pool2": (4, 16), "conv3_1": (4, 24), "conv3_2": (4, 32), "conv3_3": (4, 40), "pool3": (8, 44),
              "conv4_1": (8, 60), "conv4_2": (8, 76), "conv4_3": (8, 92), "pool4": (16, 100),
              "conv5_1": (16, 132), "conv5_2": (16, 164), "conv5_3": (16, 196), "pool5": (32, 212),
              "fc6": (32, 404), "fc7": (32, 404), "fc8": (32, 404)},
}

# docs/paper-notes.md §1.6: the jitter J of every layer, by group
JITTER = {
    "alexnet-caffe": {1: "conv1 relu1 norm1", 2: "pool1 conv2 relu2 norm2",
                      4: "pool2 conv3 relu3 conv4 relu4 conv5 relu5", 8: "pool5 fc6 relu6 fc7 relu7 fc8"},
    "caffenet": {1: "conv1 relu1", 2: "pool1 norm1 conv2 relu2",
                 4: "pool2 norm2 conv3 relu3 conv4 relu4 conv5 relu5", 8: "pool5 fc6 relu6 fc7 relu7 fc8"},
    "vgg-m": {1: "conv1 relu1 norm1 pool1", 2: "conv2 relu2 norm2",
              4: "pool2 conv3 relu3 conv4 relu4 conv5 relu5", 8: "pool5 fc6 relu6 fc7 relu7 fc8"},
    "vgg16": {1: "conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 relu2_1 conv2_2 relu2_2 pool2 "
                 "conv3_1 relu3_1 conv3_2 relu3_2 conv3_3 relu3_3",
              2: "pool3 conv4_1 relu4_1 conv4_2 relu4_2 conv4_3 relu4_3",
              4: "pool4 conv5_1 relu5_1 conv5_2 relu5_2 conv5_3 relu5_3", 8: "pool5 fc6 relu6 fc7 relu7 fc8"},
}


def _thin(name: str, width: int = 2) -> list:
    """The network with ``width`` channels per layer (groups kept): same kernels, strides, padding."""
    out, c, thin = [], 3, 3
    for ly in architecture(name):
        if ly.type == "conv":
            groups = c // ly.shape[2]
            out.append(replace(ly, shape=(*ly.shape[:2], thin // groups, width)))
            c, thin = ly.shape[3], width
        else:
            out.append(ly)
    return out


@pytest.fixture(scope="module")
def geometry() -> dict[str, dict]:
    """Every layer's measured geometry, once per network, on a channel-thin copy (geometry is width-free)."""
    result = {}
    for name in NETS:
        net = build_sequential(_thin(name))
        result[name] = measure_geometry(net, dict(net.named_children()), 3, PAPER_NETS[name].size)
    return result


@pytest.mark.parametrize("name", NETS)
def test_stride_and_receptive_field_per_layer(geometry: dict, name: str) -> None:
    measured = {k: (g.stride, g.receptive_field) for k, g in geometry[name].items()}
    for layer, (s, rf) in GEOMETRY[name].items():
        assert measured[layer] == ((s, s), (rf, rf)), layer
    assert list(measured) == [ly.name for ly in architecture(name)]  # every layer measured
    for ly in architecture(name):  # layers not listed (ReLU, LRN) keep their input's geometry
        if ly.name not in GEOMETRY[name]:
            prev = [ly2.name for ly2 in architecture(name)]
            before = prev[prev.index(ly.name) - 1]
            assert measured[ly.name] == measured[before], ly.name


@pytest.mark.parametrize("name", NETS)
def test_jitter_per_layer_matches_the_paper_notes(geometry: dict, name: str) -> None:
    expect = {layer: j for j, layers in JITTER[name].items() for layer in layers.split()}
    assert sorted(expect) == sorted(ly.name for ly in architecture(name))
    assert {k: g.jitter for k, g in geometry[name].items()} == expect


@pytest.fixture(scope="module")
def caffenet_random():
    from preimage.representations import build

    return build("caffenet", random_weights=True)


def test_geometry_of_the_full_width_model(caffenet_random) -> None:
    pool2 = Representation(caffenet_random, "7")
    assert pool2.layer == "pool2"
    g = pool2.geometry()
    assert (g.stride, g.receptive_field, g.jitter) == ((16, 16), (67, 67), 4)


# ---------------------------------------------------------------------------------------------------------
# Registry entries
# ---------------------------------------------------------------------------------------------------------


def test_random_weight_spec_and_aliases(caffenet_random) -> None:
    alex = layer_aliases(architecture("alexnet-caffe"))
    # docs/paper-notes.md §3.2: the x-ticks of the error plots and the layers of the preference study
    ticks = {"1": "conv1", "4": "pool1", "5": "conv2", "9": "conv3", "10": "relu3", "13": "conv5",
             "15": "pool5", "16": "fc6", "20": "fc8"}
    assert {k: alex[k] for k in ticks} == ticks and len(alex) == 20
    vgg = layer_aliases(architecture("vgg16"))
    assert len(vgg) == 36 and vgg["31"] == "pool5" and vgg["36"] == "fc8" and vgg["17"] == "pool3"
    spec = caffenet_random
    assert spec.layer_aliases == layer_aliases(architecture("caffenet"))
    assert spec.layer_aliases["4"] == "norm1"
    assert spec.input_size == (227, 227) and spec.classifier_layer == "fc8" and spec.weights_id == "random"
    assert spec.std == (1 / 255,) * 3
    assert tuple(255 * m for m in spec.mean) == pytest.approx((122.679, 116.669, 104.007))
    assert tuple(dict(spec.module.named_children())["fc6"].weight.shape) == (4096, 256, 6, 6)
    with torch.no_grad():
        out = Representation(spec)(torch.randn(1, 3, 227, 227))
    assert out.shape == (1, 1000, 1, 1)
    assert [PAPER_NETS[n].size for n in NETS] == [(227, 227), (227, 227), (224, 224), (224, 224)]


@pytest.mark.parametrize("name", ["caffenet", "alexnet-caffe", "vgg-m"])
def test_missing_weights_is_one_clear_line(name: str) -> None:
    file = PAPER_NETS[name].file
    with pytest.raises(PreimageError) as e:
        load(name)
    assert str(e.value) == (f"{name} needs its MatConvNet weights: --weights {file}.mat "
                            "(vlfeat.org/matconvnet/models), or --random-weights")


def test_state_dict_of_the_same_layout_round_trips(tmp_path: Path, caffenet_random) -> None:
    from preimage.representations import build

    torch.save(caffenet_random.module.state_dict(), tmp_path / "caffenet.pth")
    again = build("caffenet", weights=str(tmp_path / "caffenet.pth"))
    pairs = zip(caffenet_random.module.state_dict().items(), again.module.state_dict().items(), strict=True)
    for (k, a), (k2, b) in pairs:
        assert k == k2 and torch.equal(a, b), k
    assert again.weights_id == f"file:{(tmp_path / 'caffenet.pth').resolve()}"


# ---------------------------------------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------------------------------------


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_another_networks_file_is_named(tmp_path: Path, rng: np.random.Generator) -> None:
    path = save_simplenn(tmp_path / "alex.mat", mcn_layers("alexnet-caffe", "conv2", rng),
                         mean_image((8, 8), rng), (227, 227))
    with pytest.raises(PreimageError) as e:
        load("caffenet", weights=str(path))
    msg = _one_line(e)
    assert "not MatConvNet's imagenet-caffe-ref" in msg
    assert "layer 3 ('norm1') is lrn, pool1 should be pool" in msg
    assert "looks like imagenet-caffe-alex (--model alexnet-caffe)" in msg
    vggm = save_simplenn(tmp_path / "vggm.mat", mcn_layers("vgg-m", "conv1", rng), mean_image((8, 8), rng),
                         (224, 224))
    with pytest.raises(PreimageError, match=r"layer 1 \('conv1'\) has filters 7×7×3×96, conv1 needs "
                                            r"11×11×3×96; it looks like imagenet-vgg-m \(--model vgg-m\)$"):
        load("alexnet-caffe", weights=str(vggm))
    with pytest.raises(PreimageError, match="has filters 11×11×3×96, conv1_1 needs 3×3×3×64; it looks like "
                                            "imagenet-caffe-alex"):
        load("vgg16", weights=str(path))


def test_wrong_pool_padding_for_fc6_is_caught() -> None:
    from preimage.representations.matconvnet import SimpleNN
    from preimage.representations.paper_nets import _match

    layers = architecture("vgg-m")
    layers[7] = replace(layers[7], pad=(0, 0, 0, 0))  # without the importer's padding pool5 gives 5×5
    with pytest.raises(PreimageError, match="vggm.mat: at 224×224 pool5 gives 5×5 but fc6 filters are 6×6"):
        _match(PAPER_NETS["vgg-m"], SimpleNN(layers, None, (224, 224), "vggm.mat"))
    with pytest.raises(PreimageError, match="at 200×200 pool5 gives 5×5"):
        _match(PAPER_NETS["caffenet"], SimpleNN(architecture("caffenet"), None, (200, 200), "c.mat"))
    assert len(_match(PAPER_NETS["vgg-m"], SimpleNN(architecture("vgg-m"), None, None, "ok.mat"))) == 20


def test_truncated_and_corrupt_files(tmp_path: Path, rng: np.random.Generator) -> None:
    cells = mcn_layers("caffenet", "conv2", rng)
    good = save_simplenn(tmp_path / "good.mat", cells, mean_image((8, 8), rng), (227, 227))
    data = good.read_bytes()
    for i, cut in enumerate((len(data) // 2, 200)):
        bad = tmp_path / f"cut{i}.mat"
        bad.write_bytes(data[:cut])
        with pytest.raises(PreimageError, match="truncated or corrupt"):
            load("caffenet", weights=str(bad))
    plain = save_simplenn(tmp_path / "plain.mat", cells, mean_image((8, 8), rng), (227, 227), compress=False)
    (tmp_path / "cut_plain.mat").write_bytes(plain.read_bytes()[: plain.stat().st_size * 2 // 3])
    with pytest.raises(PreimageError, match="truncated or corrupt"):
        load("caffenet", weights=str(tmp_path / "cut_plain.mat"))
    h5 = save_mat73(tmp_path / "v73.mat", {"layers": _cell(cells)})
    (tmp_path / "cut73.mat").write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
    with pytest.raises(PreimageError, match="truncated or corrupt MATLAB v7.3"):
        load("caffenet", weights=str(tmp_path / "cut73.mat"))
    (tmp_path / "text.mat").write_text("not a mat file")
    with pytest.raises(PreimageError, match="is not a MATLAB .mat file"):
        load("caffenet", weights=str(tmp_path / "text.mat"))
    with pytest.raises(PreimageError, match="weights file not found"):
        load("caffenet", weights=str(tmp_path / "missing.mat"))


def test_missing_fields(tmp_path: Path, rng: np.random.Generator) -> None:
    cells = mcn_layers("caffenet", "conv2", rng)
    no_weights = [dict(c) for c in cells]
    del no_weights[4]["weights"]
    path = save_simplenn(tmp_path / "a.mat", no_weights, mean_image((8, 8), rng), (227, 227))
    with pytest.raises(PreimageError, match=r"conv layer conv2 has no 'weights' \(or 'filters'\) field") as e:
        load("caffenet", weights=str(path))
    _one_line(e)
    no_pool = [dict(c) for c in cells]
    del no_pool[2]["pool"]
    path = save_simplenn(tmp_path / "b.mat", no_pool, mean_image((8, 8), rng), (227, 227))
    with pytest.raises(PreimageError, match="layer pool1 has no 'pool' field"):
        load("caffenet", weights=str(path))
    no_type = [dict(c) for c in cells]
    del no_type[1]["type"]
    path = save_simplenn(tmp_path / "c.mat", no_type, mean_image((8, 8), rng), (227, 227))
    with pytest.raises(PreimageError, match="layer 2 \\(relu1\\) has no 'type' field"):
        load("caffenet", weights=str(path))
    scipy.io.savemat(str(tmp_path / "d.mat"), {"meta": {"x": 1.0}})
    with pytest.raises(PreimageError, match="has no 'layers' variable"):
        load("caffenet", weights=str(tmp_path / "d.mat"))
    scipy.io.savemat(str(tmp_path / "e.mat"), {"layers": _cell([]), "params": _cell([]), "vars": _cell([])})
    with pytest.raises(PreimageError, match="DagNN"):
        load("caffenet", weights=str(tmp_path / "e.mat"))
    shapes = [dict(c) for c in cells]
    shapes[4]["weights"] = _cell([shapes[4]["weights"][0, 0], np.zeros((1, 7), np.float32)])
    path = save_simplenn(tmp_path / "f.mat", shapes, mean_image((8, 8), rng), (227, 227))
    with pytest.raises(PreimageError, match="layer conv2: 7 biases for 256 filters"):
        load("caffenet", weights=str(path))


def test_bad_state_dicts(tmp_path: Path) -> None:
    z = torch.zeros
    few = {"features.0.weight": z(64, 3, 3, 3), "features.0.bias": z(64)}
    torch.save(few, tmp_path / "few.pth")
    with pytest.raises(PreimageError, match="has 1 weight tensors, torchvision vgg16 has 16") as e:
        load("vgg16", weights=str(tmp_path / "few.pth"))
    _one_line(e)
    bn = {**few, "features.1.running_mean": z(64)}  # vgg16_bn
    torch.save(bn, tmp_path / "bn.pth")
    with pytest.raises(PreimageError, match="is not a torchvision vgg16 state dict"):
        load("vgg16", weights=str(tmp_path / "bn.pth"))
    wrong = {f"features.{i}.weight": z(64, 3, 5, 5) for i in range(16)} | {f"features.{i}.bias": z(64)
                                                                            for i in range(16)}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(PreimageError, match=r"'features.0.weight' has shape \(64, 3, 5, 5\), conv1_1 needs"):
        load("vgg16", weights=str(tmp_path / "wrong.pth"))
    torch.save({"conv1.weight": z(96, 3, 11, 11)}, tmp_path / "other.pth")
    with pytest.raises(PreimageError, match="do not fit this model"):
        load("caffenet", weights=str(tmp_path / "other.pth"))
    with pytest.raises(PreimageError, match="unexpected options for caffenet: colour"):
        load("caffenet", random_weights=True, colour=1)
