"""Feature accentuation with preimage (``preimage.accentuate``) on the pairs of benchmarks/accentuation_eval.py, in
the peers' runner format (one PNG and one JSON line per picture in ``OUT/log.jsonl``), for
``accentuation_eval.py evaluate --runs ours=OUT``.

    PYTHONPATH=src python benchmarks/accentuate_ours.py --half tuning --per-image 2 --weights 0.3,3 \
        --param fourier --out benchmarks/results/accentuation/raw/ours-fourier

Each seed is the 224 px scikit-image sample as ``accentuation_eval.py prepare`` writes it (written here too when
missing); one call per image accentuates its classes at every weight (images × classes × weights problems; on the
CPU each runs on its own), and a picture's seconds are the call's wall time divided by its pictures. The model is
efficientnet_lite0 as ``preimage`` loads it; its defaults apart from ``--param``, ``--transforms``, ``--steps``,
``--reg-layer``, ``--max-rmse``, ``--skip-grad``, ``--seed``, ``--size``, ``--canvas``, ``--candidates``,
``--cap-leak`` and ``--ghost`` (a benchmark-only variant); each pair's target is ``class:C`` (its logit) or, with
``--target-form logprob``, ``logprob:C``.
Pictures of another ``--seed`` go to an ``--out`` of their own (a picture already there is not made again). With
``--max-rmse R1,R2,…`` (pixel-RMSE budgets, one weight) the sweep runs over the budgets: each log line's ``weight``,
the evaluation's sweep knob, is then the budget (``reg_weight`` and ``max_rmse`` are recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from accent_runner import fail, read_json  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results" / "accentuation"


def ghost_model(rate: float, seed: int):
    """efficientnet_lite0 whose ReLU6 outputs are dropped at ``rate`` whenever gradients are on (the optimizer's
    forward passes; the scores, read without gradients, stay the real network's): a new ghost network per step,
    shared by the step's views (as Ghost Networks sample one per iteration; a mask per view doubled the cost)."""
    import torch

    import preimage

    rep = preimage.load("efficientnet_lite0", "output")
    gen = torch.Generator().manual_seed(seed)

    def erode(module: torch.nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if not torch.is_grad_enabled():
            return None
        keep = torch.rand(out.shape[1:], generator=gen) >= rate  # one ghost per pass, shared by its views
        return out * keep.to(out.dtype) / (1 - rate)

    for m in rep.net.modules():
        if isinstance(m, torch.nn.ReLU6):
            m.register_forward_hook(erode)
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default=str(RESULTS / "pairs.json"))
    ap.add_argument("--seeds", default=str(RESULTS / "raw" / "seeds"))
    ap.add_argument("--half", default="all", choices=("all", "tuning", "reporting"))
    ap.add_argument("--images", default="", help="comma-separated image names of the half (default: all)")
    ap.add_argument("--per-image", type=int, default=0, help="the first N classes of each image only (0: all)")
    ap.add_argument("--weights", default="0.3,1,3", help="comma-separated reg_weight values")
    ap.add_argument("--param", default=None, help="parameterization (default: accentuate's)")
    ap.add_argument("--transforms", default=None, help="transforms (default: accentuate's)")
    ap.add_argument("--reg-layer", default=None, help="where the seed distance is measured (default: accentuate's)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--max-rmse", default="", help="comma-separated pixel-RMSE budgets (one --weights value): the "
                    "sweep runs over them")
    ap.add_argument("--skip-grad", type=float, default=None, help="factor on the gradient through residual "
                    "branches (default: accentuate's)")
    ap.add_argument("--target-form", default="class", choices=("class", "logprob"),
                    help="each pair's target: its logit (class:C) or its log-probability (logprob:C)")
    ap.add_argument("--seed", type=int, default=0, help="accentuate's seed (its transforms' draws)")
    ap.add_argument("--size", type=int, default=None, help="the picture's side in pixels (default: the model's, "
                    "224)")
    ap.add_argument("--canvas", type=float, default=None, help="the canvas's side as a multiple of the picture's "
                    "(default: accentuate's)")
    ap.add_argument("--candidates", type=int, default=None, help="pictures optimized per picture saved, the one "
                    "with the highest target value kept (default: accentuate's)")
    ap.add_argument("--cap-leak", type=float, default=None, help="the backward slope where ReLU6 is flat (default: "
                    "accentuate's, 0)")
    ap.add_argument("--ghost", type=float, default=0.0, help="dropout erosion (Ghost Networks, Li et al. 2020): "
                    "each ReLU6 output element zeroed with this probability (the rest scaled by 1/(1-p)) in the "
                    "optimizer's forward passes only, a new mask per step; scores stay exact (default 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    import preimage
    from preimage.images import load_image, save_png

    try:
        weights = [float(w) for w in a.weights.split(",") if w.strip()]
    except ValueError:
        fail(f"--weights takes numbers separated by commas, got {a.weights!r}")
    try:
        budgets = [float(b) for b in a.max_rmse.split(",") if b.strip()]
    except ValueError:
        fail(f"--max-rmse takes numbers separated by commas, got {a.max_rmse!r}")
    if budgets and len(weights) != 1:
        fail(f"--max-rmse sweeps the budgets at one weight; --weights gives {len(weights)}")
    knobs = budgets or weights  # the sweep: one picture per knob and class
    if not 0 <= a.ghost < 1:
        fail(f"--ghost takes a probability in [0, 1), got {a.ghost}")
    model = ghost_model(a.ghost, a.seed) if a.ghost else "efficientnet_lite0"
    pairs = [p for p in read_json(a.pairs, "--pairs")["pairs"] if a.half in ("all", p["half"])
             and (not a.images or p["image"] in a.images.split(","))]
    if not pairs:
        fail(f"no pairs of half {a.half!r} for --images {a.images!r} in {a.pairs}")
    seeds, out = pathlib.Path(a.seeds), pathlib.Path(a.out)
    seeds.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    by_image: dict[str, list[dict]] = {}
    for p in pairs:
        by_image.setdefault(p["image"], []).append(p)
    for image, ps in by_image.items():
        ps = ps[:a.per_image] if a.per_image else ps
        seed = seeds / f"{image}.png"
        if not seed.is_file():
            save_png(load_image(f"sample:{image}", 224)[0], seed)
        tag = "r" if budgets else "w"
        pngs = {(p["class"], k): out / image / f"c{p['class']}_{tag}{k:g}.png" for p in ps for k in knobs}
        if all(f.is_file() for f in pngs.values()):
            continue
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = preimage.accentuate(model, str(seed), [f"{a.target_form}:{p['class']}" for p in ps],
                                reg_weight=weights, max_rmse=budgets or None, param=a.param,
                                transforms=a.transforms, steps=a.steps, skip_grad=a.skip_grad, seed=a.seed, size=a.size,
                                **({"canvas": a.canvas} if a.canvas is not None else {}),
                                **({"candidates": a.candidates} if a.candidates is not None else {}),
                                **({"cap_leak": a.cap_leak} if a.cap_leak is not None else {}),
                                **({"reg_layer": a.reg_layer} if a.reg_layer else {}))
        secs = (time.perf_counter() - t0) / len(r)
        (out / image).mkdir(exist_ok=True)
        with open(out / "log.jsonl", "a") as log:
            for i, pr in enumerate(r.problems):
                c, w = int(pr["target"].split(":")[-1]), pr["reg_weight"]
                k = pr["max_rmse"] if budgets else w
                png = pngs[(c, k)]
                save_png(r.images[i], png)
                line = {"method": "ours", "image": image, "class": c, "weight": k, "half": ps[0]["half"],
                        "reg_weight": w, **({"max_rmse": k} if budgets else {}),
                        "seconds": round(secs, 2), "steps": r.iterations, "png": str(png),
                        "param": r.info["param"], "transforms": r.info.get("transforms"),
                        "reg_layer": r.info["reg_layer"], "size": r.info["size"], "canvas": pr.get("canvas", 1.0),
                        "candidates": r.info.get("candidates", 1), "cap_leak": r.info.get("cap_leak", 0.0),
                        **({"ghost": a.ghost} if a.ghost else {}),
                        "threads": a.threads,
                        "target": pr["target"], "seed": a.seed,
                        **({"skip_grad": r.info["skip_grad"]} if "skip_grad" in r.info else {}),
                        "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
                        "lite0_probability": float(r.metrics["probability"][i]), "rmse": float(r.metrics["rmse"][i])}
                log.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)
        print(f"{image}: {len(r)} pictures, {secs:.1f} s each", file=sys.stderr, flush=True)


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except PreimageError as e:  # a bad --param, --transforms, --reg-layer or --steps: one line, not a traceback
        fail(str(e))
