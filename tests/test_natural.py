"""Beyond the paper: parameterizations (their image statistics), transforms (gradients), the BatchNorm prior,
objectives (direction, diversity, sums), judges (transfer on the saved file), styles and their CLI options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from preimage.cli import main
from preimage.engine import transforms as T
from preimage.engine.objectives import Diversity, InnerProduct, Sum, direction, gram
from preimage.engine.optimize import Energy, optimize
from preimage.engine.param import (
    COLOUR,
    MAGNITUDE_FILE,
    Fourier,
    FourierImage,
    MacoImage,
    PixelImage,
    PyramidImage,
    decorrelated_to_rgb,
    maco_magnitude,
    measure_magnitude,
    parse_param,
    rgb_to_decorrelated,
    spectrum_slope,
)
from preimage.engine.priors import BNPrior, BNStats, view_stats
from preimage.engine.rng import ProblemRNG
from preimage.engine.schedules import Stage
from preimage.engine.styles import Style, get_style, resolve, style_record
from preimage.engine.targets import Channel, Combination, Direction, parse_target
from preimage.engine.transforms import Crops, Jitter
from preimage.errors import PreimageError
from preimage.images import COLOR_SAMPLES, load_image, save_png
from preimage.measures.judge import Judge
from preimage.representations import load

MEAN = torch.full((3,), 127.5)


def rng(n: int, seed: int = 0) -> ProblemRNG:
    """One generator per problem."""
    return ProblemRNG([seed + i for i in range(n)])


def tiny_net(bn: bool = True) -> nn.Module:
    layers = [nn.Conv2d(3, 8, 3, padding=1)] + ([nn.BatchNorm2d(8)] if bn else []) + [nn.ReLU(),
              nn.Conv2d(8, 12, 3, stride=2, padding=1)] + ([nn.BatchNorm2d(12)] if bn else []) + [nn.ReLU()]
    torch.manual_seed(0)
    net = nn.Sequential(*layers, nn.Conv2d(12, 10, 3, padding=1))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def tiny_rep(bn: bool = True, layer: str | None = None):
    return load(tiny_net(bn), layer, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(32, 32))


# --- parameterizations ---------------------------------------------------------------------------------------

def test_fourier_has_a_one_over_f_spectrum_and_applies_the_decorrelation_matrix() -> None:
    p = FourierImage(4, 3, (64, 64), MEAN, float("inf"), rng(4), sd=1.0)
    c = p.decorrelated()
    assert spectrum_slope(c) == pytest.approx(-1.0, abs=0.1)
    # forward = 255·sigmoid(c @ COLOUR.T) − mean: undo the sigmoid and the colour matrix, get c back.
    x = p()
    pre = torch.logit((x + 127.5) / 255.0)
    assert torch.allclose(pre, torch.einsum("nchw,rc->nrhw", c, COLOUR), atol=1e-3)
    assert torch.allclose(rgb_to_decorrelated(pre), c, atol=1e-3)
    # Independent unit-variance coordinates get ImageNet's colour covariance COLOUR·COLOURᵀ.
    z = torch.randn(1, 3, 200, 200, generator=torch.Generator().manual_seed(1))
    rgb = decorrelated_to_rgb(z)[0].flatten(1)
    assert torch.allclose(torch.cov(rgb), COLOUR @ COLOUR.T, atol=0.02)


def test_fourier_and_maco_start_from_an_image() -> None:
    img = load_image("sample:chelsea", 48) - 127.5
    for cls in (FourierImage,):
        p = cls(1, 3, (48, 48), MEAN, float("inf"), rng(1), init=img)
        assert (p() - img.clamp(-127, 127)).abs().max() < 1.0
    m = MacoImage(1, 3, (48, 48), MEAN, float("inf"), rng(1), init=img)
    # Same phase, natural-image magnitude: the picture correlates with the image it started from.
    corr = torch.corrcoef(torch.stack([m().flatten(), img.flatten()]))[0, 1]
    assert corr > 0.5


def test_a_parameterizations_spec_reads_back_and_a_style_with_options_round_trips() -> None:
    steep = Fourier(decay=1.5)
    assert steep.spec() == "fourier(decay=1.5)" and parse_param(steep.spec()) == steep
    # The option reaches the image: a steeper spectrum.
    img = steep.build(1, 3, (64, 64), MEAN, float("inf"), rng(1))
    flat = Fourier().build(1, 3, (64, 64), MEAN, float("inf"), rng(1))
    assert spectrum_slope(img.decorrelated()) < spectrum_slope(flat.decorrelated()) - 0.3
    s = Style("mine", param=steep, iters=10)
    assert get_style(json.loads(json.dumps(style_record(s)))) == s
    for bad in ("fourier(decay=x)", "fourier(nope=1)", "pixel(decay=1)", "fourier(decay=nan)"):
        with pytest.raises(PreimageError, match="is not an option of"):
            parse_param(bad)
    for bad, says in (("fourier(decay=9)", "decay is a number from 0 to 4"), ("fourier(sd=-1)", "sd is a number"),
                      ("pyramid(weight=0)", "weight is a number"), ("fourier(decay=1,decay=2)", "given twice")):
        with pytest.raises(PreimageError, match=says):
            parse_param(bad)
    with pytest.raises(PreimageError, match="decay is a number"):
        Fourier(decay=-1.0)  # the object checks itself: the Python API and the shorthand alike


def test_a_style_takes_the_shorthand_the_tasks_take_and_checks_it() -> None:
    s = Style("mine", param="fourier(decay=1.5)", transforms="jitter:3,crops:2", prior="bn:0.001", iters=np.int64(5))
    assert s == Style("mine", param=Fourier(decay=1.5), transforms=(Jitter(3), Crops(2, 0.5, 1.0)),
                      prior=BNPrior(0.001), iters=5)
    assert isinstance(s.iters, int) and get_style(json.loads(json.dumps(style_record(s)))) == s
    assert Style("none", transforms="none").transforms == () and Style("d").transforms is None
    for kw, says in (({"param": 3}, "unknown parameterization"), ({"transforms": "bogus"}, "bad transform"),
                     ({"transforms": (Crops(2, 0.5, 1.0, out=(8, 8)),)}, "output size"),
                     ({"prior": "xx"}, "unknown prior"), ({"optimizer": "sgd9"}, "unknown optimizer"),
                     ({"iters": 0}, "iters"), ({"iters": 2.5}, "iters"), ({"name": " "}, "name")):
        with pytest.raises(PreimageError, match=says):
            Style(**{"name": "x", **kw})


def test_a_bad_parameterization_option_is_one_line_before_any_work(tmp_path, capsys) -> None:
    code = main(["maximize", "--layer", "classifier", "--unit", "1", "--param", "fourier(decay=9)", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == ["error: fourier's decay is a number from 0 to 4, got 9.0"]
    assert not (tmp_path / "out").exists()


def test_maco_keeps_the_natural_magnitude_and_the_shipped_array_is_the_samples() -> None:
    p = MacoImage(2, 3, (64, 64), MEAN, float("inf"), rng(2))
    amp = torch.fft.rfft2(p.decorrelated()).abs()
    mag = maco_magnitude((64, 64))
    # Bins off the DC and Nyquist columns (irfft2 makes those Hermitian, which a random phase is not).
    per_image = (amp / mag)[..., 1:-1].flatten(2)
    assert (per_image.std(-1) / per_image.mean(-1)).max() < 1e-3  # amplitude ∝ the magnitude, bin by bin
    # The shipped array is the bundled colour samples' mean spectrum (recomputed here, float16 in the file).
    x = torch.cat([load_image(f"sample:{s}", 256) for s in COLOR_SAMPLES])
    shipped = torch.from_numpy(np.load(MAGNITUDE_FILE).astype(np.float32))
    assert torch.allclose(measure_magnitude(x), shipped, rtol=2e-3, atol=1e-3)
    assert spectrum_slope(p.decorrelated()) < -0.8  # natural images fall off roughly as 1/f


def test_pixel_param_is_the_image_and_projects_in_place() -> None:
    x = torch.randn(2, 3, 8, 8) * 200
    p = PixelImage(x, MEAN, 160.0)
    assert torch.equal(p(), x)
    p.project_()
    assert p().norm(dim=1).max() <= 160.0 + 1e-3
    assert FourierImage(1, 3, (8, 8), MEAN, 160.0, rng(1), sd=5.0)().norm(dim=1).max() <= 160.0 + 1e-3


def test_pyramid_is_the_weighted_sum_of_its_upsampled_levels() -> None:
    x = torch.randn(2, 3, 16, 16) * 20
    p = PyramidImage(2, 3, (16, 16), MEAN, 160.0, init=x, levels=3, weight=0.5)
    assert [tuple(t.shape[-2:]) for t in p.levels] == [(16, 16), (8, 8), (4, 4)]
    assert torch.equal(p(), x)  # coarse levels start at zero
    with torch.no_grad():
        p.levels[2].fill_(8.0)  # a constant up-samples to itself, weighted by 0.5²
    assert torch.allclose(p(), x + 2.0)
    # Each output pixel's bilinear weights sum to 1, so a level's gradient under d(sum)/dx = 1 sums to w^k·N·C·H·W.
    grads = torch.autograd.grad(p().sum(), list(p.levels))
    for k, g in enumerate(grads):
        assert g.sum().item() == pytest.approx(0.5 ** k * 2 * 3 * 16 * 16, rel=1e-5)
    assert PyramidImage(1, 3, (8, 8), MEAN, 160.0, init=torch.full((1, 3, 8, 8), 500.0))().norm(dim=1).max() <= 160.01
    # Its own start: the mean image plus a trace of seeded noise (restarts differ; HOG's gradient is not zero).
    start = PyramidImage(2, 3, (8, 8), MEAN, 160.0, rng=rng(2))()
    assert 0 < start.abs().max() < 0.1 and not torch.equal(start[0], start[1])


def test_fast_style_is_adam_then_lbfgs_on_the_spectrum_and_beats_the_paper_at_equal_steps() -> None:
    from preimage.tasks.inversion import invert

    rep = tiny_rep(bn=False)
    img = load_image("sample:coffee", 32)
    fast = invert(rep, img, style="fast", iters=40)
    paper = invert(rep, img, iters=40)
    stage = {"jitter": 1, "param": "fourier", "transforms": 0, "prior": None}
    assert fast.info["stages"] == [{"iters": 3, "lr": 0.25, **stage, "optimizer": "adam"},
                                   {"iters": 37, "lr": 1.0, **stage, "optimizer": "lbfgs"}]  # 10 + 110, scaled
    assert fast.info["optimizer"] == "adam+lbfgs" and fast.info["param"] == "fourier"
    assert fast.metrics["error"].item() < paper.metrics["error"].item()


def test_hybrid_optimizer_is_adam_on_the_full_size_level_and_the_papers_on_the_coarser_ones() -> None:
    from preimage.engine.optimize import AdamStep, AutogradPath, PaperStep

    p = PyramidImage(2, 3, (16, 16), MEAN, 160.0, rng=rng(2))
    assert p.step_names("hybrid") == ["adam"] + ["paper"] * 4 and p.step_names("adam") == ["adam"] * 5
    path = AutogradPath(tiny_rep(bn=False), None, None, p, 2, (16, 16), Energy(), None, None, None, None, rng(2))
    path.start(Stage(10, 0.5, False))
    assert [type(s) for s in path.steps] == [AdamStep] + [PaperStep] * 4
    assert path.steps[0].lr == pytest.approx(p.lr * 0.5)  # Adam's rate, in paper units, scaled by the stage
    assert 1 / path.steps[1].inv_lr == pytest.approx(16 * 16 * Energy().lr0 * 0.5)  # the paper's H·W·lr0
    # One step moves the full-size level by Adam's rate exactly (its first step is lr·sign(g)).
    g = torch.randn_like(p.levels[0])
    before = p.levels[0].detach().clone()
    path.steps[0](p.levels[0].data, g)
    assert torch.allclose((p.levels[0] - before).abs(), torch.full_like(g, p.lr * 0.5), atol=2e-3)
    with pytest.raises(PreimageError, match="hybrid optimizer is the pyramid's"):
        AutogradPath(tiny_rep(bn=False), None, None, PixelImage(torch.zeros(1, 3, 8, 8), MEAN, 160.0), 1, (8, 8),
                     Energy(), "hybrid", None, None, None, rng(1)).optimizer_for(Stage(1))
    from preimage.tasks.inversion import invert

    with pytest.raises(PreimageError, match="use param pyramid"):  # the pixels' fast path says the same
        invert(tiny_rep(bn=False), load_image("sample:coffee", 16), optimizer="hybrid", iters=1)


def test_fast_style_starts_hog_off_its_flat_saddle() -> None:
    # HOG's gradient vanishes on a flat image: from the exact mean image the pyramid would never move (100 %).
    from preimage.tasks.inversion import invert

    res = invert("hog", "sample:camera", size=48, style="fast", iters=40)
    assert res.metrics["error"].item() < 0.6


# --- transforms ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["jitter:3", "scale:0.8-1.2", "rotate:20", "flip:1", "crops:3:0.5-0.9",
                                  "noise:7"])
def test_gradients_through_every_transform(spec: str) -> None:
    (t,) = T.parse_transforms(spec)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(t(x.detach(), rng(2, 3)).shape, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (t(x, rng(2, 3)) * w).sum()

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


def test_transforms_shapes_and_order() -> None:
    x = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 16, 16).contiguous()
    v = T.compose(T.parse_transforms("standard,crops:4,flip"), x, rng(2))
    assert v.shape == (8, 3, 16, 16)
    # Crop-major: rows j·N + i are views of problem i.
    assert torch.allclose(v.view(4, 2, -1)[:, 1].max(1).values, torch.ones(4), atol=1e-5)
    assert v.view(4, 2, -1)[:, 0].abs().max() == 0
    assert T.parse_transforms("none") == [] and T.parse_transforms(None) is None
    # Objects and lists of them are the same transforms as their shorthand.
    assert T.parse_transforms([T.Jitter(8), "scale:0.95-1.05", T.Rotate(5), T.Jitter(4)]) == T.standard()
    assert T.transforms_spec(T.parse_transforms("standard")) == "jitter:8,scale:0.95-1.05,rotate:5,jitter:4"
    # Each problem draws its own offsets: a problem's views are the same alone as in a batch.
    one = T.compose([T.Jitter(5), T.Crops(2)], x[1:], ProblemRNG([7]))
    two = T.compose([T.Jitter(5), T.Crops(2)], x, ProblemRNG([3, 7]))
    assert torch.equal(two.view(2, 2, *x.shape[1:])[:, 1], one)
    for bad in ("jitter:0", "scale:2-1", "crops:0", "crops:2:0.5-1.5", "warp:3", "rotate:x"):
        with pytest.raises(PreimageError, match="bad transform"):
            T.parse_transforms(bad)


def test_noise_adds_its_level_per_view_and_draws_per_problem() -> None:
    x = torch.zeros(2, 3, 64, 64)
    v = T.compose(T.parse_transforms("crops:2,noise:16"), x, rng(2))
    assert v.shape == (4, 3, 64, 64)
    d = v.flatten(1)
    assert d.mean(1).abs().max() < 0.5 and torch.allclose(d.std(1), torch.full((4,), 16.0), rtol=0.03)
    # Every view its own draw; a problem's noise is the same alone as in a batch.
    assert (d[0] - d[1]).abs().mean() > 10 and (d[0] - d[2]).abs().mean() > 10
    one = T.Noise(16)(x[1:], ProblemRNG([7]))
    two = T.Noise(16)(x, ProblemRNG([3, 7]))
    assert torch.equal(two[1:], one) and torch.equal(T.Noise(0)(x, rng(2)), x)
    assert T.transforms_spec(T.parse_transforms("noise:16")) == "noise:16"
    for bad in ("noise", "noise:-1", "noise:300", "noise:x"):
        with pytest.raises(PreimageError, match="bad transform|noise level"):
            T.parse_transforms(bad)
    # Objects built in Python refuse a non-number with the same one line, not a TypeError.
    for make in (lambda: T.Noise(None), lambda: T.Rotate("5"), lambda: T.Scale("a"), lambda: T.Flip(True),
                 lambda: T.Crops(2, "a")):
        with pytest.raises(PreimageError, match=r"is 0 to|range is|probability is|crops are"):
            make()


def test_crops_seen_at_another_size() -> None:
    """A canvas larger than the network's input (accentuate's canvas): crops resampled to the network's size; a
    whole-canvas crop at half the side is the 2×2 mean. Users cannot set the size: a task binds its target at the
    image's."""
    x = torch.randn(2, 3, 32, 48)
    t = T.Crops(3, 1, 1, (16, 24))
    v = t(x, rng(2))
    assert v.shape == (6, 3, 16, 24) and t.spec() == "crops:3:1-1:16x24"
    assert torch.allclose(v[:2], F.avg_pool2d(x, 2), atol=1e-5)
    assert T.Crops(2, 0.5, 1, 16).out == (16, 16) and T.Crops(2, 0.5, 1, 16).spec() == "crops:2:0.5-1:16"
    xd = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: T.Crops(2, 0.5, 1, (8, 10))(y, rng(2, 3)).sum(), (xd,), eps=1e-6,
                                    atol=1e-5)
    for bad in ("crops:2:0.5-1:16", "crops:2:0.5-1:x"):
        with pytest.raises(PreimageError, match="bad transform"):
            T.parse_transforms(bad)
    for bad in (T.Crops(2, 0.5, 1, 16), [T.Jitter(3), T.Crops(2, 0.5, 1, 16)]):
        with pytest.raises(PreimageError, match="canvas"):
            T.parse_transforms(bad)
    with pytest.raises(PreimageError, match="crop's size"):
        T.Crops(2, 0.5, 1, (16, True))
    with pytest.raises(PreimageError, match="crop's size"):
        T.Crops(2, 0.5, 1, 4)


