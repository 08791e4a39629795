"""Atlas measurements (not a test): units per minute local vs Ray, per-unit cost per layer, and the wall time
of whole atlases projected from it.

    # units/min on efficientnet_lite0 blocks.3 (80 units, 2 restarts, channel mode), local vs Ray, interleaved
    nice -n 10 .venv/bin/python benchmarks/atlas.py throughput [--units 80] [--iters 300] [--rounds 2]
    # Ray's own overhead at equal parallelism: one thread in-process against one single-CPU worker
    nice -n 10 .venv/bin/python benchmarks/atlas.py throughput --variants local-1thread,ray-1cpu \
        --out benchmarks/results/atlas-throughput-1cpu-efficientnet_lite0.json
    # per-unit cost of every main layer, measured on a few units, and the projected whole-atlas wall time
    nice -n 10 .venv/bin/python benchmarks/atlas.py projection --model efficientnet_lite0 [--sample 2] [--iters 30]
    nice -n 10 .venv/bin/python benchmarks/atlas.py projection --model resnet50 --random-weights --sample 1 --iters 10

Each writes benchmarks/results/atlas-<what>-<model>.json and prints a markdown table.

throughput: the 80 maximization jobs of one layer (what grows with the units) timed as one sweep, alternately
in-process (torch's 2 threads, batches of 16 problems) and on a local Ray cluster of 2 CPUs (2 workers of one
thread each, the same batches): "warm" on a cluster already started, "cold" including starting it (ray.init)
and shutting it down. Units per minute = units / minutes; Ray's overhead = Ray's time / local time − 1.

projection: for every main layer, ``--sample`` units × 2 restarts maximized at the layer's own unit size, timed
at 2 and at 2 + ``--iters`` iterations: the difference gives the cost per iteration, the rest the fixed cost
per job, and a unit's cost is fixed + 300 iterations (the cost per iteration is flat once the loop is warm:
see benchmarks/README.md); plus the forward+backward FLOPs of one problem-iteration
(torch.utils.flop_counter). Whole atlas = Σ layers units × seconds per unit, on 1 CPU process of 2 threads,
and on G GPUs as Σ FLOPs ÷ (G × an assumed effective GPU throughput, --gpu-tflops, default 20 TFLOP/s) plus a
start-up of --gpu-startup seconds (cluster, model shipped to each worker). No GPU was measured unless a GPU
figure is given with --gpu-seconds-per-unit (then it replaces the FLOP-based one).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _model(name: str, random_weights: bool):
    from preimage.measures.stats import load_stats
    from preimage.representations import load
    from preimage.sweep import Model

    spec = load(name, None, random_weights=random_weights).spec
    if random_weights:
        torch.manual_seed(0)
    return Model(spec, stats=load_stats(spec))


def throughput(args: argparse.Namespace) -> dict:
    import ray

    from preimage.sweep import Job, LocalBackend, RayBackend, Store, run_sweep

    m = _model(args.model, args.random_weights)
    opts = {"mode": "channel", "restarts": 2, "iters": args.iters, "thumbnail": 64}
    jobs = [Job("maximize", m.id, args.layer, (u,), options=opts) for u in range(args.units)]

    def sweep(backend) -> float:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            res = run_sweep(jobs, {m.id: m}, Store(d), backend, batch=args.batch)
            assert res.counts["done"] == len(jobs), res.failures[:1]
            return time.perf_counter() - t

    def ray_cold() -> float:
        t = time.perf_counter()
        sweep(RayBackend(num_cpus=args.cpus))  # starts a cluster and shuts it down
        return time.perf_counter() - t

    def ray_warm() -> float:
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        try:
            return sweep(RayBackend())
        finally:
            ray.shutdown()

    def local_1t() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return sweep(LocalBackend())
        finally:
            torch.set_num_threads(threads)

    def ray_1cpu() -> float:
        ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        try:
            return sweep(RayBackend())
        finally:
            ray.shutdown()

    variants = {"local": lambda: sweep(LocalBackend()), "ray-warm": ray_warm, "ray-cold": ray_cold,
                "local-1thread": local_1t, "ray-1cpu": ray_1cpu}
    chosen = [v.strip() for v in args.variants.split(",")]
    times: dict[str, list[float]] = {k: [] for k in chosen}
    for r in range(args.rounds):
        order = [(k, variants[k]) for k in chosen]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            times[name].append(fn())
            print(f"round {r}: {name} {times[name][-1]:.1f} s", flush=True)
    local = statistics.median(times[chosen[0]])
    rows = [{"backend": k, "seconds": [round(t, 1) for t in v], "median_s": round(statistics.median(v), 1),
             "units_per_min": round(args.units / statistics.median(v) * 60, 2),
             "overhead": round(statistics.median(v) / local - 1, 3)} for k, v in times.items()]
    return {"what": "throughput", "variants": chosen, "model": m.spec.name, "layer": args.layer, "units": args.units,
            "restarts": 2, "iters": args.iters, "batch": args.batch, "cpus": args.cpus, "rounds": args.rounds,
            "torch_threads_local": torch.get_num_threads(), "rows": rows}


def _flops(rep, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from preimage.tasks.activation import response_point

    rp, _ = response_point(rep)
    x = torch.zeros(1, rep.channels, size, size, requires_grad=True)
    with FlopCounterMode(display=False) as fc:
        rp(x).sum().backward()
    return float(fc.get_total_flops())


def projection(args: argparse.Namespace) -> dict:
    from preimage.sweep.atlas import plan_layers

    from preimage.representations import Representation
    from preimage.representations.layers import main_layers
    from preimage.sweep import Job, Store, run_sweep
    from preimage.tasks.activation import response_point, unit_image_size

    m = _model(args.model, args.random_weights)
    spec = m.spec
    plans = plan_layers(spec, None, None, log=lambda s: None)
    rows = []
    for p in plans:
        rep = Representation(spec, p.name)
        rep._geometry = p.geometry
        side = unit_image_size(response_point(rep)[0])
        units = list(range(min(args.sample, p.geometry.shape[0])))
        m.geometry[p.name] = p.geometry

        def timed(iters: int, layer: str = p.name, units: tuple[int, ...] = tuple(units)) -> float:
            job = Job("maximize", m.id, layer, units, options={"mode": "channel", "restarts": 2, "iters": iters})
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                res = run_sweep([job], {m.id: m}, Store(d), batch=2 * len(units))
                assert not res.failures, res.failures
                return time.perf_counter() - t

        timed(2)  # warm-up: the layer's set-up (unit size, first calls)
        short, long = timed(2), timed(2 + args.iters)
        per_iter = max(long - short, 0.0) / args.iters  # the batch's cost per iteration
        fixed = max(short - 2 * per_iter, 0.0)  # per job: noise, set-up, PNGs
        per_unit = (fixed + 300 * per_iter) / len(units)
        secs = long
        flops = _flops(rep, side) * 2 * 300  # 2 restarts × 300 iterations
        rows.append({"layer": p.name, "units": p.geometry.shape[0], "unit_size": side, "sampled": len(units),
                     "seconds_sampled": round(secs, 2), "s_per_unit_300it": round(per_unit, 2),
                     "gflop_per_unit": round(flops / 1e9, 1), "layer_hours_cpu": round(per_unit * p.geometry.shape[0]
                                                                                       / 3600, 2)})
        print(rows[-1], flush=True)
    total_units = sum(r["units"] for r in rows)
    cpu_s = sum(r["s_per_unit_300it"] * r["units"] for r in rows)
    flops = sum(r["gflop_per_unit"] * 1e9 * r["units"] for r in rows)
    gpu = {}
    for g in (1, 8, 64):
        if args.gpu_seconds_per_unit:
            compute = total_units * args.gpu_seconds_per_unit / g
        else:
            compute = flops / (args.gpu_tflops * 1e12) / g
        gpu[str(g)] = round((compute + args.gpu_startup) / 3600, 3)
    convs = sum(mod.out_channels for mod in spec.module.modules() if isinstance(mod, torch.nn.Conv2d))
    return {"what": "projection", "model": spec.name, "weights": spec.weights_id, "main_layers": len(main_layers(spec)),
            "rows": rows, "units": total_units, "conv_channels": convs, "cpu_hours_2_threads": round(cpu_s / 3600, 2),
            "pflop_total": round(flops / 1e15, 3), "gpu_tflops_assumed": args.gpu_tflops,
            "gpu_startup_s": args.gpu_startup, "gpu_hours": gpu, "iters_sampled": args.iters,
            "torch_threads": torch.get_num_threads()}


def table(res: dict) -> str:
    if res["what"] == "throughput":
        lines = [f"{res['model']} {res['layer']}: {res['units']} units × 2 restarts × {res['iters']} iterations, "
                 f"batches of {res['batch']} problems, {res['cpus']} CPUs", "",
                 f"| backend | seconds (each round) | units/min | time vs {res['variants'][0]} |", "|---|---|---|---|"]
        lines += [f"| {r['backend']} | {', '.join(map(str, r['seconds']))} | {r['units_per_min']} | "
                  f"{100 * r['overhead']:+.1f}% |" for r in res["rows"]]
    else:
        lines = [f"{res['model']} ({res['weights']}): {res['units']} units in {len(res['rows'])} layers", "",
                 "| layer | units | unit px | s/unit (300 it, 2 restarts) | GFLOP/unit | CPU hours |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {r['layer']} | {r['units']} | {r['unit_size']} | {r['s_per_unit_300it']} | "
                  f"{r['gflop_per_unit']} | {r['layer_hours_cpu']} |" for r in res["rows"]]
        lines += ["", f"whole atlas (maximization): {res['cpu_hours_2_threads']} h on this CPU (2 threads); "
                  f"{res['pflop_total']} PFLOP → GPUs at {res['gpu_tflops_assumed']} TFLOP/s effective + "
                  f"{res['gpu_startup_s']} s start-up: " + ", ".join(f"{g} GPU{'s' if g != '1' else ''} "
                                                                      f"{h} h" for g, h in res["gpu_hours"].items())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("throughput", "projection"))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--layer", default="blocks.3")
    ap.add_argument("--units", type=int, default=80)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default="local,ray-warm,ray-cold",
                    help="comma-separated, the first is the reference: local (torch's threads), ray-warm (a "
                         "started cluster of --cpus), ray-cold (starting it), local-1thread, ray-1cpu (warm)")
    ap.add_argument("--sample", type=int, default=2)
    ap.add_argument("--gpu-tflops", type=float, default=20.0)
    ap.add_argument("--gpu-startup", type=float, default=60.0)
    ap.add_argument("--gpu-seconds-per-unit", type=float, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.iters is None:
        args.iters = 300 if args.what == "throughput" else 30
    res = throughput(args) if args.what == "throughput" else projection(args)
    res["load_average_at_end"] = list(__import__("os").getloadavg())
    out = args.out or RESULTS / f"atlas-{args.what}-{res['model'].replace(':', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(table(res))
    print(f"→ {out}")


if __name__ == "__main__":
    main()
