"""Inversion time-to-quality: the median IJCV error after a short run with another parameterization against the
paper's schedule after its 350 iterations (efficientnet_lite0, the bundled colour samples at 224 px).

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/time_to_quality.py --threads 1 --results time_to_quality
    ... --images 2 --layers blocks.3 --params fourier:120     # a quick look
    ... --images heldout --results time_to_quality_heldout    # the reporting set (experiments.heldout)

Each layer inverts all the images in one batch (C=100, the paper's two-stage schedule scaled to the iteration
count: 300+50 for the paper, e.g. 103+17 for 120; ``fast`` is the style of that name: the Fourier
spectrum without jitter, 10 short Adam steps then L-BFGS, scaled to the iteration count).
Rows: layer, median error (%) per method, seconds per method.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layers", default="blocks.1,blocks.2,blocks.3,blocks.4,blocks.5,blocks.6")
    ap.add_argument("--images", default="8", help="how many of the bundled colour samples (the tuning set), "
                    "'heldout' or 'heldout:N' (the reporting set's photographs, all or the first N), or paths, "
                    "comma-separated")
    ap.add_argument("--params", default="pixel:350,fast:120,pixel:120",
                    help="PARAM:ITERS[:LR_SCALE], comma-separated; pixel uses the paper's optimizer, pyramid its "
                    "hybrid, fourier and maco adam at their own rate times LR_SCALE (default 1); 'fast' is the "
                    "style (Fourier spectrum without jitter, Adam then L-BFGS)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=None, help="write benchmarks/results/NAME.json and NAME.md")
    a = ap.parse_args()
    from preimage.experiments.quality import markdown, time_to_quality

    torch.set_num_threads(a.threads)
    res = pathlib.Path("benchmarks/results")
    rows: list[dict] = []

    def save(row: dict) -> None:  # after every layer, so an interrupted run keeps what it measured
        rows.append(row)
        if a.results:
            res.mkdir(parents=True, exist_ok=True)
            (res / f"{a.results}.json").write_text(json.dumps({"threads": a.threads, "rows": rows}, indent=1))

    info = time_to_quality(a.model, a.layers.split(","), a.images, a.params.split(","), on_row=save,
                           say=lambda m: print(m, file=sys.stderr, flush=True))
    text = markdown(info)
    if a.results:
        (res / f"{a.results}.json").write_text(json.dumps({"threads": a.threads, **info}, indent=1))
        (res / f"{a.results}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except (PreimageError, ValueError) as e:  # bad input: one line, exit 2, as the CLI
        print(f"error: {e}" if isinstance(e, PreimageError) else f"error: bad value: {e}", file=sys.stderr)
        sys.exit(2)