# --- BatchNorm prior -----------------------------------------------------------------------------------------

def test_bn_prior_is_zero_at_the_running_statistics() -> None:
    rep = tiny_rep()
    x = torch.randn(1, 3, 32, 32) * 60
    prior = BNStats(rep, weight=1.0)

    def value(img: torch.Tensor) -> float:
        with torch.no_grad(), prior.watching(rep):
            rep(img)
            return float(prior.value(1))

    before = value(x)
    # Set each BatchNorm layer's running statistics to those of its input on x, in order (a layer's statistics
    # change what the next one sees).
    for bn in prior.layers:
        seen: list = []
        h = bn.register_forward_pre_hook(lambda m, a, seen=seen: seen.append(view_stats(a[0], 1)) and None)
        with torch.no_grad():
            rep(x)
        h.remove()
        bn.running_mean.copy_(seen[0][0][0])
        bn.running_var.copy_(seen[0][1][0])
    assert before > 0.1
    assert value(x) == pytest.approx(0.0, abs=1e-4)
    assert value(x + 10) > 1e-3
    with pytest.raises(PreimageError, match="BatchNorm"):
        BNStats(tiny_rep(bn=False))
    with pytest.raises(PreimageError, match="BatchNorm"):
        resolve(tiny_rep(bn=False), "paper", prior="bn")


