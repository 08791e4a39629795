"""Representations: the embedded EfficientNet-Lite0, truncation, paper units, measured geometry, loading."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import lite0

import preimage
from preimage.errors import PreimageError
from preimage.images import load_image
from preimage.representations import load
from preimage.representations.zoo import load_into


def test_efficientnet_lite0_classifies_chelsea_as_a_cat() -> None:
    rep = lite0("output")  # the whole network: logits
    img = load_image("sample:chelsea", 224)
    with torch.no_grad():
        logits = rep(rep.to_paper_units(img))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


def test_paper_units_map_to_the_networks_normalization() -> None:
    rep = lite0("blocks.2")
    img = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        ours = rep(rep.to_paper_units(img))
        net = rep.net
        h = net.bn1(net.conv_stem((img / 255 - 0.5) / 0.5))
        ref = net.blocks[2](net.blocks[1](net.blocks[0](h)))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(rep.mean, torch.full((3,), 127.5))


def test_truncation_stops_after_the_target_layer() -> None:
    rep = lite0("blocks.1")
    called = []
    handle = rep.net.blocks[2].register_forward_hook(lambda *a: called.append(1))
    try:
        rep(torch.zeros(1, 3, 32, 32))
    finally:
        handle.remove()
    assert called == []


def test_geometry_is_measured_on_the_model() -> None:
    assert lite0("blocks.3").geometry().stride == (16, 16)
    assert lite0("blocks.6").geometry().stride == (32, 32)
    alex = torchvision.models.alexnet()
    g1 = load(alex, "features.0").geometry()
    g5 = load(alex, "features.12").geometry()
    assert (g1.stride, g1.receptive_field) == ((4, 4), (11, 11))
    assert (g5.stride, g5.receptive_field) == ((32, 32), (195, 195))
    assert (g1.jitter, g5.jitter) == (1, 8)
    vgg = torchvision.models.vgg11()  # the same 3×3 stacking as VGG-16 at its first pool
    g = load(vgg, "features.2").geometry()
    assert (g.stride, g.receptive_field) == ((2, 2), (4, 4))


def test_user_module_with_its_normalization() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    rep = preimage.load(net, "0", mean=(0.0,), std=(1 / 255,), channels=1)
    x = torch.rand(1, 1, 8, 8) * 255
    torch.testing.assert_close(rep(x), net[0](x))


def test_unknown_model_and_layer_give_clear_errors() -> None:
    with pytest.raises(PreimageError, match="unknown model 'efficientnet_lite'.*close matches: .*efficientnet_lite0"):
        load("efficientnet_lite")
    with pytest.raises(PreimageError, match="unknown layer 'blocks.33'.*close matches: .*blocks.3"):
        load(lite0_spec_name(), "blocks.33")


def lite0_spec_name() -> str:
    return "efficientnet_lite0"


def test_offline_pretrained_download_fails_with_a_hint() -> None:
    import os

    cached = os.path.expanduser("~/.cache/torch/hub/checkpoints")
    if os.path.isdir(cached) and any(f.startswith("alexnet") for f in os.listdir(cached)):
        pytest.skip("alexnet weights are cached on this machine")
    try:
        import urllib.request

        urllib.request.urlopen("https://download.pytorch.org", timeout=3)
        pytest.skip("this machine is online")
    except OSError:
        pass
    with pytest.raises(PreimageError, match="--weights PATH.*--random-weights"):
        load("alexnet", "features.0")


def test_weights_file_loading_checks_shapes(tmp_path) -> None:
    net = torchvision.models.alexnet()
    path = tmp_path / "alex.pth"
    torch.save(net.state_dict(), path)
    rep = load("alexnet", "features.0", weights=str(path))
    torch.testing.assert_close(rep.net.features[0].weight, net.features[0].weight)
    sd = net.state_dict()
    sd["features.0.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(PreimageError, match="features.0.weight"):
        load_into(torchvision.models.alexnet(), sd, "x.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PreimageError, match="cannot read weights file"):
        load("alexnet", weights=str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("model", ["vgg16", "timm:resnet18"])
def test_offline_pretrained_weights_fail_in_one_line(model: str, tmp_path, capsys) -> None:
    from preimage.cli import main
    from preimage.representations.zoo import _online

    if _online("download.pytorch.org") or _online("huggingface.co"):
        pytest.skip("this machine is online")
    assert main(["invert", "sample:chelsea", "--model", model, "--out", str(tmp_path), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == ""  # nothing on stdout: --json's stdout holds one object or nothing
    assert out.err.strip().splitlines() == [out.err.strip()] and "--random-weights" in out.err


def test_piped_layer_table_keeps_one_line_per_layer() -> None:
    """Piped to grep, ``preimage layers`` prints each layer's row whole (rich would otherwise wrap at 80)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-c", "from preimage.cli import main; main()", "layers",
                          "--model", "efficientnet_lite0", "--size", "64"],
                         capture_output=True, text=True, env=env, check=True).stdout
    rows = [ln for ln in out.splitlines() if ln.startswith("│ ")]
    by_name = {ln.split("│")[1].strip(): ln.split("│")[-2].strip() for ln in rows}
    assert by_name["bn1"] == "BatchNormAct2d" and by_name["blocks.0.0"] == "DepthwiseSeparableConv"
    assert all(ln.split("│")[1].strip() for ln in rows)  # no continuation lines
    bad = subprocess.run([sys.executable, "-c", "from preimage.cli import main; main()", "layers", "--size", "64"],
                         capture_output=True, text=True, env={**env, "COLUMNS": "abc"})
    assert bad.returncode == 0 and "Traceback" not in bad.stderr  # a malformed COLUMNS falls back to 160


def test_model_id_never_carries_over_to_a_new_module_or_a_replaced_tensor() -> None:
    from preimage.representations.base import ModelSpec, model_id

    # Modules with no tensors, built and freed one after another: CPython hands a freed object's id to the next
    # one, which once made HOGb and DSIFT share a key (and read each other's stored inversions).
    digest = model_id(ModelSpec("x", torch.nn.Identity(), (0.5,), (0.5,))).split("@")[1]
    for i in range(20):
        spec = ModelSpec(f"m{i}", torch.nn.Identity(), (0.5,), (0.5,))
        assert model_id(spec) == f"m{i}@{digest}"
        del spec
    same = torch.nn.Identity()
    other_weights = ModelSpec("a", same, (0.5,), (0.5,), weights_id="u")
    assert model_id(other_weights) != model_id(ModelSpec("a", same, (0.5,), (0.5,)))  # the same module, cached
    net = torch.nn.Linear(2, 2)
    spec = ModelSpec("lin", net, (0.5,), (0.5,))
    before = model_id(spec)
    assert model_id(spec) == before  # cached, unchanged
    net.weight = torch.nn.Parameter(net.weight.detach() + 1)  # a new tensor: a new digest
    assert model_id(spec) != before
    with torch.no_grad():
        net.bias.zero_()  # in place: the version counter moves
    after = model_id(spec)
    assert after != before and model_id(spec) == after
