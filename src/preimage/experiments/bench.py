"""Speed against the bare network and against a peer: what ``preimage bench`` measures.

Every ratio is measured within one run, the two sides interleaved (alternating which goes first) and
repeated; the reported value is the median of the per-repeat ratios, so a machine whose load drifts
during the run biases neither side.

* per iteration: one optimizer iteration (energy, gradient, update, projection, jitter; steady state) ÷ a
  bare forward+backward of the same truncated network on the same batch (gradient w.r.t. the input,
  parameters frozen, the same autocast/compile settings);
* batching: N problems in one batch ÷ N single-problem runs one after another, and the same ratio for the
  bare network alone (what the device gains from a batch at all: the floor of the first ratio);
* memory: peak RSS (CPU; measured in a fresh process) or peak allocated GPU memory, for one problem at the
  layer and at the model's deepest layer;
* Lucent: ms per iteration of Lucent's ``render_vis`` (its own defaults: FFT+decorrelated image, standard
  transforms, Adam) on the same model, layer, channel and image size ÷ ours on the same channel, when a
  Python with ``torch-lucent`` is available (``benchmarks/setup_lucent.sh``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..engine.rng import ProblemRNG
from ..errors import PreimageError
from .peers import HERE as PEERS

#: The script Lucent's Python runs (it ships with the package, so an installed ``preimage bench`` finds it).
LUCENT_RUNNER = PEERS / "lucent_render.py"
#: Where ``benchmarks/setup_lucent.sh`` puts Lucent's virtual environment, from the folder the command runs in.
LUCENT_PYTHON = Path("benchmarks") / "lucent-venv" / "bin" / "python"

Say = Callable[[str], None]


@contextmanager
def threads(n: int | None):
    """torch's intra-op thread count set to ``n`` inside (unchanged for None), restored after."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of ``fn()``, with the device's queue drained before and after."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int,
                device: torch.device) -> tuple[float, float, float]:
    """Time ``a`` and ``b`` alternately (swapping the order each repeat) → (median a, median b, median a/b)."""
    ta, tb, ratios = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            x, y = _timed(a, device), _timed(b, device)
        else:
            y, x = _timed(b, device), _timed(a, device)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def deepest_layer(rep: Any) -> str:
    """The last named module of the network (for a classifier: its output layer)."""
    names = [n for n, _ in rep.net.named_modules() if n]
    if not names:
        raise PreimageError(f"{rep.name} has no named layers")
    return names[-1]


def lucent_name(layer: str) -> str:
    """Lucent's hook name for a module: the dotted path joined with underscores (``blocks.4`` → ``blocks_4``)."""
    return layer.replace(".", "_")


def _problem(rep: Any, n: int, size: tuple[int, int], seed: int = 0):
    """An inversion objective for N noise images (timing does not depend on the image content)."""
    from ..engine.objectives import Inversion
    from ..engine.optimize import noise_init

    device, dtype = rep.device_dtype()
    x0 = noise_init(rep.channels, size, 80.0, ProblemRNG([seed + 1 + i for i in range(n)])).to(device, dtype)
    with torch.no_grad():
        phi0 = rep(x0)
    return Inversion(phi0, torch.full((n,), 100.0, dtype=phi0.dtype, device=device))


def _bare(rep: Any, amp: Any, compile: bool) -> Callable[[torch.Tensor], object]:
    """The reference: a forward+backward of Φ (sum of the features, gradient w.r.t. the input), through the same
    ``DataTerm`` as the optimizer (same layout, autocast and compilation). Φ's parameters are already frozen."""
    from ..engine.runtime import DataTerm

    return DataTerm(rep, lambda phi: phi.flatten(1).sum(1), amp, compile)


def per_iteration(rep: Any, size: tuple[int, int], *, iters: int, repeats: int, amp: Any = None,
                  compile: bool = False) -> dict[str, float]:
    """One optimizer iteration (batch 1, with jitter) ÷ one bare forward+backward of Φ on a 1×C×H×W batch.

    Each repeat runs ``optimize`` for 2·iters iterations and times the second half from its progress
    reports (so the run's set-up and first steps are excluded; the report follows the loop's own finiteness
    check, which drains a GPU's queue), and, in alternating order, ``iters`` bare passes. ``run_ms`` is the
    whole call (set-up included) per iteration.
    """
    from ..engine.optimize import optimize
    from ..engine.schedules import Stage

    device, dtype = rep.device_dtype()
    obj = _problem(rep, 1, size)
    stage = (Stage(2 * iters, 1.0, True),)
    bare = _bare(rep, amp, compile)
    x = torch.randn(1, rep.channels, *size, device=device, dtype=dtype).mul_(40).requires_grad_(True)
    stamps: dict[int, float] = {}

    def ours() -> float:
        stamps.clear()
        t0 = time.perf_counter()
        optimize(rep, obj, 1, size, stage, amp=amp, compile=compile, check_every=iters,
                 progress=lambda done, _total: stamps.__setitem__(done, time.perf_counter()))
        _sync(device)
        run_ms.append(1e3 * (time.perf_counter() - t0) / (2 * iters))
        return (stamps[2 * iters] - stamps[iters]) / iters

    def reference() -> float:
        return _timed(lambda: [bare(x) for _ in range(iters)], device) / iters

    run_ms: list[float] = []
    ours()  # warm-up: measures the layer's geometry once, fills allocator caches, compiles if asked
    reference()
    run_ms.clear()
    a, b = [], []
    for r in range(repeats):
        if r % 2 == 0:
            a.append(ours())
            b.append(reference())
        else:
            b.append(reference())
            a.append(ours())
    return {"ours_ms": 1e3 * statistics.median(a), "bare_ms": 1e3 * statistics.median(b),
            "ratio": statistics.median(x / y for x, y in zip(a, b, strict=True)),
            "run_ms": statistics.median(run_ms)}


