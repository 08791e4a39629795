"""Performance machinery, checked by value (never by time): closed-form prior gradients, the optimizer loop's
equivalence to plain autograd, mixed precision, bench's JSON, and clear errors for absent devices."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from preimage.engine.objectives import Inversion
from preimage.engine.optimize import Energy, noise_init, optimize
from preimage.engine.regularizers import (
    alpha_norm,
    alpha_norm_and_grad,
    colour_norms2,
    project_ball,
    rowdot,
    tv_beta,
    tv_beta_and_grad,
)
from preimage.engine.rng import ProblemRNG
from preimage.engine.runtime import amp_dtype, borrowed, channels_last, keep_freed_memory
from preimage.engine.schedules import Stage
from preimage.engine.transforms import centre_crop, place_on_canvas, random_offsets, windows
from preimage.errors import PreimageError
from preimage.experiments.bench import deepest_layer, interleaved, lucent_name
from preimage.representations import Representation, load, parse_device


@pytest.fixture(autouse=True)
def _one_thread():
    # These problems are tiny: a second thread only adds synchronisation (and stalls on a busy machine).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny(dtype: torch.dtype = torch.float32) -> Representation:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
    net.eval().to(dtype)
    return load(net, "5", input_size=(16, 16)).to(dtype)


@pytest.mark.parametrize("alpha", [2.0, 3.0, 6.0])
@pytest.mark.parametrize("beta", [1.0, 1.5, 2.0])
def test_closed_form_prior_gradients_equal_autograd(alpha: float, beta: float) -> None:
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 30
    x[0, :, :3, :3] = 4.0  # flat patch: zero differences exercise the β<2 clamp
    xr = x.clone().requires_grad_(True)
    want = 0.5 * alpha_norm(xr, alpha) + 3.0 * tv_beta(xr, beta)
    (g_want,) = torch.autograd.grad(want.sum(), xr)
    va, g = alpha_norm_and_grad(x, alpha, 0.5)
    vt, g = tv_beta_and_grad(x, beta, 3.0, grad=g)
    torch.testing.assert_close(va + vt, want.detach())
    torch.testing.assert_close(g, g_want)
    e = Energy(alpha=alpha, beta=beta)
    v, g2 = e.regularizer_and_grad(x)
    torch.testing.assert_close(v, e.regularizer(x))
    off_v, off_g = Energy(regularize=False).regularizer_and_grad(x)
    assert float(off_v.abs().sum()) == 0.0 and float(off_g.abs().sum()) == 0.0


@pytest.mark.parametrize("n", [1, 3])
def test_colour_norms_and_row_dots_equal_the_plain_formulas(n: int) -> None:
    x = torch.randn(n, 3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    y = torch.randn(n, 3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(n + 10))
    torch.testing.assert_close(colour_norms2(x), (x * x).sum(1, keepdim=True))
    torch.testing.assert_close(rowdot(x, y), (x * y).flatten(1).sum(1))
    # The closed forms for one problem (the BLAS-dot path) equal the differentiable priors too.
    va, g = alpha_norm_and_grad(x[:1], 6.0, 0.5)
    vt, g = tv_beta_and_grad(x[:1], 2.0, 3.0, grad=g)
    torch.testing.assert_close(va + vt, 0.5 * alpha_norm(x[:1]) + 3.0 * tv_beta(x[:1]))


def test_cpu_networks_run_channels_last_with_the_same_features() -> None:
    rep = _tiny(torch.float64)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 40
    with torch.no_grad():
        want = rep(x)
    assert channels_last(rep, torch.device("cpu"))
    assert rep.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = rep(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert not channels_last(rep, torch.device("cuda"))  # other devices keep the network's layout


def test_freed_memory_is_kept_on_glibc() -> None:
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True


@pytest.mark.parametrize("optimizer", ["paper", "adam"])
def test_update_by_chunks_of_problems_equals_the_whole_batch(optimizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    opt = importlib.import_module("preimage.engine.runtime")
    monkeypatch.setenv("PREIMAGE_BATCHED", "1")  # one batch, so that its update can be cut into chunks
    rep = _tiny(torch.float64)
    with torch.no_grad():
        phi0 = rep(torch.randn(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 40)
    obj = Inversion(phi0, torch.tensor([100.0, 20.0, 1.0], dtype=torch.float64))
    runs = []
    for budget in (1 << 30, 3 * 18 * 18 * 2, 1):  # whole batch; 2 problems + 1; one by one (jitter 3: 18×18)
        monkeypatch.setattr(opt, "CPU_UPDATE_CHUNK_ELEMENTS", budget)
        canvas = torch.zeros(3, 3, 18, 18)
        assert len(opt.update_chunks(canvas)) == {1 << 30: 1, 1: 3}.get(budget, 2)
        runs.append(optimize(rep, obj, 3, (16, 16), (Stage(6, 1.0, True),), seed=1, jitter=3, optimizer=optimizer))
    for r in runs[1:]:
        torch.testing.assert_close(r.x, runs[0].x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r.energy, runs[0].energy, rtol=1e-12, atol=1e-12)


def test_projection_keeps_black_pixels_and_bounds_the_rest() -> None:
    x = torch.tensor([[[[0.0, 300.0, 3.0]], [[0.0, 400.0, 4.0]], [[0.0, 0.0, 0.0]]]])
    project_ball(x, 160.0)
    torch.testing.assert_close(x[0, :, 0], torch.tensor([[0.0, 96.0, 3.0], [0.0, 128.0, 4.0], [0.0, 0.0, 0.0]]))


def _reference_loop(rep: Representation, obj, n: int, size: tuple[int, int], stages, seed: int,
                    energy: Energy, jitter: int) -> torch.Tensor:
    """The loop written the plain way: autograd through window and priors on the whole canvas."""
    from preimage.engine.optimize import make_step, seeds_for

    device, dtype = rep.device_dtype()
    rng = ProblemRNG(seeds_for(seed, n))  # each problem's own generator, as optimize draws them
    x = noise_init(rep.channels, size, energy.B, rng)
    for stage in stages:
        J = jitter if stage.jitter else 1
        canvas = place_on_canvas(x.to(device, dtype), J).requires_grad_(True)
        step = make_step("paper", canvas, size, energy, stage.lr_scale)
        for _ in range(stage.iters):
            top, left = random_offsets(n, J, rng)
            e = obj(rep(windows(canvas, top, left, size))) + energy.regularizer(canvas)
            (g,) = torch.autograd.grad(e.sum(), canvas)
            step(canvas.data, g)
            project_ball(canvas.data, energy.bound)
        x = centre_crop(canvas.detach(), size)
    return x


@pytest.mark.parametrize("regularize", [True, False])
def test_fast_loop_equals_plain_autograd_loop_in_float64(regularize: bool) -> None:
    rep = _tiny(torch.float64)
    size = (16, 16)
    with torch.no_grad():
        phi0 = rep(torch.randn(2, 3, *size, dtype=torch.float64) * 40)
    obj = Inversion(phi0, torch.tensor([100.0, 20.0], dtype=torch.float64))
    stages = (Stage(12, 1.0, True), Stage(4, 0.1, False))
    energy = Energy(regularize=regularize)
    got = optimize(rep, obj, 2, size, stages, seed=5, energy=energy, jitter=3)
    want = _reference_loop(rep, obj, 2, size, stages, 5, energy, jitter=3)
    torch.testing.assert_close(got.x, want, rtol=1e-9, atol=1e-9)
    assert got.energy.shape == (16, 2) and bool(torch.isfinite(got.energy).all())


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_mixed_precision_energy_is_close_to_float32(mode: str) -> None:
    rep = _tiny()
    size = (16, 16)
    with torch.no_grad():
        phi0 = rep(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1)) * 40)
    obj = Inversion(phi0, torch.tensor([100.0, 100.0]))
    stages = (Stage(8, 1.0, True),)
    full = optimize(rep, obj, 2, size, stages, seed=2)
    half = optimize(rep, obj, 2, size, stages, seed=2, amp=mode)
    assert half.x.dtype == torch.float32 and half.energy.dtype == torch.float32
    # Same start, same jitter: the energies track each other to within the half-precision network's error.
    torch.testing.assert_close(half.energy[0], full.energy[0], rtol=0.02, atol=0.0)
    torch.testing.assert_close(half.energy[-1], full.energy[-1], rtol=0.1, atol=0.0)


def test_amp_modes_parse_and_reject_unknown() -> None:
    assert amp_dtype(None) is None and amp_dtype(False) is None and amp_dtype("off") is None
    assert amp_dtype(True) is torch.bfloat16 and amp_dtype("BF16") is torch.bfloat16
    assert amp_dtype("fp16") is torch.float16
    with pytest.raises(PreimageError, match="mixed-precision"):
        amp_dtype("int8")


def test_borrowed_restores_the_users_module() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    net[0].bias.requires_grad_(False)
    rep = load(net, "1").to(memory_format=torch.channels_last)
    before = [(p.data_ptr(), p.requires_grad, p.is_contiguous()) for p in net.parameters()]
    with borrowed(rep):
        assert not any(p.requires_grad for p in net.parameters()) and not any(m.training for m in net.modules())
        channels_last(rep, torch.device("cpu"))  # converts the weights' layout inside
    assert all(m.training for m in net.modules())
    assert [(p.data_ptr(), p.requires_grad, p.is_contiguous()) for p in net.parameters()] == before


def test_parameters_get_no_gradient_during_optimize() -> None:
    rep = _tiny()
    rep.net.requires_grad_(True)  # a user's module left trainable
    with torch.no_grad():
        phi0 = rep(torch.randn(1, 3, 16, 16) * 40)
    optimize(rep, Inversion(phi0), 1, (16, 16), (Stage(3, 1.0, False),))
    assert all(p.grad is None for p in rep.net.parameters())
    assert all(p.requires_grad for p in rep.net.parameters())


def test_cuda_absent_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(PreimageError, match="no CUDA GPU"):
        parse_device("cuda")
    with pytest.raises(PreimageError, match="unknown device"):
        parse_device("warp-drive")
    assert parse_device("cpu").type == "cpu"


def test_cli_bench_device_cuda_without_gpu_exits_2_with_one_line(capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from preimage.cli import main

    assert main(["bench", "speed", "--device", "cuda", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0] and "Traceback" not in err[0]


def test_interleaved_medians_and_helpers() -> None:
    calls: list[str] = []
    a, b, r = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), 4, torch.device("cpu"))
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # order alternates, so drift biases neither
    assert a >= 0 and b >= 0 and r > 0
    assert lucent_name("blocks.4") == "blocks_4"
    assert deepest_layer(_tiny()) == "5"


def test_bench_json_has_the_ratios_as_positive_finite_numbers(capsys: pytest.CaptureFixture) -> None:
    from preimage.cli import main

    rc = main(["bench", "speed", "--model", "efficientnet_lite0", "--random-weights", "--layer", "blocks.1",
               "--size", "32", "--batch", "2", "--iters", "2", "--repeats", "1", "--threads", "1", "--no-lucent",
               "--no-memory", "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "efficientnet_lite0" and info["layer"] == "blocks.1" and info["size"] == [32, 32]
    assert info["threads"] == 1 and "skipped" in info["lucent"]
    for key in ("per_iteration", "batching"):
        assert key in info
    assert {"ours_ms", "bare_ms", "ratio"} <= set(info["per_iteration"])
    assert {"batch", "batched_ms", "sequential_ms", "ratio", "network_ratio"} <= set(info["batching"])
    assert len(info["rows"]) == 3
    for row in info["rows"]:
        for k in ("ratio", "ours_ms", "reference_ms"):
            assert math.isfinite(row[k]) and row[k] > 0


def test_bench_bad_channel_fails_before_any_timing(capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from preimage.cli import main

    monkeypatch.setenv("PREIMAGE_LUCENT_PYTHON", sys.executable)  # any existing Python: Lucent "available"
    rc = main(["bench", "speed", "--random-weights", "--layer", "blocks.1", "--size", "32", "--channel", "9999",
               "--no-memory"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == ["error: channel 9999 is out of range for layer 'blocks.1' (24 channels)"]


def test_bench_runs_on_a_network_without_layers(capsys: pytest.CaptureFixture) -> None:
    from preimage.cli import main

    rc = main(["bench", "speed", "--model", "hog", "--size", "32", "--batch", "2", "--iters", "2", "--repeats", "1",
               "--threads", "1", "--no-memory", "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "hog" and info["layer"] == "output"
    assert "named layer" in info["lucent"]["skipped"] or "no Lucent" in info["lucent"]["skipped"]
    assert info["per_iteration"]["ratio"] > 0 and info["batching"]["network_ratio"] > 0


def test_memory_probe_reports_peak_rss_for_the_deepest_layer() -> None:
    from preimage.experiments.bench import peak_memory

    m = peak_memory("efficientnet_lite0", "classifier", (32, 32), random_weights=True, iters=1, n_threads=1)
    assert m["layer"] == "classifier", m
    assert 0 < m["rss_after_load_mb"] <= m["peak_rss_mb"] < 4096
