"""Screen inversion schedules for the fast style (time_to_quality.md, round 2): each variant inverts the images at
each layer of efficientnet_lite0 (224 px, C = 100, 120 evaluations, no jitter) and prints one JSON line per layer
with the median error, each image's error, the energy's path and the seconds, beside the paper's 350-step median
from the stored tables where the images are a stored half.

    PYTHONPATH=src python benchmarks/fast_schedules.py --layers blocks.3,blocks.4 --images heldout \
        "param=fourier;stages=10a0.25,110l1" "param=pyramid;stages=20a1,100l1"

A variant is ``KEY=VALUE`` parts joined by ``;``: ``param`` (a parameterization, e.g. ``fourier``,
``pyramid(weight=0.8)``) and ``stages`` (comma-separated ``ITERS`` + ``a`` (Adam) or ``l`` (L-BFGS) + the rate
scale, ``j`` at the end for the paper's jitter: ``10a0.25,110l1``). ``fast`` alone is the style as shipped.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STORED = {"8": "time_to_quality.json", "heldout": "time_to_quality_heldout.json"}


def parse_variant(text: str) -> dict:
    """``param=...;stages=...`` → invert's keyword arguments (a one-line error for anything else)."""
    from preimage.engine.schedules import Stage
    from preimage.errors import PreimageError

    kw: dict = {}
    for part in (p for p in text.split(";") if p.strip() and text != "fast"):
        key, _, value = part.partition("=")
        if key == "param" and value:
            kw["param"] = value
        elif key == "stages" and value:
            stages = []
            for s in value.split(","):
                m = re.fullmatch(r"(\d+)([al])([\d.]+)(j?)", s.strip())
                if not m or int(m[1]) < 1 or not float(m[3]) > 0:
                    raise PreimageError(f"a stage is ITERS, a or l, a rate scale and an optional j, e.g. 10a0.25; "
                                        f"got {s!r}")
                stages.append(Stage(int(m[1]), float(m[3]), bool(m[4]), "adam" if m[2] == "a" else "lbfgs"))
            kw["schedule"] = stages
        else:
            raise PreimageError(f"a variant is param=P;stages=S (or 'fast'); got {part!r} in {text!r}")
    return kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+", help="variants (see the module's docstring)")
    ap.add_argument("--layers", default="blocks.1,blocks.2,blocks.3,blocks.4,blocks.5,blocks.6")
    ap.add_argument("--images", default="8", help="as time_to_quality.py: 8, heldout[:N], heldout2[:N] or paths")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log", default=None, help="also append each JSON line to this file")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, a.threads))
    import preimage
    from preimage.experiments.quality import image_specs

    images = image_specs(a.images)
    variants = [(v, parse_variant(v)) for v in a.variants]
    stored = RESULTS / STORED[a.images] if a.images in STORED else None
    paper = ({r["layer"]: r["pixel:350"]["median_error"] for r in json.loads(stored.read_text())["rows"]}
             if stored else {})
    for name, kw in variants:
        for layer in [s.strip() for s in a.layers.split(",") if s.strip()]:
            t = time.perf_counter()
            r = preimage.invert("efficientnet_lite0", images, layer=layer, C=100, style="fast", **kw)
            err = [float(x) for x in r.metrics["error"]]
            line = {"variant": name, "layer": layer, "images": a.images,
                    "paper_350_median": round(100 * paper[layer], 2) if layer in paper else None,
                    "median": round(100 * statistics.median(err), 2), "errors": [round(100 * x, 2) for x in err],
                    "energy_median_at": {i + 1: round(float(r.energy[i].median()), 2)
                                         for i in sorted({19, 59, len(r.energy) - 1}) if i < len(r.energy)},
                    "seconds": round(time.perf_counter() - t, 1)}
            print(json.dumps(line), flush=True)
            if a.log:
                with open(a.log, "a") as f:
                    f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except PreimageError as e:  # a bad variant, layer or image set: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
