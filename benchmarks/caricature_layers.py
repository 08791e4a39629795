"""The paper's caricature per layer (issue 26, item 4): its score ⟨Φ(x), Φ0⁺⟩/‖Φ0⁺‖² at blocks.1–6 and the logits of
efficientnet_lite0, with the limit it could reach (``caricature(limit=True)``: the same energy maximized from
noise, with and without a leak where ReLU6 is flat), on held-out photographs.

    PYTHONPATH=src python benchmarks/caricature_layers.py --images sample:chelsea --iters 300 \
        --out benchmarks/results/caricature_layers

Writes OUT.json and OUT.md: per image and layer, the start score (1 by construction), the end score, the limit and
the share of it the caricature reached, and seconds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

LAYERS = ("blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "classifier")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="+", default=["sample:chelsea"])
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="OUT (writes OUT.json and OUT.md)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    import preimage

    rows = []
    for image in a.images:
        for layer in [v for v in a.layers.split(",") if v]:
            t0 = time.perf_counter()
            r = preimage.caricature("efficientnet_lite0", image, layer=layer, iters=a.iters, limit=True)
            m = {k: float(v[0]) for k, v in r.metrics.items()}
            rows.append({"image": image, "layer": layer, "iters": a.iters, **m,
                         "gain": m["score_end"] / m["score_start"], "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"model": "efficientnet_lite0", "rows": rows}, indent=1) + "\n")
    lines = ["# The paper's caricature per layer (efficientnet_lite0)", "",
             f"`caricature(limit=True)`, paper style, {a.iters} iterations; score = ⟨Φ(x), Φ0⁺⟩/‖Φ0⁺‖² (1 on the "
             "image itself); limit = the best score of the same energy maximized from noise (exact gradient and "
             "a 0.1 leak where ReLU6 is flat) or of the caricature itself.", "",
             "| image | layer | score end (gain) | limit | share of limit | s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['layer']} | {r['score_end']:.2f} | {r['score_limit']:.2f} | "
                     f"{100 * r['share_of_limit']:.0f}% | {r['seconds']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
