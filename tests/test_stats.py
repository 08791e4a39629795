"""Neuron statistics: per-channel max/mean/std measured in hooks (pre-ReLU despite in-place ReLUs), the on-disk
cache keyed by model and weights, validation and rebuilding of a corrupt cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import lite0_spec
from PIL import Image
from torch import nn

from preimage.errors import PreimageError
from preimage.measures.stats import (
    cache_path,
    compute_stats,
    list_images,
    load_stats,
    read_stats,
    save_stats,
)
from preimage.representations import ModelSpec, Representation
from preimage.representations.base import model_id


def _tiny_spec(weights_id: str = "test:tiny-stats") -> ModelSpec:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 5, 3, stride=2),
                        nn.ReLU6(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return ModelSpec("tiny-stats", net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), weights_id=weights_id,
                     input_size=(16, 16))


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        Image.fromarray(rng.integers(0, 256, (20 + i, 18, 3), dtype=np.uint8)).save(d / name)
    (d / "notes.txt").write_text("not an image")
    return d


def test_stats_match_a_direct_computation_and_are_pre_relu(image_dir) -> None:
    spec = _tiny_spec()
    st = compute_stats(spec, str(image_dir), batch=2)
    assert st.images == list_images(str(image_dir))[0] and len(st.images) == 3  # recursive, images only
    rep = Representation(spec, "output")
    from preimage.images import load_image

    x = torch.cat([load_image(s, 16) for s in st.images])
    with torch.no_grad():
        conv = spec.module[0](rep.to_paper_units(x) * rep.scale)  # N×4×16×16, before the in-place ReLU
    flat = conv.transpose(0, 1).reshape(4, -1)
    got = st.get(("output", "0"))
    torch.testing.assert_close(got.max, flat.amax(1))
    torch.testing.assert_close(got.mean, flat.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.std, flat.std(1, unbiased=False), rtol=1e-4, atol=1e-5)
    assert bool((got.mean < 0).any())  # the in-place ReLU did not clobber the conv output
    # A ReLU's input is the pre-ReLU response, its output the clipped one.
    torch.testing.assert_close(st.get(("input", "1")).max, got.max)
    assert float(st.get(("output", "1")).mean.min()) >= 0
    post6, pre6 = st.get(("output", "3")), st.get(("input", "3"))
    assert float(post6.max.max()) <= 6 and bool((pre6.max >= post6.max).all())
    assert st.get(("output", "")).channels == 5  # the whole network's N×C output
    with pytest.raises(PreimageError, match="no neuron statistics"):
        st.get(("output", "nonexistent"))


def test_cache_round_trip_is_keyed_by_model_and_weights(tmp_path, monkeypatch, image_dir) -> None:
    monkeypatch.setenv("PREIMAGE_CACHE", str(tmp_path / "cache"))
    spec = _tiny_spec()
    st = load_stats(spec, images=str(image_dir))
    path = cache_path(spec.name, model_id(spec))
    assert path.is_file() and path.parent == tmp_path / "cache" / "stats"
    back = read_stats(path, spec.name, model_id(spec))
    assert set(back.points) == set(st.points) and back.images == st.images and back.size == (16, 16)
    for p in st.points:
        torch.testing.assert_close(back.points[p].max, st.points[p].max)
    assert cache_path(spec.name, "other-weights") != path
    with pytest.raises(ValueError, match="other weights"):
        read_stats(path, spec.name, "other-weights")
    # The cache is used as it is: a second load (no image set named) does not recompute.
    st.images = ["marker"]
    save_stats(st, path)
    assert load_stats(spec).images == ["marker"]
    # Another image set named replaces it.
    assert load_stats(spec, images=["sample:coffee"]).images == ["sample:coffee"]
    assert read_stats(path, spec.name, model_id(spec)).images == ["sample:coffee"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "nan", "wrong-shape", "wrong-model"])
def test_a_corrupt_cache_is_rebuilt_with_one_warning(tmp_path, monkeypatch, capsys, image_dir, damage) -> None:
    monkeypatch.setenv("PREIMAGE_CACHE", str(tmp_path / "cache"))
    spec = _tiny_spec()
    good = load_stats(spec, images=str(image_dir))
    path = cache_path(spec.name, model_id(spec))
    if damage == "garbage":
        path.write_bytes(b"\x00not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        bad = dataclasses.replace(good, points=dict(good.points))
        key = ("output", "0")
        s = bad.points[key]
        if damage == "nan":
            bad.points[key] = dataclasses.replace(s, max=torch.full_like(s.max, float("nan")))
        elif damage == "wrong-shape":
            bad.points[key] = dataclasses.replace(s, mean=s.mean[:2])
        else:
            bad.model = "another-model"
        if damage == "wrong-shape":
            with pytest.raises(RuntimeError):
                save_stats(bad, path)
            obj = torch.load(path, weights_only=True)
            obj["points"]["output/0"] = torch.zeros(2, 4)
            torch.save(obj, path)
        else:
            save_stats(bad, path)
    capsys.readouterr()
    rebuilt = load_stats(spec)  # from the bundled samples this time
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "corrupt" in err[0] and "rebuilding" in err[0]
    assert rebuilt.source == "samples"
    assert read_stats(path, spec.name, model_id(spec)).source == "samples"  # the file is valid again


def test_the_cache_is_keyed_by_the_weights_themselves(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PREIMAGE_CACHE", str(tmp_path / "cache"))
    spec = _tiny_spec("random")
    st = load_stats(spec, images=["sample:coffee"])
    assert st.images == ["sample:coffee"] and cache_path(spec.name, model_id(spec)).is_file()
    with torch.no_grad():
        spec.module[0].weight.add_(1.0)  # other weights under the same name: another key, never the old cache
    assert cache_path(spec.name, model_id(spec)) != cache_path(spec.name, st.weights_id)


def test_bad_image_sets_are_clear_errors(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(PreimageError, match="no readable images in"):
        compute_stats(_tiny_spec(), str(tmp_path / "empty"))
    with pytest.raises(PreimageError, match="not found"):
        compute_stats(_tiny_spec(), str(tmp_path / "missing"))
    with pytest.raises(PreimageError, match="at least one image"):
        compute_stats(_tiny_spec(), [])


def test_lite0_sample_statistics_see_through_relu6() -> None:
    st = load_stats(lite0_spec())  # the session cache: computed once from the 8 bundled samples
    assert st.source == "samples" and len(st.images) == 8 and st.size == (224, 224)
    post, pre = st.get(("output", "blocks.3.0.bn1")), st.get(("input", "blocks.3.0.bn1.act"))
    assert float(post.max.max()) <= 6.0 < float(pre.max.max())
    assert st.get(("output", "classifier")).channels == 1000
    assert st.get(("output", "blocks.3")).channels == 80
