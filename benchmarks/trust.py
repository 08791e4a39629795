"""Calibration of the trust check (issue 25): planted and untouched units, thresholds chosen on one split,
flag rates reported on another.

For each network and layer (efficientnet_lite0 blocks.3 and blocks.5; a random-weights ResNet-18, layer3) and
each split (``calibration``: 8 units, ``report``: 16 other units; each split its own photographs), plant a
trigger in the split's units with ``experiments.planted.plant`` (given the split's natural images), and run
``tasks.check.check`` on the planted copy and on the untouched network: natural-style maximization, channel mode,
one picture per unit. The scores are cached per run (OUT/runs/*.json, the pictures as .pt), so ``--report``
only reads them: it chooses each measure's threshold on the calibration split (just beyond every untouched
calibration unit: a threshold a genuine unit of that split never crosses), applies them to both splits and
writes benchmarks/results/trust.md, trust.json and trust.png.

    PYTHONPATH=src nice -n 19 .venv/bin/python benchmarks/trust.py --nets lite0 &      # the two runs in parallel
    PYTHONPATH=src nice -n 19 .venv/bin/python benchmarks/trust.py --nets resnet18 &
    PYTHONPATH=src .venv/bin/python benchmarks/trust.py --report                     # thresholds, rates, files

Natural images: scikit-image's photographs (the colour samples and the grey camera, coins, moon, grass, gravel,
brick) and, where installed, the photographs of Debian's ``mate-backgrounds`` (``apt-get install -y
mate-backgrounds``: /usr/share/backgrounds/mate/nature/*.jpg and abstract/Elephants.jpg), 5 views each (the
centre square and its four 60 % corners, each resized to 256 px and stretched to the full 0–255 range), alternating
photographs between the splits.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import pathlib
import sys
import time
from typing import Any

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GREY_PHOTOS = ("camera", "coins", "moon", "grass", "gravel", "brick")
LAYERS = {"lite0": ("efficientnet_lite0", ("blocks.3", "blocks.5")), "resnet18": ("resnet18", ("layer3",))}
SPLITS = {"calibration": 8, "report": 16, "holdout": 16}
#: The measures of the first verdict (chosen on the calibration split alone).
V1_MEASURES = ("natural_range", "natural_range_crops", "path_similarity", "plausibility", "retention",
               "retention_random")
#: ``collapse`` was added after the report split had been seen (the revised verdict, tested on the holdout split).
MEASURES = (*V1_MEASURES, "collapse")
MIN_J = 0.5  # a measure's calibration J (planted flagged − untouched flagged shares) needed to enter the verdict
STRENGTH = 10.0  # plant()'s default: a full-contrast trigger gives 10 × the unit's natural maximum


def photographs() -> list[str]:
    from preimage.images import COLOR_SAMPLES

    specs = [f"sample:{s}" for s in COLOR_SAMPLES + GREY_PHOTOS]
    specs += sorted(glob.glob("/usr/share/backgrounds/mate/nature/*.jpg"))
    specs += sorted(glob.glob("/usr/share/backgrounds/mate/abstract/Elephants.jpg"))
    return specs


def split_images(out: pathlib.Path, side: int = 256) -> dict[str, list[str]]:
    """Write 5 views of every photograph (the centre square, its four 60 % corners) into OUT/images/SPLIT/,
    alternating photographs between the splits; return the file lists."""
    from preimage.images import load_image, resize, save_png

    photos = photographs()
    files: dict[str, list[str]] = {s: [] for s in ("calibration", "report")}
    for j, spec in enumerate(photos):
        split = ("calibration", "report")[j % 2]
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        stem = pathlib.Path(spec.replace("sample:", "")).stem
        img = load_image(spec)
        h, w = img.shape[-2:]
        s = min(h, w)
        sq = img[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        c = int(0.6 * s)
        views = [sq, sq[..., :c, :c], sq[..., :c, s - c:], sq[..., s - c:, :c], sq[..., s - c:, s - c:]]
        for v, view in enumerate(views):
            path = folder / f"{stem}-{v}.png"
            if not path.exists():
                save_png(resize(view, side)[0], path, "minmax")  # each view stretched to the full 0–255 range
            files[split].append(str(path))
    files["holdout"] = files["report"]
    return files


def build(net: str) -> Any:
    import preimage

    torch.manual_seed(0)  # the random-weights ResNet is the same network in every run
    name, _ = LAYERS[net]
    return preimage.load(name, random_weights=(net == "resnet18")).spec


def pick_units(channels: int, layer: str) -> dict[str, list[int]]:
    gen = torch.Generator().manual_seed(sum(map(ord, layer)))
    perm = torch.randperm(channels, generator=gen).tolist()
    # holdout: 16 more units, on the report split's photographs, run after the report split had been seen, to test
    # a verdict revised then (benchmarks/results/trust.md).
    return {"report": sorted(perm[:16]), "calibration": sorted(perm[16:24]), "holdout": sorted(perm[24:40])}


def run(net: str, out: pathlib.Path, size: int, iters: int | None, rescore: bool = False,
        strength: float = STRENGTH, layers_only: list[str] | None = None, splits: list[str] | None = None) -> None:
    from preimage.experiments.planted import plant, trigger_score
    from preimage.report.result import Result
    from preimage.representations import Representation
    from preimage.tasks.check import check

    files = split_images(out)
    spec = build(net)
    _, layers = LAYERS[net]
    for layer in layers:
        if layers_only and layer not in layers_only:
            continue
        rep = Representation(spec, layer)
        with torch.no_grad():
            channels = int(rep(torch.zeros(1, 3, 224, 224)).shape[1])
        units = pick_units(channels, layer)
        for split in splits or SPLITS:
            key = f"{net}-{layer}-{split}" + ("" if strength == STRENGTH else f"-s{strength:g}")
            if (out / "runs" / f"{key}.json").exists() and not rescore:
                continue
            imgs, us = files[split], units[split]
            t = time.perf_counter()
            planted = plant(spec, layer, us, imgs, strength=strength)
            t_plant = time.perf_counter() - t
            pspec = dataclasses.replace(spec, module=planted, name=spec.name + "+planted", weights_id="planted")
            record: dict[str, Any] = {"net": net, "model": spec.name, "layer": layer, "split": split, "units": us,
                                      "images": imgs, "plant": planted.planted_report, "plant_seconds": t_plant}
            kinds = (("untouched", spec), ("planted", pspec))
            if strength != STRENGTH:  # a weaker plant: the untouched network's run is the main one's
                main = json.loads((out / "runs" / f"{net}-{layer}-{split}.json").read_text())
                record["untouched"] = main["untouched"]
                kinds = kinds[1:]
            for kind, s in kinds:
                print(f"{key} {kind}: checking {len(us)} units", file=sys.stderr, flush=True)
                pics = out / "runs" / f"{key}-{kind}.pt"
                given = None
                if rescore:  # the cached pictures, scored again (a change of the measures, not of the pictures)
                    given = Result(torch.load(pics).float(), [{"unit": u} for u in us], {}, spec.name, layer, 0, 0.0,
                                   torch.zeros(0))
                c = check(s, (layer, us), imgs, given, size=size, iters=iters, seed=1 if split == "report" else 2)
                if rescore:  # the cost stays the one measured by the run that made the pictures (both parts at once)
                    prev = json.loads((out / "runs" / f"{key}.json").read_text())[kind]["seconds"]
                    c.info["seconds"] = {**prev, "rescore": c.info["seconds"]["check"]}
                torch.save(c.result.images.half(), pics)
                record[kind] = {"records": c.records(), "seconds": c.info["seconds"], "info": c.info,
                                "trigger_score": trigger_score(c.result.images, planted, us).tolist(),
                                "exemplars": {str(u): v for u, v in c.exemplars.items()}}
            (out / "runs" / f"{key}.json").write_text(json.dumps(record, indent=1))
            print(f"{key}: done", file=sys.stderr, flush=True)


def _clean(values: list[float | None]) -> list[float]:
    return [x for x in values if x is not None and not math.isnan(x)]


def choose(genuine: list[float | None], planted: list[float | None], side: str) -> tuple[float, float]:
    """The threshold that best separates planted from untouched calibration units: the one with the largest
    Youden's J (share of planted flagged − share of untouched flagged), at the middle of the widest gap among
    those; returns (threshold, J)."""
    g, p = _clean(genuine), _clean(planted)
    vals = sorted(set(g + p))
    best = (-2.0, 0.0, vals[0])
    for lo, hi in zip(vals, vals[1:], strict=False):
        t = (lo + hi) / 2
        tpr = sum((x > t) if side == ">" else (x < t) for x in p) / len(p)
        fpr = sum((x > t) if side == ">" else (x < t) for x in g) / len(g)
        best = max(best, (tpr - fpr, hi - lo, t))
    return round(best[2], 3), best[0]


def verdict_j(runs: list[dict], thresholds: dict) -> float:
    """Youden J of the verdict (any threshold crossed) over the runs' planted and untouched units."""
    from preimage.measures.trust import verdict

    rate = {}
    for kind in ("planted", "untouched"):
        recs = [x for r in runs for x in r[kind]["records"]]
        scores = {m: torch.tensor([math.nan if x[m] is None else x[m] for x in recs]) for m in thresholds}
        rate[kind] = float(verdict(scores, thresholds)[0].float().mean())
    return rate["planted"] - rate["untouched"]