def test_the_natural_styles_prior_is_bn_only_where_a_batchnorm_runs_before_the_target() -> None:
    # conv_stem comes before efficientnet_lite0's first BatchNorm (bn1); blocks.1 contains some and follows bn1.
    assert resolve(load("efficientnet_lite0", "conv_stem"), "natural")[0].prior is None
    assert resolve(load("efficientnet_lite0", "bn1"), "natural")[0].prior == BNPrior(1e-4, required=False)
    style, kw = resolve(load("efficientnet_lite0", "blocks.1"), "natural")
    assert style.prior is not None and kw["prior"] is not None
    # An object, its shorthand and the flags' weight name the same prior.
    assert resolve(load("efficientnet_lite0", "blocks.1"), "paper", prior="bn:0.5")[0].prior == BNPrior(0.5)
    assert resolve(load("efficientnet_lite0", "blocks.1"), "paper", prior=BNPrior(0.5))[0].prior.spec() == "bn:0.5"


# --- objectives ----------------------------------------------------------------------------------------------

def test_direction_sum_and_targets() -> None:
    phi = torch.randn(2, 4, 3, 3)
    v = torch.tensor([1.0, 2.0, 0.0, -2.0])
    d = direction(v, (4, 3, 3))
    expect = -(phi * (v / 3).view(1, 4, 1, 1)).sum((1, 2, 3)) / 9
    assert torch.allclose(d(phi), expect, atol=1e-6)
    u = InnerProduct(torch.zeros(1, 4, 3, 3).index_fill_(1, torch.tensor([0]), 1.0))
    s = 2 * u - 0.5 * d
    assert isinstance(s, Sum) and torch.allclose(s(phi), 2 * u(phi) - 0.5 * d(phi))
    assert [w for w, _ in (s + d).terms] == [2.0, -0.5, 1.0]
    with pytest.raises(PreimageError, match="channels"):
        direction(torch.ones(3), (4, 3, 3))


