"""The architecture table: every family (``preimage.experiments.architectures.ARCHITECTURES``) run through
``layers``, inversion and maximization, with the cost of one iteration against its bare network.

    python benchmarks/architectures.py [--threads 2] [--only vit,swin] [--iters 5] [--repeats 3]
                                       [--out benchmarks/results/architectures]

Writes OUT.json (every number) and OUT.md (the table). Columns: family, model, layer, input side, the time of
``preimage layers`` (geometry of every layer, the model already built), the inversion error after 3 and 20
iterations (random weights; the error of the noise it starts from alongside), and ms per iteration ÷ a bare
forward+backward of the truncated network (``preimage bench``'s measure: interleaved, median of repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from preimage.experiments.architectures import ARCHITECTURES, check_architecture
from preimage.experiments.bench import per_iteration, threads
from preimage.representations import Representation, build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--only", default=None, help="comma-separated substrings of model names to run")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations per repeat for the per-iteration ratio")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats for the per-iteration ratio")
    ap.add_argument("--out", default="benchmarks/results/architectures", help="output path without suffix")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    rows = []
    with threads(args.threads):
        for arch in ARCHITECTURES:
            if only and not any(s in arch.model for s in only):
                continue
            t = time.perf_counter()
            row = check_architecture(arch)
            torch.manual_seed(0)
            rep = Representation(build(arch.model, random_weights=True, **arch.args), arch.layer)
            speed = per_iteration(rep, (arch.size, arch.size), iters=args.iters, repeats=args.repeats)
            row.update({"ms_per_iter": speed["ours_ms"], "bare_ms": speed["bare_ms"],
                        "ratio": speed["ratio"]})
            row.pop("row")
            rows.append(row)
            print(f"{arch.family:14s} {arch.model:38s} {arch.layer:32s} layers {row['layers_s']:5.2f} s  "
                  f"error {row['error_start']:.3f} → {row['error']:.3f}  {row['ratio']:.2f}× "
                  f"({row['ms_per_iter']:.1f}/{row['bare_ms']:.1f} ms)  [{time.perf_counter() - t:.0f} s]",
                  file=sys.stderr, flush=True)
        used = torch.get_num_threads()
    info = {"rows": rows, "threads": used, "torch": torch.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()), "iters": args.iters,
            "repeats": args.repeats}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(info))
    print(markdown(info))
    return 0


def markdown(info: dict) -> str:
    """The report's table."""
    lines = [f"{info['threads']} thread(s), torch {info['torch']}, load average {info['load_average']}", "",
             "| family | model | layer | px | `layers` s | error 3 it. | error 20 it. (start) | ms/iter ÷ bare |",
             "|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        lines.append(f"| {r['family']} | `{r['model']}` | `{r['layer']}` | {r['size']} | {r['layers_s']:.2f} | "
                     f"{r['invert_short_error']:.3f} | {r['error']:.3f} ({r['error_start']:.3f}) | "
                     f"{r['ratio']:.2f} ({r['ms_per_iter']:.1f} / {r['bare_ms']:.1f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