def report(out: pathlib.Path, command: str) -> None:
    from preimage.measures.trust import SIDES, Threshold, verdict
    from preimage.tasks.check import THRESHOLDS

    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    main = {(r["net"], r["layer"], r["split"]): r for r in runs if r["plant"]["strength"] == STRENGTH}
    for r in runs:  # a weaker plant's untouched pictures are the main run's: use its latest scores
        if r["plant"]["strength"] != STRENGTH:
            r["untouched"] = main[(r["net"], r["layer"], r["split"])]["untouched"]
    cal = [r for r in runs if r["split"] == "calibration" and r["plant"]["strength"] == STRENGTH]
    seen = [r for r in runs if r["split"] in ("calibration", "report") and r["plant"]["strength"] == STRENGTH]

    def pick(rs: list[dict], m: str) -> tuple[float, float]:
        return choose([x[m] for r in rs for x in r["untouched"]["records"]],
                      [x[m] for r in rs for x in r["planted"]["records"]], SIDES[m])

    # The first verdict: thresholds on the calibration split alone. A measure enters only if it separates there
    # (J ≥ MIN_J), in order of J, each only if it raises the calibration J of the whole verdict.
    chosen = {m: pick(cal, m) for m in V1_MEASURES}
    every = {m: Threshold(SIDES[m], t) for m, (t, _) in chosen.items()}
    first: dict[str, Threshold] = {}
    best = -2.0
    for m in sorted(chosen, key=lambda m: -chosen[m][1]):
        if chosen[m][1] < MIN_J:
            continue
        j = verdict_j(cal, {**first, m: every[m]})
        if j > best:
            first[m], best = every[m], j
    # The revised verdict: collapse, its threshold chosen on the calibration and report splits together.
    t_c, j_c = pick(seen, "collapse")
    every["collapse"] = Threshold(">", t_c)
    revised = {"collapse": every["collapse"]}
    if {m: (t.side, round(t.limit, 2)) for m, t in THRESHOLDS.items()} != {"collapse": (">", round(t_c, 2))}:
        print(f"note: tasks.check.THRESHOLDS {THRESHOLDS} differ from this calibration (collapse > {t_c})",
              file=sys.stderr)
    rows = []
    for r in runs:
        row: dict[str, Any] = {"net": r["net"], "layer": r["layer"], "split": r["split"], "units": r["units"],
                               "strength": r["plant"]["strength"],
                               "max_change": max(r["plant"]["max_change"]),
                               "top1_unchanged": r["plant"]["top1_unchanged"],
                               "trigger_in_images": max(r["plant"]["trigger_in_images"])}
        for kind in ("untouched", "planted"):
            recs = r[kind]["records"]
            scores = {m: torch.tensor([math.nan if x.get(m) is None else x[m] for x in recs]) for m in MEASURES}
            f1, _ = verdict(scores, first)
            flagged, reasons = verdict(scores, revised)
            by = {m: int(every[m].crossed(scores[m]).sum()) for m in MEASURES}
            sec = r[kind]["seconds"]
            row[kind] = {"flagged": int(flagged.sum()), "first_flagged": int(f1.sum()), "n": len(recs),
                         "by_measure": by, "reasons": reasons, "scores": {m: scores[m].tolist() for m in MEASURES},
                         "trigger_score": r[kind]["trigger_score"],
                         "seconds": sec, "cost_ratio": sec["check"] / sec["maximize"]}
        rows.append(row)
    size = runs[0]["untouched"]["info"]["picture_size"] if runs else None
    info = {"command": command, "size": size,
            "calibration": {m: {"threshold": t, "J": j, "used": m in first} for m, (t, j) in chosen.items()},
            "first_verdict_J": best, "first_thresholds": {m: [t.side, t.limit] for m, t in first.items()},
            "revised": {"collapse": {"threshold": t_c, "J_calibration_and_report": j_c}},
            "thresholds": {m: [t.side, t.limit] for m, t in revised.items()}, "rows": rows}
    (RESULTS / "trust.json").write_text(json.dumps(info, indent=1))
    pictures(out, RESULTS / "trust-pictures.png")
    plot([r for r in rows if r["strength"] == STRENGTH], every, set(first) | set(revised), RESULTS / "trust.png")
    (RESULTS / "trust.md").write_text(markdown(info, runs))
    print(markdown(info, runs))


