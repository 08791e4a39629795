"""Best of k, simulated from runs with one candidate: does the optimized network's own p(class) pick the draw the
judge recognises?

Each folder is a ``benchmarks/transfer.py`` run of one variant with one candidate and its own ``--seed`` (found
through the folder's transfer.json). For every class the runs' pictures are k candidates: the simulation
keeps the one whose log-odds log p/(1−p) of the class is highest on the optimized network (``--model``, read from
the PNG as the judge reads it) and reports the judge's top-1 rate and mean p(class) of the kept pictures, averaged
over every choice of k runs, for k = 1 … len(folders); "judge's pick" (the best the judge itself would keep) bounds
it. This is how ``Style.candidates`` was chosen (benchmarks/results/transfer.md, round 9).

    PYTHONPATH=src python benchmarks/candidates_sim.py RUN_SEED0 RUN_SEED1 RUN_SEED2 [--variant NAME] [--out F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import statistics
import sys

import torch


def variant_folder(run: pathlib.Path, variant: str) -> pathlib.Path:
    """The folder of ``variant``'s pictures in a transfer.py ``--out`` folder, found through its transfer.json."""
    from preimage.errors import PreimageError

    try:
        rows = json.loads((run / "transfer.json").read_text())["rows"]
    except (OSError, ValueError, KeyError) as e:
        raise PreimageError(f"{run}: not a finished transfer.py --out folder ({type(e).__name__}: {e})") from None
    row = next((r for r in rows if r.get("method") == variant and r.get("folder")), None)
    if row is None:
        raise PreimageError(f"{run}: no variant {variant!r} (it has: {', '.join(r['method'] for r in rows)})")
    folder = run / pathlib.Path(row["folder"]).name  # the run folder may have moved since
    if not folder.is_dir():
        raise PreimageError(f"no folder {folder}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="transfer.py --out folders, one per seed")
    ap.add_argument("--variant", default="natural/candidates-1")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--judge", default="efficientnet_lite1")
    ap.add_argument("--out", default=None, help="also write the per-class numbers and the table as JSON")
    a = ap.parse_args()
    from preimage.errors import PreimageError
    from preimage.measures.judge import Judge
    from preimage.measures.metrics import log_odds

    torch.set_num_threads(1)
    dirs = [variant_folder(pathlib.Path(f), a.variant) for f in a.folders]
    classes = sorted(int(p.stem[5:]) for p in dirs[0].glob("class*.png"))
    if not classes:
        raise PreimageError(f"no class*.png in {dirs[0]}")
    own, judge = Judge(a.model), Judge(a.judge)
    per: dict[int, list[dict[str, float]]] = {c: [] for c in classes}
    for d in dirs:
        files = [d / f"class{c}.png" for c in classes]
        verdict = judge.classes(files, classes)
        with torch.no_grad():
            z = own.rep(own.rep.to_paper_units(own.read(files))).double()
        odds_of = log_odds(z, torch.tensor(classes))
        for i, c in enumerate(classes):
            odds = float(odds_of[i])
            per[c].append({"log_odds": odds, "judge_p": verdict["probability"][i], "top1": verdict["top1"][i]})
    rows = []
    for k in range(1, len(dirs) + 1):
        for pick in ("own log-odds", "judge's pick"):
            key = "log_odds" if pick == "own log-odds" else "judge_p"
            ps, tops = [], []
            for combo in itertools.combinations(range(len(dirs)), k):
                kept = [max((per[c][i] for i in combo), key=lambda r: r[key]) for c in classes]
                ps.append(statistics.mean(r["judge_p"] for r in kept))
                tops.append(sum(r["top1"] for r in kept))
            rows.append({"k": k, "pick": pick, "draws": len(ps), "top1": statistics.mean(tops),
                         "top1_min": min(tops), "mean_p": statistics.mean(ps), "mean_p_min": min(ps)})
            if k == 1:
                break  # one candidate: nothing to pick
    n = len(classes)
    print(f"| k | kept by | draws | top-1 on {judge.name} (mean; worst) | mean p (mean; worst) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['k']} | {r['pick'] if r['k'] > 1 else '–'} | {r['draws']} | {r['top1']:.1f}/{n}; "
              f"{r['top1_min']}/{n} | {r['mean_p']:.3f}; {r['mean_p_min']:.3f} |")
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps({"folders": a.folders, "variant": a.variant, "model": a.model,
                                                   "judge": judge.name, "classes": classes, "rows": rows,
                                                   "per_class": per}, indent=1))


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except PreimageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
