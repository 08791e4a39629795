"""The Python API as a notebook user meets it: objects first and strings as shorthand, results that show and save
themselves, no side effect on the user's model, and errors that speak Python (and flags on the command line)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import preimage
from preimage.cli import main
from preimage.errors import PreimageError


class UserNet(nn.Module):
    """A small network as a user trains it: BatchNorm (so a forward pass in training mode would change it)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


def _user_net() -> UserNet:
    torch.manual_seed(0)
    net = UserNet().train()  # in the middle of training
    net.stem[0].bias.requires_grad_(False)  # one frozen parameter, as users freeze layers
    return net


def _snapshot(net: nn.Module) -> tuple:
    return ([m.training for m in net.modules()], [p.requires_grad for p in net.parameters()],
            {p.device for p in net.parameters()}, {k: v.clone() for k, v in net.state_dict().items()},
            [p.data_ptr() for p in net.parameters()])


def _same(a: tuple, b: tuple) -> bool:
    return (a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[4] == b[4]
            and all(torch.equal(a[3][k], b[3][k]) for k in a[3]))


def test_calls_leave_the_users_model_as_they_found_it() -> None:
    net = _user_net()
    before = _snapshot(net)
    kw = {"size": 32, "iters": 3}
    preimage.invert(net, "sample:chelsea", layer="block", **kw)
    preimage.maximize(net, "block:3", **kw)
    preimage.maximize(net, preimage.Class(2, "head.2"), style="paper", **kw)
    preimage.caricature(net, "sample:coffee", layer="block.1", **kw)
    rep = preimage.load(net, "stem", device="cpu")
    preimage.invert(rep, "sample:chelsea", **kw)
    assert _same(before, _snapshot(net))  # mode, requires_grad, device, parameters and buffers (BN's statistics)
    net.train()
    out = net(torch.randn(2, 3, 16, 16)).sum()
    out.backward()  # still trainable, as it was
    assert net.block[0].weight.grad is not None and net.stem[0].bias.grad is None


def test_targets_and_parts_are_objects_with_string_shorthands() -> None:
    net = _user_net()
    a = preimage.maximize(net, "block:3", size=24, iters=4, param="fourier", transforms="jitter:3,flip")
    b = preimage.maximize(net, preimage.Channel("block", 3), size=24, iters=4, param=preimage.Fourier(),
                          transforms=[preimage.Jitter(3), preimage.Flip()])
    assert torch.equal(a.images, b.images)  # the same objects, the same pictures
    c = preimage.maximize(net, preimage.Channel("block", 3) - 0.5 * preimage.Channel("block", 7), size=24, iters=4)
    assert c.problems[0]["target"] == "channel:block:3 - 0.5*channel:block:7" and "ratio" in c.metrics
    assert bool(torch.isnan(c.metrics["reference_max"]).all())  # a sum has no one unit's natural maximum
    # A layer is needed where the model has no documented default; efficientnet_lite0 documents blocks.4.
    with pytest.raises(PreimageError, match="give a layer") as e:
        preimage.invert(net, "sample:chelsea", size=24, iters=1)
    assert e.value.params == ("layer",)
    assert preimage.load("efficientnet_lite0").layer == "blocks.4"
    assert preimage.load(net).layer is None  # load without a layer: the whole network


def test_results_show_themselves_and_keep_one_unit() -> None:
    net = _user_net()
    res = preimage.maximize(net, "block:0-1", size=24, iters=3, restarts=2)
    assert res.images.dtype == torch.float32 and 0 <= float(res.images.min()) and float(res.images.max()) <= 255
    png = Image.open(io.BytesIO(res._repr_png_()))
    assert png.format == "PNG" and png.size[0] > 24
    html = res._repr_html_()
    assert html.count("<img") == 4 and "block channel 0" in html and "natural max" in html
    u8 = res.uint8()
    assert u8.shape == (4, 24, 24, 3) and u8.dtype == np.uint8
    assert [p.size for p in res.pil()] == [(24, 24)] * 4
    np.testing.assert_array_equal(u8[0], np.asarray(res.pil()[0]))
    inv = preimage.invert(net, res.images[:1], layer="block", size=24, iters=2, init=res.images[:1])
    assert inv.images.shape == (1, 3, 24, 24)  # init and inputs are pictures in the same 0–255 unit


