"""Wall time per class pre-image at each method's own step count: ours (paper: 300 steps; natural: its default),
Lucent's render_vis (512 steps) and Horama's MaCo (1000 steps), on efficientnet_lite0 at 1 thread.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/preimage_times.py --results preimage_times

Each method runs a few steps for one class, the methods interleaved and repeated (``--repeats``); the reported
time per pre-image is the median seconds per step times the method's own step count (set-up excluded for ours,
included once for the peers, whose scripts time their whole call). Lucent and Horama run in their own venvs
(benchmarks/setup_lucent.sh, benchmarks/setup_horama.sh); a missing venv skips that row.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cls", type=int, default=25)
    ap.add_argument("--steps", type=int, default=4, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=None)
    a = ap.parse_args()
    from preimage.engine.styles import STYLES
    from preimage.experiments.peers import HERE as PEERS
    from preimage.representations import load
    from preimage.tasks.activation import maximize

    torch.set_num_threads(a.threads)
    rep = load("efficientnet_lite0", "classifier")
    tmp = pathlib.Path(tempfile.mkdtemp())
    net = tmp / "net.pt"
    torch.save(rep.net, net)

    def ours(style: str) -> float:
        t = time.perf_counter()
        maximize(rep, [a.cls], style=style, iters=a.steps)
        return (time.perf_counter() - t) / a.steps

    def peer(py: pathlib.Path, script: str, extra: list[str]) -> float:
        path = PEERS / script if (PEERS / script).is_file() else HERE / script
        out = subprocess.run([str(py), str(path), "--model-file", str(net), "--classes", str(a.cls),
                              "--out", str(tmp / script), "--steps", str(a.steps), "--threads", str(a.threads),
                              *extra], capture_output=True, text=True, check=True)
        for f in (tmp / script).glob("class*.png"):
            f.unlink()
        return json.loads(out.stdout.strip().splitlines()[-1])["seconds"] / a.steps

    methods = {"paper": (lambda: ours("paper"), 300), "natural": (lambda: ours("natural"), STYLES["natural"].iters)}
    lucent_py, horama_py = HERE / "lucent-venv/bin/python", HERE / "horama-venv/bin/python"
    if lucent_py.is_file():
        methods["Lucent render_vis"] = (lambda: peer(lucent_py, "lucent_classes.py", []), 512)
    if horama_py.is_file():
        methods["Horama MaCo"] = (lambda: peer(horama_py, "horama_render.py", []), 1000)
    ours("paper")  # warm-up: neuron statistics, geometry
    per_step: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(a.repeats):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for m in order:
            per_step[m].append(methods[m][0]())
            print(f"{m}: {per_step[m][-1]:.3f} s/step", file=sys.stderr, flush=True)
    rows = [{"method": m, "steps": methods[m][1], "seconds_per_step": statistics.median(v),
             "seconds_per_preimage": statistics.median(v) * methods[m][1]} for m, v in per_step.items()]
    lines = [f"efficientnet_lite0 class {a.cls}, 1 pre-image, {a.threads} thread(s)", "",
             "| method | steps | s per step | s per pre-image |", "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['steps']} | {r['seconds_per_step']:.2f} | {r['seconds_per_preimage']:.0f} |"
              for r in rows]
    text = "\n".join(lines)
    if a.results:
        res = HERE / "results"
        res.mkdir(exist_ok=True)
        (res / f"{a.results}.json").write_text(json.dumps({"threads": a.threads, "rows": rows}, indent=1))
        (res / f"{a.results}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except (PreimageError, ValueError) as e:  # bad input: one line, exit 2, as the CLI
        print(f"error: {e}" if isinstance(e, PreimageError) else f"error: bad value: {e}", file=sys.stderr)
        sys.exit(2)
