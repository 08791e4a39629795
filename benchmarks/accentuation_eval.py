"""Feature accentuation side by side (issue 26): the seeds, the (image, class) pairs and the evaluation of the pictures.

    PYTHONPATH=src python benchmarks/accentuation_eval.py prepare             # seeds, lite0 model file, pairs.json
    benchmarks/faccent-venv/bin/python benchmarks/faccent_accentuate.py ...   # the peers (benchmarks/README.md)
    PYTHONPATH=src python benchmarks/accentuation_eval.py evaluate --runs faccent=DIR horama=DIR

``prepare`` writes the 8 scikit-image colour samples at 224 px (``RAW/seeds/NAME.png``, read by
``preimage.images.load_image(f"sample:{name}", 224)``: bicubic, no aspect-preserving crop), the network
(``RAW/efficientnet_lite0.pt``: ``nn.Sequential(normalize, net)``, a 1×1 convolution doing timm's mean/std 0.5
normalization in front of the timm module, so it takes [0, 1] RGB and unpickles wherever torch and timm are), and
``pairs.json``: 4 target classes per image that it is not, and the tuning/reporting split.

The classes (deterministic): for image i of ``COLOR_SAMPLES``, ``numpy.random.default_rng([2016, i])`` draws one
class from each quarter of ImageNet's 1000 (0–249, 250–499, 500–749, 750–999), excluding the seed's own top-5 on
efficientnet_lite0, so the 4 targets spread over the label space. The split is by image, alternating in
``COLOR_SAMPLES`` order (astronaut, coffee, immunohistochemistry, hubble_deep_field tune; chelsea, rocket,
motorcycle_left, retina report), so that no image is in both halves and each half has photographs and scientific
pictures.

``evaluate`` reads every ``log.jsonl`` line of each run folder and computes, per picture: the judge's
(efficientnet_lite1) probability of the target and whether it is its top-1 (``Judge.classes``, from the PNG as a
user loads it), the pixel RMSE to the seed (both at 224 px, 0–255 units) and the IJCV error at ``blocks.1`` of
efficientnet_lite0 (‖Φ(x)−Φ(x0)‖/‖Φ(x0)‖). The seeds themselves are a ``seed`` row (distance 0). Tables, each
for the tuning and the reporting half: mean judge probability per RMSE bin × method, the share of pairs whose
target is top-1 with some weight at RMSE ≤ 24 (the best weight per pair under that distance), per-weight means
(the curves), and seconds per picture. Writes ``OUT/accentuation.json``, ``OUT/accentuation.md`` and a small
JPEG contact sheet per half (``OUT/sheet-tuning.jpg``, ``OUT/sheet-reporting.jpg``).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from accent_runner import fail, read_json  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results" / "accentuation"
RAW = RESULTS / "raw"
BINS = (0.0, 8.0, 16.0, 24.0, 32.0, math.inf)
TOP1_RMSE = 24.0
SIZE = 224


def split() -> dict[str, str]:
    """image name → half: alternating in COLOR_SAMPLES order, the first one tuning."""
    from preimage.images import COLOR_SAMPLES

    return {name: ("tuning" if i % 2 == 0 else "reporting") for i, name in enumerate(COLOR_SAMPLES)}


def choose_classes(top5: list[int], index: int, per_image: int = 4) -> list[int]:
    """One class per ImageNet quarter, drawn with a fixed seed per image, never one of the seed's top-5."""
    rng = np.random.default_rng([2016, index])
    quarter = 1000 // per_image
    out = []
    for q in range(per_image):
        pool = [c for c in range(q * quarter, (q + 1) * quarter) if c not in top5]
        out.append(int(rng.choice(pool)))
    return out


def model_file(path: pathlib.Path, model: str = "efficientnet_lite0") -> None:
    """torch.save a module taking [0, 1] RGB: a fixed 1×1 convolution (the model's normalization) + the network."""
    import preimage

    rep = preimage.load(model)
    mean = torch.tensor(rep.spec.mean, dtype=torch.float32)
    std = torch.tensor(rep.spec.std, dtype=torch.float32)
    norm = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        norm.weight.copy_(torch.diag(1 / std)[:, :, None, None])
        norm.bias.copy_(-mean / std)
    seq = torch.nn.Sequential(OrderedDict(normalize=norm, net=rep.net)).eval().requires_grad_(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seq, path)


