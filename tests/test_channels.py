"""N-channel inputs (medical, satellite, depth): k-channel images from .npy and multi-page .tif, paper units and
the colour-norm projection over k channels, pictures of the first channels with the whole array beside them,
and grey (k = 1) networks end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

import preimage
from preimage.cli import main
from preimage.engine.regularizers import colour_norms2
from preimage.errors import PreimageError
from preimage.images import load_image, to_uint8
from preimage.measures.stats import compute_stats


def _scene(k: int, size: int = 40) -> np.ndarray:
    """A smooth k-channel test scene in 0–255, H×W×k (float32)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    chans = [127 + 100 * np.sin(2 * np.pi * (xx * (c + 1) + yy * (2 - c % 2))) for c in range(k)]
    return np.stack(chans, axis=2).astype(np.float32)


def test_k_channel_arrays_load_from_npy_and_multipage_tif(tmp_path) -> None:
    a = _scene(5)
    np.save(tmp_path / "hwc.npy", a)
    np.save(tmp_path / "chw.npy", np.moveaxis(a, 2, 0))
    tifffile.imwrite(tmp_path / "pages.tif", np.moveaxis(a, 2, 0))  # 5 pages of H×W
    ref = torch.from_numpy(a).permute(2, 0, 1)[None]
    for name in ("hwc.npy", "chw.npy", "pages.tif"):
        x = load_image(str(tmp_path / name), channels=5)
        assert x.shape == (1, 5, 40, 40)
        torch.testing.assert_close(x, ref)
    assert load_image(str(tmp_path / "hwc.npy"), 24, channels=5).shape == (1, 5, 24, 24)
    u16 = (a / 255 * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "u16.tif", u16)
    torch.testing.assert_close(load_image(str(tmp_path / "u16.tif"), channels=5), ref, atol=0.01, rtol=0)
    with pytest.raises(PreimageError, match="has 5 channels, the model takes 3"):
        load_image(str(tmp_path / "hwc.npy"))
    with pytest.raises(PreimageError, match="has 3 channels, the model takes 4; give a .npy or .tif"):
        load_image("sample:chelsea", channels=4)


class _Net(nn.Module):
    """A small k-channel CNN (random weights)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(k, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def test_five_channel_network_inverts_in_paper_units_with_the_projection_over_five_channels(tmp_path) -> None:
    np.save(tmp_path / "scene.npy", _scene(5))
    rep = preimage.load(_Net(5), "features.2", channels=5, mean=(0.5,) * 5, std=(0.25,) * 5)
    assert rep.mean.tolist() == [127.5] * 5  # paper units: 0–255 minus the mean colour, per channel
    res = preimage.invert(rep, str(tmp_path / "scene.npy"), size=32, iters=40)
    assert res.images.shape == (1, 5, 32, 32) and torch.isfinite(res.images).all()
    assert float(res.metrics["error"][0]) < 0.6
    # The projection bounds each pixel's 5-vector, not 3 of its channels.
    assert float(colour_norms2(rep.to_paper_units(res.images)).sqrt().max()) <= 160 + 1e-3
    stats = compute_stats(rep, [str(tmp_path / "scene.npy")], size=32)
    top = preimage.maximize(rep, "neuron:features.2:0", size=24, iters=5, stats=stats)
    assert top.images.shape == (1, 5, 24, 24) and torch.isfinite(top.metrics["activation"]).all()
    with pytest.raises(PreimageError, match="takes 5-channel images and the bundled samples are RGB"):
        compute_stats(rep)


def test_pictures_show_first_channels_and_keep_the_whole_array(tmp_path) -> None:
    import io

    from preimage.report.result import Result

    x = torch.from_numpy(_scene(5)).permute(2, 0, 1).float()
    res = Result(torch.stack([x, x]), [{}, {}], {}, "m", None, 0, 0.0, torch.zeros(0, 2),
                 jobs=[{"config": {}, "rows": [0, 1], "names": ["a", "b"]}])
    ((_, out),) = res.outputs("clip")
    assert set(out.files) == {"a.png", "a.npy", "b.png", "b.npy"}  # k channels: the PNG shows 3, the .npy all
    shown = np.asarray(Image.open(io.BytesIO(out.files["a.png"])))
    assert shown.shape == (40, 40, 3)
    np.testing.assert_array_equal(shown, to_uint8(x[:3], "clip"))
    np.testing.assert_array_equal(np.load(io.BytesIO(out.files["a.npy"])), x.numpy())
    two = Result(x[None, :2], [{}], {}, "m", None, 0, 0.0, torch.zeros(0, 1))
    ((_, o2),) = two.outputs("clip")
    assert np.asarray(Image.open(io.BytesIO(o2.files["p0.png"]))).shape == (40, 40)  # two channels: the first, grey
    one = Result(x[None, :1], [{}], {}, "m", None, 0, 0.0, torch.zeros(0, 1))
    assert set(one.outputs()[0][1].files) == {"p0.png"}


def test_cli_five_channel_timm_network_writes_png_and_npy(tmp_path, capsys) -> None:
    np.save(tmp_path / "scene.npy", _scene(5))
    code = main(["invert", str(tmp_path / "scene.npy"), "--model", "timm:test_resnet", "--channels", "5",
                 "--random-weights", "--layer", "layer2", "--size", "32", "--iters", "3", "--out",
                 str(tmp_path / "o"), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    info = json.loads(out)
    arr = np.load(info["image"].replace(".png", ".npy"))
    assert arr.shape == (5, 32, 32) and np.asarray(Image.open(info["image"])).shape == (32, 32, 3)
    code = main(["invert", "sample:chelsea", "--model", "timm:test_resnet", "--channels", "5", "--random-weights",
                 "--layer", "layer2", "--size", "32", "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "has 3 channels, the model takes 5" in err


def test_grey_network_end_to_end(tmp_path, capsys) -> None:
    grey = _scene(1)[:, :, 0]
    tifffile.imwrite(tmp_path / "scan.tif", grey.astype(np.uint8))
    base = ["--model", "timm:test_resnet", "--channels", "1", "--random-weights", "--layer", "layer2",
            "--size", "32", "--iters", "5", "--json"]
    code = main(["invert", str(tmp_path / "scan.tif"), *base, "--out", str(tmp_path / "i")])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and np.asarray(Image.open(info["image"])).ndim == 2  # a grey PNG
    assert not list((tmp_path / "i").glob("*.npy"))
    code = main(["caricature", "sample:camera", *base, "--out", str(tmp_path / "c")])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["score_start"] == pytest.approx(1) and np.isfinite(info["score_end"])
    assert np.asarray(Image.open(info["image"])).ndim == 2
    code = main(["maximize", "--unit", "0", *base, "--out", str(tmp_path / "m")])  # stats: samples in grey
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and np.isfinite(info["activation"][0])
    rep = preimage.load("timm:test_resnet", "layer2", random_weights=True, channels=1)
    assert rep.channels == 1 and rep.net.conv1[0].in_channels == 1 and len(rep.spec.mean) == 1


def test_torchvision_network_with_other_input_channels() -> None:
    rep = preimage.load("resnet18", "layer1", random_weights=True, channels=4)
    assert rep.net.conv1.in_channels == 4 and len(rep.spec.mean) == 4
    x = torch.rand(1, 4, 32, 32) * 255
    assert rep(rep.to_paper_units(x)).shape == (1, 64, 8, 8)
    with pytest.raises(PreimageError, match="channels applies to torchvision and timm"):
        preimage.load("hog", channels=3)
