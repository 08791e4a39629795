"""The best of n draws, from draws already run (round 16 in benchmarks/README.md): for each (image, class, budget)
of a half, keep the draw whose picture efficientnet_lite0 (the accentuated network) scores highest, the way
``accentuate(..., candidates=n)`` keeps a candidate, and report the judge's p(target) and top-1 of the kept pictures,
averaged over every n-subset of the draws, beside the single draws' mean.

    PYTHONPATH=src python benchmarks/accentuation_best_of.py --half tuning \
        --draw /tmp/acc6/acc-t6b:/tmp/acc6/eval-t6b:decay15,/tmp/acc9/acc-t10base:/tmp/acc9/eval-t10base:ours \
        --draw /tmp/acc12/acc-tbase-s1:/tmp/acc12/eval-tbase-s1:ours ...

Each ``--draw`` is one seed: one or more ``RUN:EVAL:METHOD`` (``RUN`` an ``accentuate_ours.py`` output folder,
``EVAL`` the ``accentuation_eval.py evaluate`` folder that judged it, ``METHOD`` its name there). The score is the
target's logit on the saved 8-bit PNG (``--score logit``, the rule's) or the logit's margin over the best other class
(``margin``); the judge never chooses.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any


def read_draw(spec: str, half: str) -> dict[tuple, dict[str, Any]]:
    """One draw's pictures of a half: (image, class, budget) → the judge's record plus the PNG's path."""
    out: dict[tuple, dict[str, Any]] = {}
    for part in spec.split(","):
        run, ev, method = part.rsplit(":", 2)
        pngs = {(r["image"], r["class"], r["weight"]): r["png"]
                for r in map(json.loads, Path(run, "log.jsonl").read_text().splitlines())}
        for p in json.loads(Path(ev, "accentuation.json").read_text())["pictures"]:
            key = (p["image"], p["class"], p["weight"])
            if p["method"] == method and p["half"] == half and key in pngs:
                out[key] = {**p, "png": pngs[key]}
    return out


def scores(pictures: list[dict[str, Any]]) -> None:
    """Adds each picture's efficientnet_lite0 logit of its class and the margin over the best other class."""
    import torch

    import preimage
    from preimage.images import load_image

    rep = preimage.load("efficientnet_lite0", "output")
    with torch.no_grad():
        for p in pictures:
            z = rep(rep.to_paper_units(load_image(p["png"], (224, 224))))[0]
            c = int(p["class"])
            p["logit"] = float(z[c])
            p["margin"] = float(z[c] - torch.cat([z[:c], z[c + 1:]]).max())


def best_of_subsets(draws: list[dict[tuple, dict[str, Any]]], keys: list[tuple], n: int,
                    score: str = "logit") -> list[tuple[float, int]]:
    """For every n-subset of the draws (in ``itertools.combinations`` order): the mean judge p and the top-1 count of
    the pictures it keeps, each key's highest-``score`` picture among the subset's draws (ties: the first draw)."""
    out = []
    for combo in itertools.combinations(draws, n):
        pick = [max((d[k] for d in combo), key=lambda r: r[score]) for k in keys]
        out.append((statistics.mean(r["probability"] for r in pick), sum(bool(r["top1"]) for r in pick)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draw", action="append", required=True, help="RUN:EVAL:METHOD[,RUN:EVAL:METHOD] (one seed)")
    ap.add_argument("--half", choices=("tuning", "reporting"), default="tuning")
    ap.add_argument("--score", choices=("logit", "margin"), default="logit")
    ap.add_argument("--n", default="2,3", help="the subset sizes to report")
    a = ap.parse_args()
    draws = [read_draw(d, a.half) for d in a.draw]
    keys = sorted(set.intersection(*[set(d) for d in draws]))
    scores([d[k] for d in draws for k in keys])
    mean = statistics.mean
    for budget in sorted({k[2] for k in keys}):
        ks = [k for k in keys if k[2] == budget]
        single = [(mean(d[k]["probability"] for k in ks), sum(d[k]["top1"] for k in ks)) for d in draws]
        print(f"budget {budget:g} ({len(ks)} pairs): single draws " +
              ", ".join(f"{p:.3f} ({h}/{len(ks)})" for p, h in single) +
              f"; mean {mean(p for p, _ in single):.4f}, hits {mean(h for _, h in single):.2f}")
        for n in (int(v) for v in a.n.split(",")):
            ps, hs = zip(*best_of_subsets(draws, ks, n, a.score), strict=True)
            print(f"  best of {n} by {a.score}: mean p {mean(ps):.4f} (per subset {', '.join(f'{v:.3f}' for v in ps)})"
                  f", hits {mean(hs):.2f}")


if __name__ == "__main__":
    main()