def test_targets_compose_and_their_strings_are_shorthand(tmp_path) -> None:
    np.save(tmp_path / "v.npy", np.array([1.0, 2.0, 0.0], dtype=np.float32))
    (t,) = parse_target(f"blocks.3:1 + 0.5*direction:blocks.3:{tmp_path / 'v.npy'} - 1e2*diversity@blocks.2")
    assert isinstance(t, Combination) and [w for w, _ in t.terms()] == [1.0, 0.5, -100.0]
    assert t.terms()[1][1] == Direction("blocks.3", [1.0, 2.0, 0.0])  # equal by values, whatever their name
    obj = Channel("blocks.3", 1) - 0.5 * Channel("blocks.3", 7)
    assert parse_target(obj.spec()) == [obj] and parse_target("blocks.3:1")[0] == Channel("blocks.3", 1)
    assert [o.spec() for o in parse_target("layer2:0-2")] == [f"channel:layer2:{u}" for u in range(3)]
    assert parse_target("neuron:blocks.3:4@cls")[0].spec() == "neuron:blocks.3:4@cls"
    assert parse_target("class:25")[0].label == "class 25"
    with pytest.raises(PreimageError, match="cancel out"):
        Channel("a", 1) - Channel("a", 1)
    for bad in ("blocks.3: +", "2*wobble", "direction", "blocks.3:x", "", "blocks.3:1 + blocks.3:2-4"):
        with pytest.raises(PreimageError) as e:
            parse_target(bad)
        assert e.value.params == ("target",), bad