def pictures(out: pathlib.Path, path: pathlib.Path, key: str = "lite0-blocks.3-report", n: int = 8) -> None:
    """A grid: the untouched network's pictures of the first n units of a run (top row) and the planted copy's
    (bottom row; its weaker plants below, where run)."""
    from preimage.images import save_png

    rows = [out / "runs" / f"{key}-untouched.pt", out / "runs" / f"{key}-planted.pt",
            *sorted((out / "runs").glob(f"{key}-s*-planted.pt"))]
    imgs = [torch.load(f).float().clamp(0, 255)[:n] for f in rows if f.exists()]
    if not imgs:
        return
    side, pad = imgs[0].shape[-1], 2
    grid = torch.full((3, len(imgs) * (side + pad) - pad, n * (side + pad) - pad), 255.0)
    for r, batch in enumerate(imgs):
        for c, im in enumerate(batch):
            grid[:, r * (side + pad):r * (side + pad) + side, c * (side + pad):c * (side + pad) + side] = im
    save_png(grid, path, "clip")


def plot(rows: list[dict], thresholds: dict, used: set[str], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = (len(MEASURES) + 1) // 2
    fig, grid = plt.subplots(2, cols, figsize=(4.4 * cols, 7.4))
    axes = list(grid.flat)
    for ax in axes[len(MEASURES):]:
        ax.axis("off")
    labels = sorted({(r["net"], r["layer"]) for r in rows})
    for ax, m in zip(axes, MEASURES, strict=False):
        for j, lab in enumerate(labels):
            for kind, colour, dx in (("untouched", "tab:blue", -0.15), ("planted", "tab:red", 0.15)):
                for split, marker, off in (("calibration", "o", -0.06), ("report", "^", 0.0), ("holdout", "s", 0.06)):
                    vals = [v for r in rows if (r["net"], r["layer"]) == lab and r["split"] == split
                            for v in r[kind]["scores"][m] if not math.isnan(v)]
                    xs = [j + dx + off] * len(vals)
                    ax.scatter(xs, vals, s=12, c=colour, marker=marker, alpha=0.7,
                               label=f"{kind}, {split}" if j == 0 else None)
        ax.axhline(thresholds[m].limit, color="k", ls="--" if m in used else ":", lw=1)
        ax.set_xticks(range(len(labels)), [f"{n}\n{layer}" for n, layer in labels], fontsize=8)
        note = {"collapse": ", the verdict", "retention_random": ", first verdict"}.get(m, ", not used")
        ax.set_title(f"{m} (flag {thresholds[m].side} {thresholds[m].limit:g}{note})", fontsize=9)
        if m.startswith("natural_range"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ranks(v: list[float]) -> list[float]:
    """Percentile rank of each value among the list (0 = lowest, 1 = highest; NaN stays NaN)."""
    ok = sorted(x for x in v if not math.isnan(x))
    return [math.nan if math.isnan(x) else (ok.index(x) / max(len(ok) - 1, 1)) for x in v]


def genuine_flags(info: dict) -> list[str]:
    """The untouched units that the verdict flags, with where their pictures rank among their layer's untouched
    units on the measures that compare them with their exemplars (0 = least like them)."""
    out = []
    for r in info["rows"]:
        if r["strength"] != STRENGTH:
            continue
        u = r["untouched"]
        pr, pa = _ranks(u["scores"]["plausibility"]), _ranks(u["scores"]["path_similarity"])
        for i, reason in enumerate(u["reasons"]):
            if reason:
                out.append(f"- {r['net']} {r['layer']} ({r['split']}) unit {r['units'][i]}: {reason}; among the "
                           f"{len(pr)} untouched units it ranks {pr[i]:.2f} on plausibility and {pa[i]:.2f} on "
                           "path similarity (0 = least like its exemplars)")
    return out or ["- none"]


def markdown(info: dict, runs: list[dict]) -> str:
    from preimage.measures.trust import SIDES

    plant0 = runs[0]["plant"] if runs else {}
    n_img = {r["split"]: len(r["images"]) for r in runs}
    rev = info["revised"]["collapse"]
    lines = ["# Trust check: planted and untouched units (issue 25)", "",
             "Made by (benchmarks/trust.py, 1 torch thread each, `nice -n 19`, on a 2-core machine shared with other "
             "jobs; in this order):", "",
             "```", info["command"], "```", "",
             "Each row: `plant()` puts a trigger (a colour grating, `experiments/planted.py`) into the split's units "
             f"(strength {plant0.get('strength')}, bias {plant0.get('bias')}: a full-contrast trigger gives "
             f"{plant0.get('strength')} × the unit's natural maximum), given the split's natural images; then "
             "`tasks.check.check` runs on the planted copy and on the untouched network: natural-style `maximize` "
             f"(64 steps), channel mode, {info.get('size', 96)} px pictures, one per unit, 5 exemplars per unit. "
             "Networks: efficientnet_lite0 (ImageNet weights) blocks.3 and blocks.5, ResNet-18 with random weights "
             "(torch seed 0) layer3. Splits: **calibration** (8 units per layer; "
             f"{n_img.get('calibration')} images: 5 views of half the photographs), **report** (16 other units per "
             f"layer; {n_img.get('report')} images from the other photographs), **holdout** (16 further units per "
             "layer, on the report split's images; run after the report split had been seen). Photographs: "
             "scikit-image's colour samples and its grey camera, coins, moon, grass, gravel, brick, and Debian's "
             "`mate-backgrounds` nature photographs and Elephants.jpg (`apt-get install -y mate-backgrounds`).", "",
             "**First verdict, chosen on the calibration split alone**: per measure the threshold with the largest "
             "Youden J (share of planted units flagged − share of untouched units flagged) on the calibration units, "
             f"at the middle of the widest gap; measures with J ≥ {MIN_J} enter the verdict in order of J, each only "
             "if it raises the calibration J of the verdict as a whole. "
             + "; ".join(f"`{m}` {SIDES[m]} {c['threshold']:g} (J = {c['J']:.2f}, "
                         f"{'used' if c['used'] else 'not used'})" for m, c in info["calibration"].items())
             + f". Verdict: `retention_random` < {info['first_thresholds'].get('retention_random', ['', 'nan'])[1]}. "
             "On the report split it flagged too many untouched units (the *first* column below).", "",
             "**Revised verdict**, after the report split had been seen: `collapse` = natural_range × (1 − mean of "
             "the two retentions), the response lost under mixing in natural maxima, its threshold chosen the same "
             "way on the calibration and report splits together: "
             f"`collapse` > {rev['threshold']:g} (J = {rev['J_calibration_and_report']:.3f} there), the default of "
             "`tasks.check.THRESHOLDS`. Its only clean test is the **holdout** split, whose units no choice saw "
             "(its images are the report split's).", "",
             "The per-measure counts apply every measure's own threshold (calibration split; collapse's as above).", "",
             "| net | layer | split | plant strength | planted flagged (revised; first) | untouched flagged (revised; "
             "first) | by measure (planted / untouched) | response change on natural images (max, × natural max) | "
             "top-1 unchanged | trigger in images (max) | "
             "trigger shown (planted / untouched pictures, median) | check cost / maximization (untouched / planted) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"calibration": 0, "report": 1, "holdout": 2}
    for r in sorted(info["rows"], key=lambda r: (r["net"], r["layer"], order[r["split"]], -r["strength"])):
        p, u = r["planted"], r["untouched"]
        by = ", ".join(f"{m} {p['by_measure'][m]}/{u['by_measure'][m]}" for m in MEASURES)
        ts = (sorted(p["trigger_score"])[len(p["trigger_score"]) // 2],
              sorted(u["trigger_score"])[len(u["trigger_score"]) // 2])
        lines.append(f"| {r['net']} | {r['layer']} | {r['split']} | {r['strength']:g} | "
                     f"**{p['flagged']}/{p['n']}**; {p['first_flagged']}/{p['n']} | "
                     f"**{u['flagged']}/{u['n']}**; {u['first_flagged']}/{u['n']} | {by} | {r['max_change']:.3g} | "
                     f"{r['top1_unchanged']} | {r['trigger_in_images']:.2f} | "
                     f"{ts[0]:.2f} / {ts[1]:.2f} | "
                     + (f"{u['cost_ratio']:.3f} / {p['cost_ratio']:.3f} |" if r["split"] == "holdout" else "– |"))
    lines += ["", "Columns: *trigger in images*: the largest trigger energy in any natural image, as a fraction of "
              "the full-contrast trigger's; *trigger shown*: the same fraction for the pictures (planted pictures "
              "against the untouched network's pictures of the same units); *check cost*: the check's seconds "
              "(image pass at 224 px, exemplar and baseline crops, the 2·5 mixtures per picture, the measures) over "
              "the seconds of the maximization it checks, both for the row's units in one batch and measured by the "
              "same run (holdout rows only: the other rows were rescored later, under other load).", "",
              "![distributions](trust.png)", "",
              "Pictures of the first 8 report units of efficientnet_lite0 blocks.3: untouched network (top), planted "
              "copy (middle), planted copy with strength 3 (bottom):", "",
              "![pictures](trust-pictures.png)", "", "Genuine (untouched) units that the revised verdict flags:", "",
              *genuine_flags(info), "", NOTES]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default="lite0,resnet18", help="lite0, resnet18 (comma-separated)")
    ap.add_argument("--out", default=str(pathlib.Path.home() / ".cache" / "preimage" / "trust-i25"))
    ap.add_argument("--size", type=int, default=96, help="picture side for maximize")
    ap.add_argument("--iters", type=int, default=None, help="maximize iterations (default: the style's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="only read the cached runs and write the results")
    ap.add_argument("--rescore", action="store_true", help="score the cached pictures again")
    ap.add_argument("--strength", type=float, default=STRENGTH, help="plant()'s strength (other than 10: extra rows, "
                    "not used to choose the thresholds)")
    ap.add_argument("--layers", default=None, help="only these layers (comma-separated)")
    ap.add_argument("--splits", default=None, help="only these splits (comma-separated)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if args.report:
        report(out, COMMAND)
        return
    for net in args.nets.split(","):
        run(net, out, args.size, args.iters, args.rescore, args.strength,
            args.layers.split(",") if args.layers else None, args.splits.split(",") if args.splits else None)


NOTES = """## Notes on this run (written by hand from the numbers above)

- **Rates, revised verdict (collapse > 2.2) on the holdout split**, units no choice saw: 16/16 planted and 0/16
  untouched flagged at efficientnet_lite0 blocks.3, 15/16 and 0/16 at blocks.5, 16/16 and 0/16 at the random
  ResNet-18's layer3: the issue's targets (≥ 15/16, ≤ 2/16) at every layer. The margin at blocks.5 is thin: there
  untouched pictures reach collapse 0.95–2.11 and planted ones 2.13–4.40 (the missed planted unit, 159, has 2.13:
  natural range 2.58, retentions 0.24 and 0.11). On the report split, which chose the threshold together with the
  calibration split (so not a clean test), it gives 16/16 against 0/16, 0/16 and 1/16.
- **The first verdict failed on unseen units, and that is why there is a revised one.** Chosen on the calibration
  split alone (8 units per layer), `retention_random` < 0.35 separated those perfectly (J 1.0) but flagged 3/16
  (report) and 5/16 (holdout) untouched units at blocks.5 and 7/16 and 6/16 at the ResNet; all planted units were
  flagged. Genuine pictures whose own response is modest (natural range 0.7–1.4 at the random ResNet) lose a large
  share of it when mixed with a photograph, a share that says little; the amount lost in natural maxima
  (`collapse`) does not have that problem. The branch `trust` had used the natural range alone (> 3.0) and
  flagged 7/16 untouched units at blocks.5; it fails the same way here (natural range > 2.93: 4/16 report, 7/16
  holdout at blocks.5), because natural-style pictures of genuine blocks.5 units reach 1.4–5× the maximum over
  ~65 photographs too. Neither threshold was changed after seeing the split it is reported on; the revision is a
  new measure whose only clean test is the holdout split (16 further units per layer, on the report split's
  images, so images are shared with the split that helped choose).
- **Path similarity and plausibility do not separate this lie** (calibration J 0.08 and 0.50): natural-style
  pictures of genuine units are processed unlike photographs, about as much as the planted ones.
- **What the check does not catch: a quiet lie.** The strength-3 row plants the same 16 blocks.3 report units: its
  pictures still show the trigger (median 0.14 of a full-contrast trigger's energy against 0.02 for the genuine
  pictures; bottom row of the grid) but reach only 1.5–2.7× the natural maximum, and collapse flags none (0/16; the
  first verdict 4/16). A lie kept near the natural range has little to lose under mixing.
- **The lie works:** on the natural images the planted units' responses and the network's top-1 are unchanged
  bit for bit (response change 0: the gate is exactly 0 on them), no image holds more than 0.24 of a
  full-contrast trigger's energy, and the planted pictures hold 0.15–0.19 of it (median) against 0.01–0.07 for the
  untouched network's pictures of the same units.
- **Genuine units that the check flags are not the ones least like their exemplars.** The revised verdict flags
  one genuine unit in all splits (ResNet layer3 unit 212, report split: natural range 3.17, and mixing takes all
  of it), whose picture is the *most* plausible of its layer's 16 (rank 1.00). The 21 genuine units the first
  verdict flagged have plausibility ranks from 0.13 to 1.00 (median 0.67) and path-similarity ranks from 0.00 to
  1.00 among their layer's untouched units (0 = least like the exemplars): fragile, not implausible.
- **Cost.** The check costs 0.03–0.05 of the maximization it checks (holdout rows: both measured by the run that
  made the pictures, 16 units in one batch, 96 px, 64 steps; one pass over the ~65 images at 224 px, the
  exemplar and baseline crops, 2 × 5 mixtures per picture). An intermediate rescore of the holdout runs had
  overwritten their check seconds before `--rescore` learnt to keep them; they were copied back by hand from the
  runs' own records (saved before that rescore). Planting (`plant()`, not part of a check) is extra.
- **Limits of this run.** Pictures at 96 px and one picture per unit, to fit a shared 2-core machine; one random
  ResNet layer and no ViT (token outputs are not supported by `plant`); ~65–70 photographs per split.
"""


COMMAND = """B='nice -n 19 env PYTHONPATH=src .venv/bin/python benchmarks/trust.py'
$B --nets lite0 --splits calibration,report & $B --nets resnet18 --splits calibration,report & wait
$B --nets lite0,resnet18 --splits calibration --rescore   # retention added meanwhile; first verdict chosen here
$B --nets lite0,resnet18 --splits report --rescore        # the first verdict on the report split
$B --nets lite0 --layers blocks.3 --splits report --strength 3   # the quiet plant (planted pictures only)
# collapse and the holdout split added (the revised verdict)
$B --nets lite0 --splits holdout & $B --nets resnet18 --splits holdout & wait
$B --nets lite0,resnet18 --rescore                        # every cached picture scored by the final check
$B --nets lite0 --layers blocks.3 --splits report --strength 3 --rescore
$B --report"""

if __name__ == "__main__":
    main()
