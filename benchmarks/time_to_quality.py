"""Inversion time-to-quality: the median IJCV error after a short run with another parameterization against the
paper's schedule after its 350 iterations (efficientnet_lite0, the bundled colour samples at 224 px).

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/time_to_quality.py --threads 1 --results time_to_quality
    ... --images 2 --layers blocks.3 --params fourier:120     # a quick look

Each layer inverts all the images in one batch (C=100, the paper's two-stage schedule scaled to the iteration
count: 300+50 for the paper, e.g. 103+17 for 120; ``fast`` is the style of that name, one stage of 120).
Rows: layer, median error (%) per method, seconds per method.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layers", default="blocks.1,blocks.2,blocks.3,blocks.4,blocks.5,blocks.6")
    ap.add_argument("--images", type=int, default=8, help="how many of the bundled colour samples")
    ap.add_argument("--params", default="pixel:350,fast:120,pixel:120",
                    help="PARAM:ITERS[:LR_SCALE], comma-separated; pixel and pyramid use the paper's optimizer, "
                    "fourier and maco adam at their own rate times LR_SCALE (default 1); 'fast' is the style "
                    "(pyramid, one stage without jitter)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=None, help="write benchmarks/results/NAME.json and NAME.md")
    a = ap.parse_args()
    from preimage.engine.optimize import scale_schedule
    from preimage.images import COLOR_SAMPLES
    from preimage.representations import CNN_INVERSION, Stage, load
    from preimage.tasks.inversion import invert

    torch.set_num_threads(a.threads)
    images = [f"sample:{s}" for s in COLOR_SAMPLES[:a.images]]
    methods = [(m[0], int(m[1]), float(m[2]) if len(m) > 2 else 1.0) for m in (p.split(":") for p in
                                                                               a.params.split(","))]
    rows = []
    for layer in a.layers.split(","):
        rep = load(a.model, layer)
        row = {"layer": layer}
        for param, iters, lr in methods:
            t = time.perf_counter()
            if param == "fast":  # the style: its own parameterization and single stage
                res = invert(rep, images, style="fast", iters=iters)
            else:
                sched = [Stage(s.iters, s.lr_scale * lr, s.jitter) for s in scale_schedule(CNN_INVERSION, iters)]
                res = invert(rep, images, schedule=sched, param=param)
            err = res.metrics["error"].tolist()
            key = f"{param}:{iters}" + (f":{lr:g}" if lr != 1 else "")
            row[key] = {"median_error": statistics.median(err), "errors": err, "seconds": time.perf_counter() - t}
            print(f"{layer} {key}: median error {100 * statistics.median(err):.1f}% "
                  f"({row[key]['seconds']:.0f} s)", file=sys.stderr, flush=True)
        rows.append(row)
        if a.results:  # after every layer, so an interrupted run keeps what it measured
            res = pathlib.Path("benchmarks/results")
            res.mkdir(parents=True, exist_ok=True)
            (res / f"{a.results}.json").write_text(json.dumps({"threads": a.threads, "images": images,
                                                              "rows": rows}, indent=1))
    keys = [f"{p}:{i}" + (f":{lr:g}" if lr != 1 else "") for p, i, lr in methods]
    lines = [f"{a.model}, {len(images)} bundled colour samples at 224 px, C=100: median IJCV error (%)", "",
             "| layer | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['layer']} | " + " | ".join(f"{100 * r[k]['median_error']:.1f}" for k in keys) + " |")
    lines.append("| median over layers | " + " | ".join(
        f"{100 * statistics.median(r[k]['median_error'] for r in rows):.1f}" for k in keys) + " |")
    lines.append("| seconds (all layers) | " + " | ".join(f"{sum(r[k]['seconds'] for r in rows):.0f}" for k in keys)
                 + " |")
    text = "\n".join(lines)
    if a.results:
        res = pathlib.Path("benchmarks/results")
        res.mkdir(parents=True, exist_ok=True)
        (res / f"{a.results}.json").write_text(json.dumps({"threads": a.threads, "images": images, "rows": rows},
                                                          indent=1))
        (res / f"{a.results}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
