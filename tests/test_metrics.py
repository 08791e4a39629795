"""Metrics against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import lite0
from torch import nn

from preimage import PreimageError, load
from preimage.measures.metrics import (
    as_saved,
    classifier_for,
    feature_error,
    gradient_histogram,
    image_error,
    label_agreement,
    log_odds,
    mean_ci,
    mean_pairwise_distance,
    naturalness,
    restart_spread,
    top1,
)


def test_feature_error_by_hand() -> None:
    phi0 = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    phi = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(feature_error(phi, phi0), torch.tensor([4 / 5, 1.0]))
    mask = torch.tensor([[0.0, 1.0]])
    # Only the second entry counts: |0−4|/|4| = 1 for the first problem.
    assert float(feature_error(phi, phi0, mask)[0]) == pytest.approx(1.0)
    assert torch.equal(feature_error(phi0, phi0), torch.zeros(2))


def test_image_error_and_normalizer() -> None:
    x0 = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])  # pairwise distances 3, 4, 5
    assert mean_pairwise_distance(x0) == pytest.approx(4.0)
    assert torch.equal(image_error(x0, x0), torch.zeros(3))  # identical sets: 0
    x = x0 + torch.tensor([2.0, 0.0])
    assert torch.allclose(image_error(x, x0), torch.full((3,), 0.5))
    assert torch.allclose(image_error(x, x0, normalizer=2.0), torch.ones(3))
    with pytest.raises(PreimageError):
        mean_pairwise_distance(x0[:1])


def test_gradient_histogram_directions() -> None:
    ramp = torch.arange(16.0).repeat(16, 1) * 10  # brightness grows to the right
    h = gradient_histogram(ramp.view(1, 1, 16, 16).expand(1, 3, 16, 16))
    assert h.shape == (1, 18)
    assert float(h.sum()) == pytest.approx(1.0)
    assert int(h.argmax()) == 9 and float(h[0, 9]) == pytest.approx(1.0)  # 0° lies in bin [0°, 20°)
    down = ramp.t().contiguous().view(1, 1, 16, 16)  # grows downwards: −90° with the y axis up
    assert float(gradient_histogram(down)[0, 4]) == pytest.approx(1.0)  # bin [−100°, −80°)


def test_naturalness() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 20, generator=g) * 255
    assert torch.allclose(naturalness(x, x), torch.ones(2))  # an image with itself: 1
    ramp = (torch.arange(16.0).repeat(16, 1) * 10).view(1, 1, 16, 16)
    assert float(naturalness(ramp, ramp.transpose(-1, -2))) == pytest.approx(0.0)  # disjoint orientations
    noise = x[:1, :, :16, :16]
    # The ramp's histogram is one bin, so the intersection is the noise's mass in that bin.
    assert float(naturalness(noise, ramp)) == pytest.approx(float(gradient_histogram(noise)[0, 9]))


def test_as_saved_minmax_clip_raw() -> None:
    x = torch.tensor([-10.0, 0.0, 10.0]).view(1, 1, 1, 3)
    assert as_saved(x, "minmax").flatten().tolist() == [0.0, 128.0, 255.0]
    assert as_saved(x, "clip").flatten().tolist() == [0.0, 0.0, 10.0]
    assert torch.equal(as_saved(x, "raw"), x)
    with pytest.raises(PreimageError):
        as_saved(x, "gamma")


def test_mean_ci_formula() -> None:
    m, ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(sum((v - 2.5) ** 2 for v in (1, 2, 3, 4)) / 3)
    assert m == pytest.approx(2.5) and ci == pytest.approx(1.96 * std / 2)
    m, ci = mean_ci([0.5, float("nan")])  # NaNs ignored; one value has no interval
    assert m == 0.5 and math.isnan(ci)
    assert all(math.isnan(v) for v in mean_ci([]))


def test_restart_spread() -> None:
    s = restart_spread(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
    assert torch.allclose(s, torch.tensor([math.sqrt(2.0), 0.0]))
    assert torch.isnan(restart_spread(torch.ones(3, 1))).all()


def test_label_agreement_with_lite0() -> None:
    rep = lite0("blocks.1")
    cls = classifier_for(rep)
    assert cls is not None and cls.layer == "classifier"
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 64, 64, generator=g) * 255
    labels = top1(cls, x0, 64)
    with torch.no_grad():
        direct = rep.net(x0 / 127.5 - 1.0).argmax(1)  # the whole network on its own normalization
    assert torch.equal(labels, direct)
    assert torch.equal(label_agreement(cls, x0, x0, 64), torch.ones(2))
    assert float(label_agreement(cls, x0, x0.flip(0), 64).sum()) == 2.0 * float(labels[0] == labels[1])


def test_classifier_for_without_logits() -> None:
    rep = load(nn.Sequential(nn.Conv2d(3, 4, 3)), "0")
    assert classifier_for(rep) is None


def test_log_odds_is_log_p_over_1_minus_p_and_finite_where_p_rounds_to_1() -> None:
    z = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = torch.tensor([0, 3, 6, 2, 2])
    p = z.softmax(1)[torch.arange(5), c]
    assert torch.allclose(log_odds(z, c), (p / (1 - p)).log(), atol=1e-12)
    assert torch.allclose(log_odds(z, 4), log_odds(z, torch.full((5,), 4)))  # one class for every row
    big = torch.tensor([[60.0, 0.0, 10.0], [70.0, 0.0, 10.0]])  # p(class 0) is 1.0 in float32 for both
    assert bool((big.softmax(1)[:, 0] == 1).all())
    lo = log_odds(big, 0)
    assert torch.allclose(lo, torch.tensor([60.0, 70.0]) - torch.tensor([0.0, 10.0]).logsumexp(0)) and lo[1] > lo[0]
