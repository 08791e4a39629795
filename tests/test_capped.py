"""Capped activations (ReLU6): the leaky backward's values and gradients, the swap, and the caricature's gain
and limit on EfficientNet-Lite0 at a small size."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import lite0, lite0_spec
from torch import nn

from preimage.tasks.activation import caricature
from preimage.tasks.capped import LeakyBackwardReLU6, is_capped, leaky_backward


def test_leaky_backward_relu6_is_exact_forward_and_leaks_backward() -> None:
    x = torch.tensor([-2.0, 0.5, 3.0, 5.9, 8.0, 100.0], requires_grad=True)
    y = LeakyBackwardReLU6(0.1)(x)
    assert torch.equal(y, F.relu6(x))
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.tensor([0.1, 1.0, 1.0, 1.0, 0.1, 0.1]))


def test_leaky_backward_swaps_relu6_only_and_keeps_the_outputs() -> None:
    rep = lite0("blocks.3")
    net = rep.net
    before = [m for m in net.modules() if isinstance(m, nn.ReLU6)]
    x = torch.randn(1, 3, 48, 48) * 60
    with torch.no_grad():
        y0 = rep(x)
    with leaky_backward(net, 0.1) as n:
        assert n == len(before) > 0 and not any(isinstance(m, nn.ReLU6) for m in net.modules())
        with torch.no_grad():
            assert torch.equal(rep(x), y0)
    assert [m for m in net.modules() if isinstance(m, nn.ReLU6)] == before
    assert is_capped(lite0_spec().module) and not is_capped(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))


def test_caricature_on_relu6_gains_with_the_leak_and_nears_the_limit() -> None:
    # The leak's gain over the exact backward depends on the draw (hubble_deep_field, 64 px, 60 steps, blocks.4:
    # 0.017-0.097 on seeds 0-5, and -0.05 to 0.08 on three draws of another seeding): three draws, higher on average.
    rep = lite0("blocks.4")
    gains, shares = [], []
    for seed in range(3):
        exact = caricature(rep, "sample:hubble_deep_field", size=64, iters=60, seed=seed)
        ours = caricature(rep, "sample:hubble_deep_field", size=64, iters=60, cap_leak=0.1, limit=True, seed=seed)
        gains.append(float(ours.metrics["score_end"][0]) - float(exact.metrics["score_end"][0]))
        shares.append(float(ours.metrics["share_of_limit"][0]))
    assert ours.info["cap_leak"] == 0.1 and exact.info["cap_leak"] == 0.0
    assert sum(gains) > 0 and min(shares) >= 0.95
    lim = float(ours.metrics["score_limit"][0])
    assert lim >= float(ours.metrics["score_end"][0])
    # The score is the real network's, on the returned image.
    with torch.no_grad():
        pos = rep(rep.to_paper_units(ours.info["reference"])).clamp_min(0)
        phi = rep(rep.to_paper_units(ours.images))
    assert float((phi * pos).sum() / pos.pow(2).sum()) == pytest.approx(float(ours.metrics["score_end"][0]),
                                                                         rel=1e-4)


def test_cli_caricature_limit_and_cap_leak(tmp_path, capsys) -> None:
    from preimage.cli import main

    args = ["caricature", "sample:coffee", "--layer", "blocks.2", "--size", "32", "--iters", "4", "--json"]
    capsys.readouterr()
    assert main([*args, "--limit", "--out", str(tmp_path / "a")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cap_leak"] == 0.0 and info["score_limit"] >= info["score_end"]
    assert info["share_of_limit"] == pytest.approx(info["score_end"] / info["score_limit"])
    assert main([*args, "--cap-leak", "0.1", "--out", str(tmp_path / "b")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cap_leak"] == 0.1 and "score_limit" not in info
    for bad in ("1.5", "-0.1", "1"):
        assert main([*args, "--cap-leak", bad, "--out", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and "--cap-leak" in err[0], err
    assert not (tmp_path / "c").exists()
