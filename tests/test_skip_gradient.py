"""The skip gradient (``tasks/skip_gradient.py``): the forward pass exact, the gradient through residual branches
scaled, the network restored; a style's ``skip_grad`` applied to class pictures only."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch import nn

from preimage.engine.styles import STYLES, Style, get_style, style_record
from preimage.errors import PreimageError
from preimage.tasks.skip_gradient import residual_branches, skip_gradient


class Block(nn.Module):
    """y = x + drop_path(A x) where it has a shortcut (timm's layout), else y = A x."""

    def __init__(self, d: int, has_skip: bool = True) -> None:
        super().__init__()
        self.lin, self.drop_path, self.has_skip = nn.Linear(d, d, bias=False), nn.Identity(), has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.lin(x)) if self.has_skip else self.drop_path(self.lin(x))


class ResidualClassifier(nn.Module):
    """A small classifier of 3×32×32 images whose middle blocks add a residual branch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(*(ConvBlock(8) for _ in range(2)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


class ConvBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.drop_path, self.has_skip = nn.Conv2d(c, c, 3, padding=1), nn.Identity(), True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(torch.relu(self.conv(x)))


def test_gradient_through_the_branch_is_scaled_and_the_forward_is_exact() -> None:
    torch.manual_seed(0)
    block = Block(4)
    inner = block.drop_path
    a = block.lin.weight.detach()
    x = torch.randn(3, 4).requires_grad_(True)
    exact = block(x)
    for factor in (0.5, 0.0, 1.0):
        with skip_gradient(block, factor) as n:
            y = block(x)
            (g,) = torch.autograd.grad(y.sum(), x)
        assert n == (0 if factor == 1.0 else 1) and torch.equal(y, exact)
        # d/dx sum(x + γ·Ax) = 1 + γ·Aᵀ1, per row
        assert torch.allclose(g, (1 + factor * a.sum(0)).expand(3, 4), atol=1e-6), factor
    assert block.drop_path is inner  # restored
    with pytest.raises(RuntimeError), skip_gradient(block, 0.5):
        raise RuntimeError("an error inside")
    assert block.drop_path is inner  # restored on error too


def test_only_branches_before_a_shortcut_are_found() -> None:
    net = nn.Sequential(Block(4), Block(4, has_skip=False), Block(4))
    assert [net[0], net[2]] == [b for b, _ in residual_branches(net)]
    lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    assert len(residual_branches(lite0)) == 9  # the inverted residuals with stride 1 and as many channels out as in
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = lite0(x)
        with skip_gradient(lite0, 0.5):
            during = lite0(x)
    assert torch.equal(before, during)
    assert residual_branches(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())) == []


def test_a_style_applies_it_to_class_pictures_and_records_it() -> None:
    from preimage.tasks.activation import maximize

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = ResidualClassifier().eval()
    base = Style("x", param=STYLES["natural"].param, transforms=(), iters=4)
    half = Style("x", param=STYLES["natural"].param, transforms=(), iters=4, skip_grad=0.5)
    exact = maximize(net, "class:1", size=96, style=base, prior="none")
    scaled = maximize(net, "class:1", size=96, style=half, prior="none")
    assert scaled.info["skip_grad"] == 0.5 and scaled.jobs[0]["config"]["options"]["style"]["skip_grad"] == 0.5
    assert "skip_grad" not in exact.info
    assert not torch.equal(exact.images, scaled.images)  # another gradient, another picture
    # a channel is not a class picture: the style's skip_grad does not apply
    unit = maximize(net, "body.1:2", size=96, style=half, prior="none")
    assert "skip_grad" not in unit.info
    # an explicit skip_grad wins, for any target; 1 is the exact gradient whatever the style
    asked = maximize(net, "body.1:2", size=96, style=base, prior="none", skip_grad=0.5)
    assert asked.info["skip_grad"] == 0.5 and not torch.equal(asked.images, maximize(
        net, "body.1:2", size=96, style=base, prior="none").images)
    same = maximize(net, "class:1", size=96, style=half, prior="none", skip_grad=1)
    assert "skip_grad" not in same.info and torch.equal(same.images, exact.images)
    for bad in (1.5, -1, "x", float("nan")):
        with pytest.raises(PreimageError, match="skip_grad"):
            maximize(net, "class:1", size=96, style=base, skip_grad=bad)
    # a network without marked residual branches keeps (and records) the exact gradient
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    a = maximize(plain, "class:1", size=64, style=half, prior="none")
    b = maximize(plain, "class:1", size=64, style=base, prior="none")
    assert "skip_grad" not in a.info and torch.equal(a.images, b.images)


def test_skip_grad_is_checked_and_recorded_with_the_style() -> None:
    assert get_style(style_record(Style("x", skip_grad=0.5))).skip_grad == 0.5
    assert "skip_grad" not in style_record(Style("x"))
    for bad in (-0.1, 1.5, True, "0.5", float("nan")):
        with pytest.raises(PreimageError, match="skip_grad"):
            Style("x", skip_grad=bad)


def test_the_cli_takes_skip_grad_and_refuses_a_bad_one(tmp_path, capsys) -> None:
    from preimage.cli import main

    code = main(["maximize", "--objective", "class:25", "--size", "32", "--iters", "2", "--candidates", "1",
                 "--skip-grad", "0.25", "--json", "--out", str(tmp_path / "a")])
    assert code == 0 and json.loads(capsys.readouterr().out)["skip_grad"] == 0.25
    for bad in ("2", "-0.1", "x"):
        code = main(["maximize", "--objective", "class:25", "--iters", "2", "--skip-grad", bad, "--out",
                     str(tmp_path / "b")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--skip-grad" in err, err
    assert not (tmp_path / "b").exists()


def test_accentuate_takes_skip_grad() -> None:
    from preimage import load_image
    from preimage.tasks.accentuate import accentuate

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net, x0 = ResidualClassifier().eval(), load_image("sample:chelsea", 48)
    exact = accentuate(net, x0, "class:1", steps=3, attribution=False)
    scaled = accentuate(net, x0, "class:1", steps=3, attribution=False, skip_grad=0.5)
    assert "skip_grad" not in exact.info and scaled.info["skip_grad"] == 0.5
    assert not torch.equal(exact.images, scaled.images)
    with pytest.raises(PreimageError, match="skip_grad"):
        accentuate(net, x0, "class:1", steps=1, skip_grad=2.0)