def test_save_writes_what_the_command_line_writes(tmp_path, capsys) -> None:
    args = ["invert", "sample:chelsea", "--layer", "blocks.1", "--size", "32", "--iters", "4", "--json"]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads(capsys.readouterr().out)
    res = preimage.invert("efficientnet_lite0", "sample:chelsea", layer="blocks.1", size=32, iters=4)
    saved = res.save(tmp_path / "py")
    assert saved["keys"] == cli["keys"]  # the same configuration, the same key
    assert [r["sha256"] for r in saved["results"]] == [r["sha256"] for r in cli["results"]]
    assert sorted(p.name for p in (tmp_path / "py").iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    # The command line then finds the Python result in the store: a cache hit.
    assert main([*args, "--out", str(tmp_path / "py")]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"]["cached"] == 1


@pytest.mark.parametrize("call, param", [
    (lambda net: preimage.maximize(net, "block:3", restarts=0), "restarts"),
    (lambda net: preimage.maximize(net, "block:3", iters=0), "iters"),
    (lambda net: preimage.maximize(net, "block:99", size=24, iters=1), "target"),
    (lambda net: preimage.maximize(net, 3), "target"),
    (lambda net: preimage.maximize(net, "block:3", style="fancy"), "style"),
    (lambda net: preimage.maximize(net, "block:3", param="wavelet"), "param"),
    (lambda net: preimage.maximize(net, "block:3", transforms=[object()]), "transforms"),
    (lambda net: preimage.maximize(net, "block:3", prior="gan"), "prior"),
    (lambda net: preimage.maximize(net, "block:3", size=0), "size"),
    (lambda net: preimage.maximize(net, "block:3", relu_leak=2.0), "relu_leak"),
    (lambda net: preimage.invert(net, "sample:chelsea", layer="block", C=-1), "C"),
    (lambda net: preimage.invert(net, "missing.png", layer="block"), "images"),
    (lambda net: preimage.invert(net, "sample:chelsea", layer="nope"), "layer"),
    (lambda net: preimage.invert(net, "sample:chelsea", layer="block", mask="neigh:0"), "mask"),
    (lambda net: preimage.invert(net, "sample:chelsea", layer="block", optimizer="sgd"), "optimizer"),
    (lambda net: preimage.caricature(net, "sample:chelsea", layer="block", seed=-1), "seed"),
    (lambda net: preimage.load("no_such_model"), None),
])
def test_library_errors_name_python_parameters(call, param) -> None:
    with pytest.raises(PreimageError) as e:
        call(_user_net())
    assert "--" not in str(e.value), str(e.value)  # Python words, not flags
    if param:
        assert param in e.value.params, (str(e.value), e.value.params)


def test_the_command_line_says_the_same_with_its_flags(tmp_path, capsys) -> None:
    for args, flag in [(["maximize", "--layer", "blocks.1", "--unit", "3", "--relu-leak", "0.5", "--png-scale", "x"],
                        "--png-scale"),
                       (["invert", "sample:chelsea", "--layer", "blocks.1", "--mask", "neigh:0"], "neigh"),
                       (["invert", "sample:chelsea", "--layer", "blocks.1", "--optimizer", "sgd"], "sgd")]:
        assert main([*args, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and flag in err[0], err
    assert not (tmp_path / "o").exists()


def test_saving_over_another_result_speaks_python_and_the_cli_speaks_flags(tmp_path, capsys) -> None:
    kw = {"layer": "blocks.1", "size": 32, "iters": 2}
    preimage.invert("efficientnet_lite0", "sample:chelsea", **kw).save(tmp_path)
    other = preimage.invert("efficientnet_lite0", "sample:chelsea", **{**kw, "iters": 3})
    with pytest.raises(PreimageError) as e:
        other.save(tmp_path)
    assert "force=True" in str(e.value) and "--" not in str(e.value)
    rc = main(["invert", "sample:chelsea", "--layer", "blocks.1", "--size", "32", "--iters", "3", "--out",
               str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pass --force" in err[0] and "force=True" not in err[0]


@pytest.mark.parametrize("args", [[], ["bench"], ["reproduce"]])
def test_a_command_group_alone_shows_its_help(args, capsys) -> None:
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Usage: preimage") and "Commands" in out and err == ""


def test_numpy_numbers_are_numbers() -> None:
    """A notebook's ``np.linspace`` weights, ``np.float32`` C and ``np.int64`` counts give what Python's numbers give,
    and the job records plain JSON; numpy's bools stay refused like Python's."""
    from preimage.tasks.accentuate import accentuate

    net, x0 = _user_net().eval(), preimage.load_image("sample:chelsea", 32)
    a = preimage.invert(net, x0, layer="block", C=np.array([100.0, 300.0]), iters=np.int64(3), seed=np.int64(7))
    b = preimage.invert(net, x0, layer="block", C=[100.0, 300.0], iters=3, seed=7)
    assert torch.equal(a.images, b.images) and a.jobs == b.jobs
    c = accentuate(net, x0, "block:3", reg_weight=np.linspace(0.5, 1.0, 2), max_rmse=np.float32(16), steps=np.int64(2))
    d = accentuate(net, x0, "block:3", reg_weight=[0.5, 1.0], max_rmse=16.0, steps=2)
    assert torch.equal(c.images, d.images) and c.jobs == d.jobs
    json.dumps(c.jobs)
    e = preimage.maximize(net, "block:3", size=32, iters=np.int64(2), restarts=np.int64(2), relu_leak=np.float64(0.1))
    f = preimage.maximize(net, "block:3", size=32, iters=2, restarts=2, relu_leak=0.1)
    assert torch.equal(e.images, f.images) and e.jobs == f.jobs
    for bad in (np.bool_(True), True):
        with pytest.raises(PreimageError) as e:
            preimage.invert(net, x0, layer="block", iters=bad)
        assert "iters" in e.value.params
    # an array where a number belongs is named by its shape, on one line (numpy's repr spans several)
    for bad, shown in ((np.ones((2, 2)), "got an array of shape (2, 2)"), (np.float64("nan"), "got nan")):
        with pytest.raises(PreimageError) as e:
            accentuate(net, x0, "block:3", reg_weight=bad, steps=1)
        assert str(e.value).endswith(shown) and "\n" not in str(e.value)
    with pytest.raises(PreimageError, match=r"twice \(\[0.5, 0.5\]\)"):
        accentuate(net, x0, "block:3", reg_weight=np.array([0.5, 0.5]), steps=1)