def test_diversity_separates_restarts() -> None:
    rep = tiny_rep(layer="3")
    with torch.no_grad():
        shape = rep(torch.zeros(1, 3, 32, 32)).shape[1:]
    w = torch.zeros(1, *shape)
    w[:, 3] = 1.0 / (shape[1] * shape[2])
    unit = InnerProduct(w.expand(4, *shape))

    def similarity(weight: float) -> float:
        obj = unit + weight * Diversity() if weight else unit
        tr = optimize(rep, obj, 4, (32, 32), (Stage(30, 1.0, False),), seed=1, param="fourier",
                      transforms=[])
        with torch.no_grad():
            g = gram(rep(tr.x)).flatten(1)
        sim = g @ g.T
        return float((sim.sum() - sim.diagonal().sum()) / 12)

    assert similarity(50.0) < similarity(0.0) - 0.05


# --- the loop with other parameterizations ------------------------------------------------------------------

@pytest.mark.parametrize("param", ["fourier", "maco", "pixel", "pyramid"])
def test_autograd_path_lowers_the_energy_and_is_deterministic(param: str) -> None:
    rep = tiny_rep()
    with torch.no_grad():
        phi0 = rep(load_image("sample:coffee", 32) - 127.5)
    from preimage.engine.objectives import Inversion

    obj = Inversion(phi0.expand(2, -1, -1, -1), 100.0)
    kw = {"param": param, "transforms": T.parse_transforms("jitter:3,crops:2"), "prior": BNStats(rep, 0.01),
          "optimizer": "adam" if param == "pixel" else None}
    sched = (Stage(25, 1.0, True), Stage(5, 0.1, False))
    a = optimize(rep, obj, 2, (32, 32), sched, seed=0, **kw)
    b = optimize(rep, obj, 2, (32, 32), sched, seed=0, **kw)
    assert torch.equal(a.x, b.x)
    assert (a.energy[-5:].mean(0) < 0.8 * a.energy[:3].mean(0)).all(), (param, a.energy[:3], a.energy[-5:])
    assert a.x.shape == (2, 3, 32, 32) and a.x.norm(dim=1).max() <= Energy().bound + 1e-3
    assert a.stages[0]["param"] == param and a.stages[1]["transforms"] == 0