def prepare(a: argparse.Namespace) -> None:
    """Seeds, the model file and pairs.json."""
    from PIL import Image

    import preimage
    from preimage.images import COLOR_SAMPLES, load_image

    raw = pathlib.Path(a.raw)
    (raw / "seeds").mkdir(parents=True, exist_ok=True)
    model_file(raw / "efficientnet_lite0.pt")
    rep = preimage.load("efficientnet_lite0", "output")
    try:
        import torchvision

        names = list(torchvision.models.AlexNet_Weights.DEFAULT.meta["categories"])
    except Exception:  # noqa: BLE001 - names are a nicety
        names = [str(i) for i in range(1000)]
    halves = split()
    pairs, images = [], []
    for i, name in enumerate(COLOR_SAMPLES):
        x = load_image(f"sample:{name}", SIZE)
        arr = x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        Image.fromarray(arr).save(raw / "seeds" / f"{name}.png")
        x = torch.from_numpy(arr).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            p = rep(rep.to_paper_units(x)).softmax(1)[0]
        top5 = p.topk(5).indices.tolist()
        classes = choose_classes(top5, i)
        images.append({"image": name, "half": halves[name], "lite0_top5": top5,
                       "lite0_top5_names": [names[c] for c in top5]})
        pairs += [{"image": name, "class": c, "name": names[c], "half": halves[name]} for c in classes]
    doc = {"about": "4 target classes per image that it is not: one per ImageNet quarter (0-249, 250-499, 500-749, "
                    "750-999), drawn by numpy.random.default_rng([2016, image index in COLOR_SAMPLES]), excluding "
                    "the seed's top-5 on efficientnet_lite0 (224 px). Split by image, alternating (first: tuning).",
           "model": "efficientnet_lite0", "size": SIZE, "images": images, "pairs": pairs}
    out = pathlib.Path(a.pairs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"pairs": str(out), "seeds": str(raw / "seeds"), "model_file": str(raw / "efficientnet_lite0.pt"),
                      "n_pairs": len(pairs)}))


def records(runs: list[tuple[str, pathlib.Path]]) -> list[dict[str, Any]]:
    """The last log line of every picture of every run whose PNG exists."""
    recs: dict[tuple[str, str, int, float], dict[str, Any]] = {}
    for method, folder in runs:
        log = folder / "log.jsonl"
        if not log.is_file():
            print(f"warning: no {log}", file=sys.stderr)
            continue
        for line in log.read_text().splitlines():
            if line.strip().startswith("{"):
                r = json.loads(line)
                png = pathlib.Path(r["png"])
                png = png if png.is_file() else folder / r["image"] / png.name
                if png.is_file():
                    recs[(method, r["image"], int(r["class"]), float(r["weight"]))] = {**r, "method": method,
                                                                                        "png": str(png)}
    return list(recs.values())


def measure(recs: list[dict[str, Any]], seeds: pathlib.Path, pairs: list[dict[str, Any]],
            batch: int = 16) -> list[dict[str, Any]]:
    """Judge probability, top-1, pixel RMSE and the IJCV error at blocks.1 for every record (in place), plus one
    ``seed`` record per pair (the seed itself, distance 0)."""
    import preimage
    from preimage.images import load_image
    from preimage.measures.judge import Judge

    half = {(p["image"], int(p["class"])): p["half"] for p in pairs}
    recs = [r for r in recs if (r["image"], int(r["class"])) in half]
    for p in pairs:
        recs.append({"method": "seed", "image": p["image"], "class": int(p["class"]), "weight": 0.0,
                     "half": p["half"], "seconds": 0.0, "png": str(seeds / f"{p['image']}.png")})
    judge = Judge("efficientnet_lite1")
    phi = preimage.load("efficientnet_lite0", "blocks.1")
    x0s = {name: load_image(str(seeds / f"{name}.png"), SIZE) for name in {r["image"] for r in recs}}
    with torch.no_grad():
        f0s = {name: phi(phi.to_paper_units(x)) for name, x in x0s.items()}
    for k in range(0, len(recs), batch):
        chunk = recs[k:k + batch]
        j = judge.classes([r["png"] for r in chunk], [int(r["class"]) for r in chunk])
        x = torch.cat([load_image(r["png"], SIZE) for r in chunk])
        with torch.no_grad():
            f = phi(phi.to_paper_units(x))
        for i, r in enumerate(chunk):
            x0, f0 = x0s[r["image"]], f0s[r["image"]]
            r.update(half=half[(r["image"], int(r["class"]))], probability=j["probability"][i], top1=j["top1"][i],
                     judge_top1=j["judge_top1"][i], rmse=float((x[i] - x0[0]).square().mean().sqrt()),
                     ijcv_blocks1=float((f[i] - f0[0]).norm() / f0[0].norm()))
        print(f"measured {min(k + batch, len(recs))}/{len(recs)}", file=sys.stderr, flush=True)
    return recs


def mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}+" if math.isinf(hi) else f"{lo:g}–{hi:g}"


def summarize(recs: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The tables as data: per half, per method."""
    methods = sorted({r["method"] for r in recs}, key=lambda m: (m != "seed", m))
    out: dict[str, Any] = {}
    for half in ("tuning", "reporting"):
        hp = [(p["image"], int(p["class"])) for p in pairs if p["half"] == half]
        h: dict[str, Any] = {"pairs": len(hp), "methods": {}}
        for m in methods:
            rs = [r for r in recs if r["method"] == m and r["half"] == half]
            if not rs:
                continue
            bins = {}
            for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
                b = [r for r in rs if lo <= r["rmse"] < hi]
                bins[bin_label(lo, hi)] = {"n": len(b), "probability": mean([r["probability"] for r in b]),
                                           "top1": mean([r["top1"] for r in b])}
            best, best_p, close = [], [], 0
            for pair in hp:
                prs = [r for r in rs if (r["image"], int(r["class"])) == pair]
                ok = [r for r in prs if r["rmse"] <= TOP1_RMSE]
                close += bool(prs)
                best.append(any(r["top1"] for r in ok))
                if prs:
                    best_p.append(max((r["probability"] for r in ok), default=0.0))
            weights = {}
            for w in sorted({r["weight"] for r in rs}):
                ws = [r for r in rs if r["weight"] == w]
                weights[f"{w:g}"] = {"n": len(ws), "probability": float(np.mean([r["probability"] for r in ws])),
                                     "top1": float(np.mean([r["top1"] for r in ws])),
                                     "rmse": float(np.mean([r["rmse"] for r in ws])),
                                     "ijcv_blocks1": float(np.mean([r["ijcv_blocks1"] for r in ws])),
                                     "seconds": float(np.mean([r["seconds"] for r in ws]))}
            secs = [r["seconds"] for r in rs if r["method"] != "seed"]
            h["methods"][m] = {"pictures": len(rs), "pairs_run": close, "bins": bins, "weights": weights,
                               "top1_within_24": sum(best) / len(hp) if hp else None,
                               "top1_within_24_of_run": sum(best) / close if close else None,
                               "best_probability_within_24": float(np.mean(best_p)) if best_p else None,
                               "seconds_per_picture": float(np.mean(secs)) if secs else None,
                               "steps": rs[0].get("steps")}
        out[half] = h
    return out


def paired(recs: list[dict[str, Any]], ours: str = "ours") -> dict[str, Any]:
    """Each peer picture against ``ours`` on the same (image, class) at the same pixel RMSE: ours' judge p
    interpolated linearly along its own weights' (RMSE, p) points, where the peer's RMSE lies within them (a
    picture outside that span is counted as ``outside``, not compared). Per half, per peer, per RMSE bin (the
    peer's): n, the peer's mean p, ours' mean p at the same RMSEs, and in how many ours' p is at least the peer's.
    Why: a bin's mean over all of a method's pictures mixes pairs, and a slow peer ran on few of them."""
    out: dict[str, Any] = {}
    for half in ("tuning", "reporting"):
        peers = sorted({r["method"] for r in recs if r["half"] == half and r["method"] not in ("seed", ours)})
        h: dict[str, Any] = {}
        for m in peers:
            bins = {bin_label(lo, hi): {"n": 0, "peer": [], "ours": [], "ours_at_least": 0}
                    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)}
            outside = 0
            for r in (r for r in recs if r["method"] == m and r["half"] == half):
                mine = sorted((q for q in recs if q["method"] == ours and q["half"] == half
                               and (q["image"], int(q["class"])) == (r["image"], int(r["class"]))),
                              key=lambda q: q["rmse"])
                if not mine or not mine[0]["rmse"] <= r["rmse"] <= mine[-1]["rmse"]:
                    outside += 1
                    continue
                p = float(np.interp(r["rmse"], [q["rmse"] for q in mine], [q["probability"] for q in mine]))
                b = bins[next(bin_label(lo, hi) for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)
                              if lo <= r["rmse"] < hi)]
                b["n"] += 1
                b["peer"].append(r["probability"])
                b["ours"].append(p)
                b["ours_at_least"] += p >= r["probability"]
            h[m] = {"outside": outside, "bins": {k: {"n": b["n"], "peer": mean(b["peer"]), "ours": mean(b["ours"]),
                                                     "ours_at_least": b["ours_at_least"]}
                                                 for k, b in bins.items()}}
        out[half] = h
    return out


def paired_markdown(table: dict[str, Any], ours: str = "ours") -> str:
    """``paired`` as markdown: one row per half and peer, one cell per RMSE bin."""
    labels = labels_of_bins()
    lines = [f"Each peer picture against {ours} on the same (image, class) at the same pixel RMSE ({ours}' judge p "
             "interpolated along its weights). Cells: peer p / ours p [pictures compared; ours ≥ peer in how many].",
             "", "| half | peer | " + " | ".join(labels) + " | outside ours' RMSE span |",
             "|---|---|" + "---|" * (len(labels) + 1)]
    for half, h in table.items():
        for m, t in h.items():
            cells = [f"{fmt(c['peer'])} / {fmt(c['ours'])} [{c['n']}; {c['ours_at_least']}]" if c["n"] else "–"
                     for c in (t["bins"][k] for k in labels)]
            lines.append(f"| {half} | {m} | " + " | ".join(cells) + f" | {t['outside']} |")
    return "\n".join(lines) + "\n"


def fmt(v: float | None, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def markdown(summary: dict[str, Any], info: dict[str, Any]) -> str:
    """The tables as markdown."""
    lines = ["# Feature accentuation side by side (efficientnet_lite0, judged by efficientnet_lite1)", "",
             f"Pairs: {info['pairs_file']}. Distances: pixel RMSE to the seed at 224 px (0–255) and the IJCV error "
             "at lite0 blocks.1. `seed`: the seed itself.", ""]
    labels = [bin_label(lo, hi) for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)]
    for half in ("tuning", "reporting"):
        h = summary[half]
        lines += [f"## {half} half ({h['pairs']} pairs)", "", "Mean judge p(target) [pictures] per pixel-RMSE bin:",
                  "", "| method | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for m, s in h["methods"].items():
            cells = [f"{fmt(b['probability'])} [{b['n']}]" if b["n"] else "–" for b in s["bins"].values()]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", f"Share of pairs whose target is the judge's top-1 with some weight at RMSE ≤ {TOP1_RMSE:g} "
                  "(of all the half's pairs; of the pairs run), and wall time:", "",
                  "| method | steps | top-1 ≤ 24 (all) | top-1 ≤ 24 (run) | pairs run | pictures | s / picture |",
                  "|---|---|---|---|---|---|---|"]
        for m, s in h["methods"].items():
            lines.append(f"| {m} | {s['steps'] or '–'} | {fmt(s['top1_within_24'], 2)} | "
                         f"{fmt(s['top1_within_24_of_run'], 2)} | {s['pairs_run']} | {s['pictures']} | "
                         f"{fmt(s['seconds_per_picture'], 1)} |")
        lines += ["", "Per weight (the curves): mean p(target), top-1 rate, pixel RMSE, IJCV error at blocks.1, "
                  "seconds:", "", "| method | weight | pictures | p(target) | top-1 | RMSE | IJCV blocks.1 | s |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, s in h["methods"].items():
            for w, v in s["weights"].items():
                lines.append(f"| {m} | {w} | {v['n']} | {fmt(v['probability'])} | {fmt(v['top1'], 2)} | "
                             f"{fmt(v['rmse'], 1)} | {fmt(v['ijcv_blocks1'])} | {fmt(v['seconds'], 1)} |")
        lines.append("")
    return "\n".join(lines)


def contact_sheet(recs: list[dict[str, Any]], half: str, path: pathlib.Path, side: int = 96) -> bool:
    """A small JPEG: one row per pair of the half that some method ran, the seed then every (method, weight),
    each captioned with the judge's p(target) and the pixel RMSE. Returns whether anything was drawn."""
    from PIL import Image, ImageDraw

    rs = [r for r in recs if r["half"] == half and r.get("png")]
    pairs = sorted({(r["image"], int(r["class"])) for r in rs if r["method"] != "seed"})
    cols = sorted({(r["method"], r["weight"]) for r in rs}, key=lambda c: (c[0] != "seed", c))
    if not pairs:
        return False
    cap, head = 14, 14
    sheet = Image.new("RGB", ((len(cols) + 1) * side, head + len(pairs) * (side + cap)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (m, w) in enumerate(cols):
        draw.text(((k + 1) * side + 2, 2), m if m == "seed" else f"{m} {w:g}", fill="black")
    for i, pair in enumerate(pairs):
        y = head + i * (side + cap)
        draw.text((2, y + 2), f"{pair[0][:14]}\n{pair[1]}", fill="black")
        for k, col in enumerate(cols):
            r = next((r for r in rs if (r["image"], int(r["class"])) == pair and (r["method"], r["weight"]) == col),
                     None)
            if r is None:
                continue
            sheet.paste(Image.open(r["png"]).convert("RGB").resize((side, side), Image.BICUBIC), ((k + 1) * side, y))
            draw.text(((k + 1) * side + 2, y + side + 1), f"p{r['probability']:.2f} d{r['rmse']:.0f}"
                      + (" top1" if r["top1"] else ""), fill="black")
    sheet.save(path, quality=80)
    return True


def page(recs: list[dict[str, Any]], pairs: list[dict[str, Any]], out: pathlib.Path, side: int = 112,
         sheets: tuple[str, ...] = ()) -> pathlib.Path:
    """``OUT/index.html``: per half, one row per pair that some method ran, the seed then every (method, weight),
    each a small JPEG (``OUT/page/``) captioned with the judge's p(target), top-1 and the pixel RMSE; records
    without a picture (carried over) show their numbers only. ``sheets``: images to show below (the carried
    contact sheets)."""
    import html

    from PIL import Image

    thumbs = out / "page"
    thumbs.mkdir(parents=True, exist_ok=True)
    names = {(p["image"], int(p["class"])): p.get("name", str(p["class"])) for p in pairs}
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{padding:2px 4px;"
             "font-size:11px;text-align:center;vertical-align:top}"
             f"img{{display:block;width:{side}px;height:{side}px}}")
    body = ["<!doctype html><html><head><meta charset='utf-8'><title>Feature accentuation side by side</title>",
            f"<style>{style}</style></head><body><h1>Feature accentuation side by side</h1><p>efficientnet_lite0 "
            "accentuated, efficientnet_lite1 judging the saved PNG: p(target), top-1, pixel RMSE to the seed (d).</p>"]
    for half in ("tuning", "reporting"):
        rs = [r for r in recs if r["half"] == half]
        run = sorted({(r["image"], int(r["class"])) for r in rs if r["method"] != "seed"})
        cols = sorted({(r["method"], r["weight"]) for r in rs}, key=lambda c: (c[0] != "seed", c))
        if not run:
            continue
        body.append(f"<h2>{half} half</h2><table><tr><th>pair</th>"
                    + "".join(f"<th>{html.escape(m)}{'' if m == 'seed' else f'<br>w {w:g}'}</th>" for m, w in cols)
                    + "</tr>")
        for pair in run:
            cells = [f"<td>{html.escape(pair[0])}<br>{pair[1]} {html.escape(names.get(pair, ''))}</td>"]
            for col in cols:
                r = next((r for r in rs if (r["image"], int(r["class"])) == pair and (r["method"], r["weight"]) == col),
                         None)
                if r is None:
                    cells.append("<td></td>")
                    continue
                cap = f"p {r['probability']:.2f}{' top-1' if r['top1'] else ''}<br>d {r['rmse']:.0f}"
                if r.get("png"):
                    name = f"{r['method']}-{r['image']}-{r['class']}-{r['weight']:g}.jpg".replace(" ", "_")
                    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
                    Image.open(r["png"]).convert("RGB").resize((side, side), Image.BICUBIC).save(thumbs / name,
                                                                                                 quality=85)
                    cells.append(f"<td><img src='page/{name}' alt='{html.escape(col[0])}'>{cap}</td>")
                else:
                    cells.append(f"<td>(no picture kept)<br>{cap}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        body.append("</table>")
    for sheet in sheets:
        body.append(f"<h2>{html.escape(sheet)}</h2><img src='{html.escape(sheet)}' style='width:auto;height:auto'>")
    body.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(body) + "\n")
    return path


def carried_name(method: str) -> str:
    """A carried method's name: marked "(carried)" once, however many evaluations carried it."""
    while method.endswith(" (carried)"):
        method = method.removesuffix(" (carried)")
    return f"{method} (carried)"


def evaluate(a: argparse.Namespace) -> None:
    """Measure every picture of the runs and write the tables."""
    runs = []
    for spec in a.runs:
        name, _, folder = spec.partition("=")
        if not folder or not pathlib.Path(folder).is_dir():
            fail(f"--runs takes NAME=FOLDER with an existing folder; got {spec}")
        runs.append((name, pathlib.Path(folder)))
    torch.set_num_threads(a.threads)
    pairs = read_json(a.pairs, "--pairs")["pairs"]
    recs = measure(records(runs), pathlib.Path(a.raw) / "seeds", pairs)
    for spec in a.carried or []:  # measured before (another checkout): their numbers as they were, no pictures
        doc = read_json(spec, "--carried")
        recs += [{**r, "method": carried_name(r["method"]), "png": None} for r in doc["pictures"]
                 if r["method"] != "seed"]
    # A picture carried by two files (an evaluation that carried the other) counts once.
    recs = list({(r["method"], r["image"], r["class"], r["weight"]): r for r in recs}.values())
    info = {"pairs_file": str(pathlib.Path(a.pairs).relative_to(HERE.parent)) if pathlib.Path(a.pairs).resolve()
            .is_relative_to(HERE.parent) else a.pairs, "runs": {n: str(f) for n, f in runs},
            "judge": "efficientnet_lite1", "distance_layer": "efficientnet_lite0 blocks.1", "bins": labels_of_bins(),
            "top1_rmse": TOP1_RMSE}
    summary = summarize(recs, pairs)
    keep = ("method", "image", "class", "weight", "half", "seconds", "steps", "probability", "top1", "judge_top1",
            "rmse", "ijcv_blocks1")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {**info, "summary": summary, "pictures": [{k: r.get(k) for k in keep} for r in recs]}
    (out / "accentuation.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(summary, info)
    for half in ("tuning", "reporting"):
        if not a.no_sheets and contact_sheet(recs, half, out / f"sheet-{half}.jpg"):
            text += f"\n![{half} half](sheet-{half}.jpg)\n"
    (out / "accentuation.md").write_text(text + "\n")
    if not a.no_sheets:
        sheets = tuple(str(p.relative_to(out)) for p in sorted((out / "carried").glob("*.jpg"))) \
            if (out / "carried").is_dir() else ()
        page(recs, pairs, out, sheets=sheets)
    print(text)


def labels_of_bins() -> list[str]:
    return [bin_label(lo, hi) for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="seeds, the model file and pairs.json")
    p.add_argument("--raw", default=str(RAW))
    p.add_argument("--pairs", default=str(RESULTS / "pairs.json"))
    e = sub.add_parser("evaluate", help="measure the pictures, write the tables")
    e.add_argument("--runs", nargs="+", required=True, help="NAME=FOLDER (a runner's --out)")
    e.add_argument("--raw", default=str(RAW))
    e.add_argument("--pairs", default=str(RESULTS / "pairs.json"))
    e.add_argument("--out", default=str(RESULTS))
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--no-sheets", action="store_true", help="no contact sheets (sheet-HALF.jpg)")
    e.add_argument("--carried", nargs="*", help="accentuation.json files of earlier evaluations: their pictures' "
                   "numbers join the tables as METHOD (carried), not measured again")
    q = sub.add_parser("paired", help="from an evaluation's accentuation.json: each peer picture against ours at "
                       "the same pair and RMSE (paired.md beside it)")
    q.add_argument("--evaluation", default=str(RESULTS / "accentuation.json"))
    q.add_argument("--ours", default="ours", help="the method to compare the others with (default: ours)")
    a = ap.parse_args()
    if a.cmd == "paired":
        doc = read_json(a.evaluation, "--evaluation")
        pictures = doc.get("pictures") if isinstance(doc, dict) else None
        need = ("method", "image", "class", "half", "rmse", "probability")
        if not isinstance(pictures, list) or not all(isinstance(r, dict) and all(k in r for k in need)
                                                     for r in pictures):
            fail(f"--evaluation {a.evaluation} is not an evaluation's accentuation.json (pictures with "
                 f"{', '.join(need)})")
        if not any(r["method"] == a.ours for r in pictures):
            fail(f"--ours {a.ours!r} has no pictures in {a.evaluation}")
        text = paired_markdown(paired(pictures, a.ours), a.ours)
        (pathlib.Path(a.evaluation).parent / "paired.md").write_text(text)
        print(text)
    else:
        prepare(a) if a.cmd == "prepare" else evaluate(a)


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except PreimageError as e:  # a seed or picture that cannot be read (e.g. --raw without `prepare`): one line
        fail(f"{e} (run `accentuation_eval.py prepare --raw` with the same folder first, or check --runs)")
