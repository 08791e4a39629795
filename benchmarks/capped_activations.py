"""Caricature and activation maximization on a capped network (ReLU6): before (exact backward) and after
(the leaky backward of ``preimage.tasks.capped``), against the measured limit of the score.

    python benchmarks/capped_activations.py --out DIR [--layers blocks.3,blocks.4,blocks.5,blocks.6]
        [--size 160] [--iters 300] [--units 8] [--threads 1] [--no-maximize]

Caricature, per layer, on the bundled colour samples (``sample:NAME``, ``size`` px, ``iters`` steps):
* before: ``caricature()``, the exact gradient (the default);
* after: ``caricature(cap_leak=--cap-leak)`` with ``limit=True``: the same energy is also maximized from noise,
  with the exact and the leaky backward;
* limit: per image, the best score of any of these images (the two noise runs and both caricatures).
Activation maximization, per layer: ``units`` random channels (randperm, seed 0), ``maximize`` with
``cap_leak=0`` and with ``--cap-leak``; the activation reached on the real network.

Writes ``capped.json`` (every number), ``capped.md`` (the tables) and ``mosaic-<layer>.png`` (rows: images;
columns: original, before, after) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from preimage.images import COLOR_SAMPLES
from preimage.report import save_grid
from preimage.tasks.activation import caricature, maximize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layers", default="blocks.3,blocks.4,blocks.5,blocks.6")
    ap.add_argument("--images", default=",".join(COLOR_SAMPLES), help="sample names, comma-separated")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-maximize", action="store_true")
    ap.add_argument("--cap-leak", type=float, default=0.1, help="the backward leak of the after column")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    specs = [f"sample:{n}" for n in args.images.split(",")]
    result: dict = {"model": args.model, "size": args.size, "iters": args.iters, "images": specs,
                    "threads": args.threads, "caricature": [], "maximize": []}
    t0 = time.perf_counter()
    for layer in args.layers.split(","):
        before = caricature(args.model, specs, layer=layer, size=args.size, iters=args.iters, cap_leak=0.0)
        after = caricature(args.model, specs, layer=layer, size=args.size, iters=args.iters, cap_leak=args.cap_leak,
                           limit=True)
        b, a = before.metrics["score_end"], after.metrics["score_end"]
        lim = torch.maximum(after.metrics["score_limit"], b)
        row = {"layer": layer, "cap_leak": after.info["cap_leak"], "before": b.tolist(), "after": a.tolist(),
               "limit": lim.tolist(), "after_share_of_limit": (a / lim).tolist(),
               "before_share_of_limit": (b / lim).tolist(),
               "mean": {"before": float(b.mean()), "after": float(a.mean()), "limit": float(lim.mean()),
                        "after_share_of_limit": float((a / lim).mean()),
                        "before_share_of_limit": float((b / lim).mean())}}
        result["caricature"].append(row)
        tiles = [t for i in range(len(specs)) for t in (after.info["reference"][i], before.images[i],
                                                        after.images[i])]
        save_grid(tiles, args.out / f"mosaic-{layer}.png", ncol=3)
        print(json.dumps({k: row[k] for k in ("layer", "mean")}), flush=True)
        if not args.no_maximize:
            units = torch.randperm(_channels(args.model, layer), generator=torch.Generator().manual_seed(0))
            units = units[:args.units].tolist()
            exact = maximize(args.model, units, layer=layer, iters=args.iters, cap_leak=0.0)
            leaky = maximize(args.model, units, layer=layer, iters=args.iters, cap_leak=args.cap_leak)
            mrow = {"layer": layer, "units": units, "size": leaky.info["size"], "cap_leak": leaky.info["cap_leak"],
                    "before": exact.metrics["activation"].tolist(), "after": leaky.metrics["activation"].tolist(),
                    "reference_max": leaky.metrics["reference_max"].tolist()}
            gain = [x / y for x, y in zip(mrow["after"], mrow["before"], strict=True) if y > 0]
            mrow["median_after_over_before"] = statistics.median(gain) if gain else None
            result["maximize"].append(mrow)
            print(json.dumps({k: mrow[k] for k in ("layer", "median_after_over_before")}), flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "capped.json").write_text(json.dumps(result, indent=1))
    (args.out / "capped.md").write_text(markdown(result))
    print(markdown(result))


def _channels(model: str, layer: str) -> int:
    from preimage.representations import load

    return load(model, layer).geometry().shape[0]


def markdown(r: dict) -> str:
    """The tables: caricature score_end ÷ score_start per layer (mean over images), and maximization."""
    lines = [f"Caricature on {r['model']}, {len(r['images'])} images at {r['size']} px, {r['iters']} iterations "
             "(score_start = 1, so the score is the ratio). Means over images.", "",
             "| layer | before (exact backward) | after (cap leak) | limit | before ÷ limit | after ÷ limit |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in r["caricature"]:
        m = row["mean"]
        lines.append(f"| {row['layer']} | {m['before']:.3f} | {m['after']:.3f} | {m['limit']:.3f} | "
                     f"{100 * m['before_share_of_limit']:.1f}% | {100 * m['after_share_of_limit']:.1f}% |")
    if r["maximize"]:
        lines += ["", "Activation maximization (centre neuron, units drawn with randperm seed 0): activation "
                  "reached on the real network, before (exact backward) and after (cap leak).", "",
                  "| layer | units | size | median after ÷ before | before | after |", "|---|---|---:|---:|---|---|"]
        for row in r["maximize"]:
            fmt = ", ".join
            lines.append(f"| {row['layer']} | {row['units']} | {row['size'][0]} | "
                         f"{row['median_after_over_before']:.3f} | {fmt(f'{v:.2f}' for v in row['before'])} | "
                         f"{fmt(f'{v:.2f}' for v in row['after'])} |")
    lines += ["", f"{r['seconds']:.0f} s with {r['threads']} thread(s)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