def batching(rep: Any, size: tuple[int, int], *, batch: int, iters: int, repeats: int, amp: Any = None,
             compile: bool = False) -> dict[str, float]:
    """N problems in one batch ÷ N single-problem runs one after another (same iterations each), and the same
    ratio for the bare network's forward+backward alone (``network_ratio``): how much the network itself gains
    from a batch on this device, the floor for the first ratio."""
    from ..engine.optimize import optimize
    from ..engine.schedules import Stage

    device, dtype = rep.device_dtype()
    stage = (Stage(iters, 1.0, True),)
    many, one = _problem(rep, batch, size), _problem(rep, 1, size)

    def batched() -> None:
        optimize(rep, many, batch, size, stage, amp=amp, compile=compile)

    def sequential() -> None:
        for s in range(batch):
            optimize(rep, one, 1, size, stage, seed=s, amp=amp, compile=compile)

    batched()
    optimize(rep, one, 1, size, stage, amp=amp, compile=compile)
    a, b, r = interleaved(batched, sequential, repeats, device)

    bare = _bare(rep, amp, compile)
    xs = torch.randn(batch, rep.channels, *size, device=device, dtype=dtype).mul_(40)
    x_many = xs.clone().requires_grad_(True)
    x_ones = [x[None].clone().requires_grad_(True) for x in xs]
    bare(x_many)
    na, nb, nr = interleaved(lambda: [bare(x_many) for _ in range(iters)],
                             lambda: [bare(x) for _ in range(iters) for x in x_ones], repeats, device)
    return {"batch": batch, "batched_ms": 1e3 * a, "sequential_ms": 1e3 * b, "ratio": r,
            "network_batched_ms": 1e3 * na, "network_sequential_ms": 1e3 * nb, "network_ratio": nr}


def _channel_objective(rep: Any, size: tuple[int, int], channel: int):
    """−mean of one channel of the layer's output (Lucent's ``channel`` objective), as an InnerProduct."""
    from ..engine.objectives import InnerProduct

    device, dtype = rep.device_dtype()
    with torch.no_grad():
        shape = rep(torch.zeros(1, rep.channels, *size, device=device, dtype=dtype)).shape
    if len(shape) < 2 or not 0 <= channel < shape[1]:
        raise PreimageError(f"channel {channel} is out of range for layer '{rep.layer}' ({shape[1]} channels)")
    w = torch.zeros(shape[1:], device=device, dtype=dtype)
    w[channel] = 1.0 / max(w[channel].numel(), 1)
    return InnerProduct(w[None])


def ours_channel_ms(rep: Any, size: tuple[int, int], channel: int, *, iters: int, repeats: int, amp: Any = None,
                    compile: bool = False) -> float:
    """Our ms per iteration maximizing one channel (batch 1, jitter), median over repeats."""
    from ..engine.optimize import optimize
    from ..engine.schedules import Stage

    device = rep.device_dtype()[0]
    obj = _channel_objective(rep, size, channel)
    stage = (Stage(iters, 1.0, True),)

    def run() -> None:
        optimize(rep, obj, 1, size, stage, amp=amp, compile=compile)

    run()
    return 1e3 * statistics.median(_timed(run, device) for _ in range(repeats)) / iters