# --- judges and transfer -------------------------------------------------------------------------------------

def test_transfer_is_the_judges_softmax_on_the_saved_file(tmp_path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5)).eval()
    judge = Judge(load(net, None, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), input_size=(20, 20)))
    img = torch.rand(3, 37, 29) * 255
    path = save_png(img, tmp_path / "p.png")
    got = judge.classes([path], [3])
    # As a user would: decode the PNG, resize to the judge's input size, normalize, softmax.
    a = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
    a = F.interpolate(a, size=(20, 20), mode="bicubic", antialias=True, align_corners=False).clamp(0, 255)
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        p = net((a / 255 - mean) / std).softmax(1)[0]
    assert got["probability"][0] == pytest.approx(float(p[3]), abs=1e-5)
    assert got["top1"][0] == (int(p.argmax()) == 3) and got["judge_top1"][0] == int(p.argmax())
    agree = judge.agreement([path], img[None])
    assert agree["agree"][0] == (agree["original_top1"][0] == int(p.argmax()))
    with pytest.raises(PreimageError, match="out of range"):
        judge.classes([path], [7])


def test_efficientnet_lite1_judge_recognises_a_cat() -> None:
    judge = Judge("efficientnet_lite1")
    assert judge.size == (240, 240)
    probs = judge.probabilities(load_image("sample:chelsea", 240))
    assert int(probs.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


# --- the command line ----------------------------------------------------------------------------------------

def test_maximize_natural_with_judge_cli(tmp_path, capsys) -> None:
    rc = main(["maximize", "--layer", "classifier", "--unit", "1", "--size", "64", "--iters", "3",
               "--style", "natural", "--transforms", "jitter:3,crops:2", "--judge", "efficientnet_lite1",
               "--out", str(tmp_path), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["style"] == "natural" and out["param"] == "fourier" and out["prior"] == "auto:0.0001"
    t = out["transfer"]["efficientnet_lite1"]
    judge = Judge("efficientnet_lite1")
    assert t["probability"][0] == pytest.approx(judge.classes([out["image"]], [1])["probability"][0], abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--param", "wavelet"], "parameterization"),
    (["--prior", "gan"], "prior"),
    (["--transforms", "jitter:0"], "bad transform"),
    (["--style", "fancy"], "style"),
    (["--judge", "nosuchnet"], "unknown model"),
    (["--objective", "unit + direction:classifier:missing.npy"], "direction file"),
    (["--model", "alexnet", "--random-weights", "--prior", "bn"], "BatchNorm"),
])
def test_bad_new_options_end_in_one_line(tmp_path, capsys, args, message) -> None:
    rc = main(["maximize", "--layer", "classifier", "--unit", "1", "--iters", "1", "--out", str(tmp_path)] + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--classes", "x"], "--classes"),
    (["--classes", "reportin"], "'tuning', 'reporting' or class indices"),
    (["--classes", "25", "--styles", "fancy"], "unknown variant"),
    (["--classes", "1000"], "out of range"),
])
def test_bench_transfer_bad_input(tmp_path, capsys, args, message) -> None:
    rc = main(["bench", "transfer", "--no-lucent", "--out", str(tmp_path / "t"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "t").exists()


def test_every_transfer_variant_is_options_maximize_takes() -> None:
    from preimage.engine.priors import parse_prior
    from preimage.engine.transforms import parse_transforms
    from preimage.experiments.transfer import VARIANTS
    from preimage.sweep.runners import task_kwargs
    from preimage.tasks.activation import maximize

    for name, settings in VARIANTS.items():
        assert task_kwargs(maximize, settings) == settings, name
        parse_transforms(settings.get("transforms"))
        parse_prior(settings.get("prior"))


def test_bench_transfer_is_a_sweep_whose_rerun_is_a_cache_hit(tmp_path, capsys) -> None:
    args = ["bench", "transfer", "--no-lucent", "--classes", "25", "--styles", "natural", "--iters", "2",
            "--out", str(tmp_path / "t"), "--json"]
    runs = []
    for extra in ([], [], ["--force"]):
        assert main(args + extra) == 0
        runs.append(json.loads(capsys.readouterr().out)["rows"][0])
    assert [r["cached"] for r in runs] == [0, 1, 0]
    assert runs[0]["probability"] == runs[1]["probability"] == runs[2]["probability"]  # same seed, same picture
    assert 0 <= runs[0]["probability"][0] <= 1 and runs[0]["per_image_seconds"] > 0
    assert (tmp_path / "t" / "natural" / "class25.png").stat().st_size > 0


def test_bench_lucent_python_that_does_not_exist_is_an_error(tmp_path, capsys) -> None:
    for cmd in (["bench", "speed"], ["bench", "transfer", "--out", str(tmp_path / "t")]):
        rc = main([*cmd, "--lucent-python", str(tmp_path / "nonexistent")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "--lucent-python" in err[0]
    assert not list(tmp_path.iterdir())


def test_natural_style_leaves_pixels_their_whole_range_on_a_small_network() -> None:
    # The paper's ball of radius B+ = 160 around the mean colour cuts values real images have: on the digits
    # network (mean 78.9 in 0-255) it capped white at 238.9, and the shapes network's units at 0.75-0.8 of their
    # natural maximum (objective_sizes.md, round 7). On a small network the natural style lifts it; its spectrum
    # keeps its pixels in 0-255 itself.
    import math

    from preimage.engine.optimize import styled_energy
    from preimage.engine.styles import fit_to_small
    from preimage.experiments.smallnet import MEAN, smallnet_rep, smallnet_stats
    from preimage.tasks.activation import maximize

    assert get_style("natural").bound is None and get_style("paper").bound is None
    assert resolve(tiny_rep(bn=False), Style("mine", bound=math.inf))[1]["bound"] == math.inf
    assert fit_to_small(get_style("natural"), (32, 32), 32)[0].bound == math.inf  # small: lifted
    assert fit_to_small(get_style("natural"), (224, 224), 224)[0].bound is None
    assert styled_energy(Energy(), math.inf).bound == math.inf and styled_energy(Energy(), None).bound == 160.0
    assert styled_energy(Energy(B_plus=100.0), math.inf).bound == 100.0  # a user's own B+ stays
    assert get_style(style_record(Style("mine", bound=math.inf))).bound == math.inf
    with pytest.raises(PreimageError, match="bound is a number above 0"):
        Style("mine", bound=0.0)
    r = maximize(smallnet_rep(), ["neuron:conv3:0"], style="natural", size=32, iters=16, stats=smallnet_stats())
    assert float(r.images.max()) > 255 * MEAN[0] + 160 + 1 and float(r.images.max()) <= 255
    assert r.info["bound"] == "none"  # said in the record
