"""Concept dictionaries on a trained CNN against a random-weights ViT: r², L0, dead concepts, two-seed stability,
the pictures' trust figures (activation ÷ natural maximum, selectivity) and time per concept.

    python benchmarks/concepts.py [--k 32] [--methods topk,batchtopk,nmf] [--pictures 8] [--iters 64]
                                  [--threads 1] [--out benchmarks/results/concepts]

Images: scikit-image's 8 colour samples, each as 8 views at 224×224 (whole, centre 70% crop, top-left and
bottom-right 70% crops, each also mirrored). **Two halves**: the dictionary is trained on the views of the first 4
samples (32 images) and measured on both halves; the held-out half (the other 4 samples' 32 views) is what no
choice saw. Every spatial position (CNN) or token (ViT: patches and the class token) is a row. The defaults
measured here (top_k = K/10 as ``overcomplete``, 2000 Adam steps, HALS 200 iterations) were carried over, not
tuned on these images.

Networks: ``efficientnet_lite0`` ``blocks.5`` (ImageNet weights) and a random-weights
``timm:vit_tiny_patch16_224`` truncated at ``blocks.6`` (torch.manual_seed(0) weights).

Pictures: ``preimage.maximize(rep, Concept(d, k))`` with the command's default (natural style, 64 steps, the
concept at the map's centre; for the ViT the patch grid's centre) for the first ``--pictures`` concepts
(concepts 0.., not chosen); ratio = the picture's pre-activation ÷ the concept's natural maximum (largest
pre-activation over the training rows); selectivity = concept k's mean code on the picture ÷ the mean code of the
other concepts on it (``measures.concepts.selectivity``; ∞ when the others are silent: counted, and the median
taken over the finite values and ∞ together). Stability: the mean Hungarian-matched cosine of the atoms of the
seed-0 and seed-1 dictionaries.
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

import preimage
from preimage import Concept
from preimage.images import COLOR_SAMPLES, load_image, resize
from preimage.measures.concepts import measure, selectivity, stability
from preimage.representations import load
from preimage.tasks.common import features
from preimage.tasks.concepts import feature_rows

NETWORKS = (("efficientnet_lite0", "blocks.5", False), ("timm:vit_tiny_patch16_224", "blocks.6", True))


def views(names: list[str], size: int = 224, crop: float = 0.7) -> torch.Tensor:
    """Each sample × (whole, centre crop, top-left crop, bottom-right crop) × (as is, mirrored): N×3×size×size."""
    out = []
    for name in names:
        x = load_image(f"sample:{name}")
        h, w = x.shape[-2:]
        ch, cw = int(h * crop), int(w * crop)
        top, left = (h - ch) // 2, (w - cw) // 2
        for c in (x, x[..., top:top + ch, left:left + cw], x[..., :ch, :cw], x[..., h - ch:, w - cw:]):
            c = resize(c, size)
            out += [c, c.flip(-1)]
    return torch.cat(out)


def rows_of(rep: preimage.Representation, images: torch.Tensor) -> torch.Tensor:
    """Every position/token of every image as a row, M×D."""
    with torch.no_grad():
        return torch.cat([feature_rows(features(rep, rep.to_paper_units(x))).flatten(0, 1) for x in images.split(8)])


def median(vals: list[float]) -> float | None:
    v = sorted(vals)
    return v[len(v) // 2] if v else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--methods", default="topk,batchtopk,nmf")
    ap.add_argument("--pictures", type=int, default=8, help="concepts 0..N-1 get a picture")
    ap.add_argument("--iters", type=int, default=None, help="steps of each picture (default: the natural style's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None)
    ap.add_argument("--vit-first", action="store_true", help="measure the ViT first")
    ap.add_argument("--out", default="benchmarks/results/concepts")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    half = len(COLOR_SAMPLES) // 2
    tune, held = views(list(COLOR_SAMPLES[:half])), views(list(COLOR_SAMPLES[half:]))
    results = []
    for model, layer, random in NETWORKS[::-1] if args.vit_first else NETWORKS:
        if args.only and args.only not in model:
            continue
        torch.manual_seed(0)  # the random weights
        rep = load(model, layer, random_weights=random)
        held_rows = rows_of(rep, held)
        for method in args.methods.split(","):
            dics = []
            for seed in (0, 1):
                dics.append(preimage.concepts.train(rep, None, tune, args.k, method=method, seed=seed))
            dic = dics[0]
            f = dic.figures
            row = {"model": model, "layer": layer, "weights": "random" if random else "trained", "method": method,
                   "d": dic.d, "k": dic.k, "top_k": dic.config.get("top_k") if method != "nmf" else None,
                   "rows_tune": f["rows"], "rows_held": held_rows.shape[0],
                   "r2_tune": f["r2"], "l0_tune": f["l0"], "dead_tune": f["dead"], "clipped": f.get("clipped"),
                   "stability": stability(dics[0], dics[1]), "seconds_fit": f["seconds"],
                   "seconds_fit_per_concept": f["seconds_per_concept"]}
            h = measure(dic, held_rows.clamp_min(0) if method == "nmf" else held_rows)
            row.update({"r2_held": h["r2"], "l0_held": h["l0"], "dead_held": h["dead"]})
            t = time.perf_counter()
            n = min(args.pictures, dic.k)
            kw = {"iters": args.iters} if args.iters else {}
            res = preimage.maximize(rep, [Concept(dic, k) for k in range(n)], **kw)
            pic_s = time.perf_counter() - t
            with torch.no_grad():
                codes = dic.encode(features(rep, rep.to_paper_units(res.images)))
            sel = [float(selectivity(codes[i:i + 1], i)[0]) for i in range(n)]
            row.update({"pictures": n, "picture_size": list(res.images.shape[-2:]),
                        "ratio": res.metrics["ratio"].tolist(), "ratio_median": median(res.metrics["ratio"].tolist()),
                        "pictures_above_max": int((res.metrics["ratio"] > 1).sum()),
                        "selectivity": sel, "selectivity_median": median(sel),
                        "selectivity_inf": sum(s == float("inf") for s in sel),
                        "seconds_picture_per_concept": pic_s / n})
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}), file=sys.stderr, flush=True)
            info = {"argv": sys.argv[1:] if argv is None else argv, "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(), "load": list(os.getloadavg()),
                    "rows": results}
            # Written after every row, so an interrupted run keeps what it measured.
            Path(args.out).with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
            Path(args.out).with_suffix(".md").write_text(table(info))
    return 0


def _f(v: float | None, spec: str = ".3f") -> str:
    return "–" if v is None else "∞" if v == float("inf") else format(v, spec)


def table(info: dict) -> str:
    head = ("| network | weights | method | D | K | top_k | r² tune | r² held-out | L0 tune | L0 held-out | dead tune "
            "| dead held-out | stability | pictures > natural max | ratio (median) | selectivity (median) "
            "| fit s / concept | picture s / concept |\n|" + "---|" * 18 + "\n")
    body = ""
    for r in info["rows"]:
        body += (f"| `{r['model']}` `{r['layer']}` | {r['weights']} | {r['method']} | {r['d']} | {r['k']} | "
                 f"{r['top_k'] or '–'} | {_f(r['r2_tune'])} | {_f(r['r2_held'])} | {_f(r['l0_tune'], '.1f')} | "
                 f"{_f(r['l0_held'], '.1f')} | {r['dead_tune']} | {r['dead_held']} | {_f(r['stability'])} | "
                 f"{r['pictures_above_max']}/{r['pictures']} | {_f(r['ratio_median'], '.2f')} | "
                 f"{_f(r['selectivity_median'], '.2f')} | {_f(r['seconds_fit_per_concept'], '.2f')} | "
                 f"{_f(r['seconds_picture_per_concept'], '.1f')} |\n")
    cmd = "python benchmarks/concepts.py " + " ".join(info["argv"])
    return (f"`{cmd.strip()}`\n\n{info['threads']} thread(s), torch {info['torch']}, load average at the end "
            f"{[round(x, 1) for x in info['load']]}\n\n" + head + body)


if __name__ == "__main__":
    raise SystemExit(main())