def lucent_python(explicit: str | None = None) -> Path | None:
    """The Python that runs Lucent: ``explicit``, $PREIMAGE_LUCENT_PYTHON, or ./benchmarks/lucent-venv (a source
    checkout's, when run from its root). An ``explicit`` path that is not a file is an error, never ignored."""
    if explicit is not None and not Path(explicit).is_file():
        raise PreimageError(f"lucent_python_path {explicit!r} is not a file: give the Python of an environment "
                            "with torch-lucent (benchmarks/setup_lucent.sh makes one)", param="lucent_python_path")
    for cand in (explicit, os.environ.get("PREIMAGE_LUCENT_PYTHON"), str(LUCENT_PYTHON)):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def lucent(rep: Any, size: tuple[int, int], channel: int, *, iters: int, repeats: int, python: Path,
           n_threads: int, timeout: float = 900.0) -> dict[str, Any]:
    """ms per iteration of Lucent's ``render_vis`` on this network (pickled whole), run by ``python``."""
    device = rep.device_dtype()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.pt"
        torch.save(rep.net, path)
        cmd = [str(python), str(LUCENT_RUNNER), "--model-file", str(path), "--layer", lucent_name(rep.layer or ""),
               "--channel", str(channel), "--size", str(size[0]), "--iters", str(iters), "--repeats", str(repeats),
               "--threads", str(n_threads), "--device", str(device)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"skipped": f"Lucent run timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"Lucent run failed: {last}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


_PROBE = """
import json, resource, sys, torch
from preimage.experiments.bench import _memory_probe
print(json.dumps(_memory_probe(**json.loads(sys.argv[1]))))
"""


def _rss_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _memory_probe(model: str, layer: str | None, weights: str | None, random_weights: bool, size: list[int],
                  n: int, iters: int, n_threads: int | None) -> dict[str, Any]:
    """In a fresh process: load Φ, run a short inversion as ``invert`` does, report resident memory (MB).

    ``peak_rss_mb`` is the whole run's peak (libraries, weights, the layer's geometry measurement, the
    inversion); ``inversion_peak_rss_mb`` the peak from just before the optimizer loop, where the kernel can
    reset the peak counter.
    """
    import resource

    from ..engine.optimize import optimize
    from ..engine.schedules import Stage
    from ..representations import load

    with threads(n_threads):
        rep = load(model, layer, weights=weights, random_weights=random_weights)
        hw = (size[0], size[1])
        obj = _problem(rep, n, hw)
        loaded = _rss_mb("VmRSS")
        jitter = rep.geometry().jitter  # what the first inversion at a layer measures (then cached)
        geometry_peak = _rss_mb("VmHWM")
        reset = _reset_peak_rss()
        optimize(rep, obj, n, hw, (Stage(iters, 1.0, True), Stage(1, 0.1, False)), jitter=jitter)
        inv_peak = _rss_mb("VmHWM") if reset else None
    # ru_maxrss is not used where /proc is: Linux carries the parent's peak across fork+exec into it.
    peak = max(geometry_peak or 0, inv_peak or 0) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"layer": rep.layer or "output", "problems": n, "size": list(hw), "rss_after_load_mb": loaded,
            "geometry_peak_rss_mb": geometry_peak, "inversion_peak_rss_mb": inv_peak, "peak_rss_mb": peak}


def peak_memory(model: str, layer: str | None, size: tuple[int, int], *, n: int = 1, iters: int = 3,
                weights: str | None = None, random_weights: bool = False, n_threads: int | None = None,
                rep: Any = None) -> dict[str, Any]:
    """Peak memory of a short inversion: RSS of a fresh process on CPU, peak allocated memory on CUDA."""
    if rep is not None and rep.device_dtype()[0].type == "cuda":
        from ..engine.optimize import optimize
        from ..engine.schedules import Stage
        from ..representations import Representation

        dev = rep.device_dtype()[0]
        r = rep if rep.layer == layer else Representation(rep.spec, layer).to(dev)
        obj = _problem(r, n, size)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        optimize(r, obj, n, size, (Stage(iters, 1.0, True),))
        return {"layer": r.layer or "output", "problems": n,
                "peak_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20,
                "weights_and_inputs_mb": base / 2**20}
    args = {"model": model, "layer": layer, "weights": weights, "random_weights": random_weights,
            "size": list(size), "n": n, "iters": iters, "n_threads": n_threads}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True,
                         timeout=900, check=False)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"layer": layer, "skipped": f"memory probe failed: {last}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_bench(model: str = "efficientnet_lite0", layer: str | None = None, *, weights: str | None = None,
              random_weights: bool = False, size: int | None = None, batch: int = 8, iters: int = 10,
              repeats: int = 5, device: str = "cpu", amp: Any = None, compile: bool = False,
              n_threads: int | None = None, channel: int = 0, with_lucent: bool = True,
              lucent_python_path: str | None = None, with_memory: bool = True,
              say: Say | None = None) -> dict[str, Any]:
    """Run every measurement; returns a JSON-able dict with ``rows`` (the table) and one key per measurement.

    size: input side in pixels (default: the model's). iters: optimizer iterations per timed run. repeats:
    interleaved repeats per ratio (medians are reported). n_threads: torch threads (None: torch's default).
    """
    from ..engine.memory import check_memory
    from ..engine.runtime import amp_dtype
    from ..representations import load

    say = say or (lambda _msg: None)
    if batch < 2 or iters < 1 or repeats < 1:
        raise PreimageError("--batch must be at least 2, --iters and --repeats at least 1")
    amp_dtype(amp)  # validates
    rep = load(model, layer, weights=weights, random_weights=random_weights, device=device)
    where = rep.layer or "output"  # None: the whole network (HOG, DSIFT, or --layer output)
    side = size or (rep.spec.input_size or (224, 224))[0]
    hw = (side, side)
    check_memory(rep, batch, hw, "the batched run")
    dev = rep.device_dtype()[0]
    info: dict[str, Any] = {
        "model": rep.name, "layer": where, "size": list(hw), "device": str(dev),
        "amp": str(amp_dtype(amp)).replace("torch.", "") if amp_dtype(amp) else None, "compile": compile,
        "iters": iters, "repeats": repeats, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    py = lucent_python(lucent_python_path) if with_lucent else None
    if py is not None and rep.layer is not None:
        _channel_objective(rep, hw, channel)  # a bad --channel fails now, not after the timings
    rows: list[dict[str, Any]] = []
    with threads(n_threads):
        info["threads"] = torch.get_num_threads()
        say(f"per-iteration cost vs bare forward+backward ({rep.name} {where}, {side} px)")
        it = per_iteration(rep, hw, iters=iters, repeats=repeats, amp=amp, compile=compile)
        info["per_iteration"] = it
        rows.append({"measure": "one iteration ÷ bare fwd+bwd", "ratio": it["ratio"],
                     "ours_ms": it["ours_ms"], "reference_ms": it["bare_ms"], "reference": "bare network"})
        say(f"{batch} problems in one batch vs one after another")
        bt = batching(rep, hw, batch=batch, iters=iters, repeats=max(repeats // 2, 1) | 1, amp=amp,
                      compile=compile)
        info["batching"] = bt
        rows.append({"measure": f"batch of {batch} ÷ {batch} one by one", "ratio": bt["ratio"],
                     "ours_ms": bt["batched_ms"], "reference_ms": bt["sequential_ms"], "reference": "sequential"})
        rows.append({"measure": f"  the bare network alone: batch of {batch} ÷ {batch} one by one",
                     "ratio": bt["network_ratio"], "ours_ms": bt["network_batched_ms"],
                     "reference_ms": bt["network_sequential_ms"], "reference": "sequential"})
        info["lucent"] = {"skipped": "not asked for (--no-lucent)"}
        if with_lucent:
            if py is None:
                info["lucent"] = {"skipped": "no Lucent environment: run benchmarks/setup_lucent.sh "
                                             "(or pass --lucent-python)"}
            elif rep.layer is None:
                info["lucent"] = {"skipped": "Lucent's objectives need a named layer (pass --layer)"}
            else:
                say(f"Lucent render_vis vs ours (channel {channel})")
                ours = ours_channel_ms(rep, hw, channel, iters=iters, repeats=max(repeats // 2, 1) | 1, amp=amp,
                                       compile=compile)
                luc = lucent(rep, hw, channel, iters=iters, repeats=max(repeats // 2, 1) | 1, python=py,
                             n_threads=torch.get_num_threads())
                luc["ours_ms"] = ours
                if "ms_per_iter" in luc:
                    luc["ratio"] = luc["ms_per_iter"] / ours
                    rows.append({"measure": f"Lucent ÷ ours (ms/iteration, channel {channel})",
                                 "ratio": luc["ratio"], "ours_ms": ours, "reference_ms": luc["ms_per_iter"],
                                 "reference": f"lucent {luc.get('lucent', '?')}"})
                info["lucent"] = luc
        if with_memory:
            say("peak memory (short inversions in a fresh process)")
            mem = {"layer": peak_memory(model, where, hw, weights=weights, random_weights=random_weights,
                                        n_threads=n_threads, rep=rep)}
            if rep.layer is not None:  # at the output, the layer is already the deepest
                mem["deepest"] = peak_memory(model, deepest_layer(rep), hw, weights=weights,
                                             random_weights=random_weights, n_threads=n_threads, rep=rep)
            info["memory"] = mem
            for m in mem.values():
                if "peak_allocated_mb" in m:
                    rows.append({"measure": f"peak GPU memory, 1 problem at {m['layer']}",
                                 "mb": m["peak_allocated_mb"]})
                elif "peak_rss_mb" in m:
                    rows.append({"measure": f"peak RSS, 1 problem at {m['layer']}", "mb": m["peak_rss_mb"],
                                 "inversion_mb": m.get("inversion_peak_rss_mb"),
                                 "geometry_mb": m.get("geometry_peak_rss_mb")})
    info["rows"] = rows
    return info
