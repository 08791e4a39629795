"""Class transfer: efficientnet_lite0's class pre-images judged by efficientnet_lite1 (a network that never saw the
optimization), for our styles, the ablation variants, Lucent's render_vis defaults and Horama's MaCo defaults.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/transfer.py --threads 1            # the 20-class table
    ... --classes 25,525 --variants paper,natural --iters 64 --out benchmarks/results/work/small   # a quick look
    ... --variants natural,"natural, no BN prior" --no-lucent                                   # the ablation

Lucent runs through benchmarks/lucent-venv (setup_lucent.sh), unless its pictures are already in
OUT/lucent (``--lucent-dir``). Horama is too slow to run here inline (~1 s per step at 1 thread, 1000 steps per
class): start ``benchmarks/horama_render.py`` in the background (see benchmarks/README.md) and pass its folder
with ``--horama-dir``; the classes it has finished are judged. Writes OUT/transfer.json and prints a table;
``--results`` also writes the JSON and a Markdown table to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch


def table(info: dict) -> str:
    lines = [f"{info['model']} class pre-images judged by {info['judge']} ({len(info['classes'])} classes)", "",
             "| method | iterations | top-1 on the judge | mean p(class) | s per pre-image |", "|---|---|---|---|---|"]
    for r in info["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | | skipped: {r['skipped']} | | |")
            continue
        n = len(r.get("classes") or [])
        rate = f"{sum(r['top1'])}/{n}" if n else "–"
        mp = f"{r['mean_probability']:.3f}" if n else "–"
        secs = r.get("per_image_seconds")
        lines.append(f"| {r['method']} | {r.get('iterations', r.get('steps', ''))} | {rate} | {mp} | "
                     f"{secs:.1f} |" if secs else f"| {r['method']} | {r.get('iterations', r.get('steps', ''))} | "
                     f"{rate} | {mp} | |")
    return "\n".join(lines + subset_table(info))


def subset_table(info: dict) -> list[str]:
    """When a row covers only some classes (a peer still running), every row again on just those classes, so
    that the rates compare like with like."""
    full = set(info["classes"])
    partial = [r for r in info["rows"] if "skipped" not in r and r.get("classes") and set(r["classes"]) < full]
    lines, seen = [], []
    for part in partial:
        keep = set(part["classes"])
        if keep in seen:
            continue
        seen.append(keep)
        lines += ["", f"The same rows on the {len(keep)} classes that {part['method']} has finished "
                  f"({', '.join(map(str, sorted(keep)))}):", "", "| method | top-1 on the judge | mean p(class) |",
                  "|---|---|---|"]
        for r in info["rows"]:
            pick = [i for i, c in enumerate(r.get("classes") or []) if c in keep]
            if "skipped" in r or len(pick) != len(keep):
                continue
            top = sum(r["top1"][i] for i in pick)
            mp = sum(r["probability"][i] for i in pick) / len(pick)
            lines.append(f"| {r['method']} | {top}/{len(pick)} | {mp:.3f} |")
    return lines


def centre_crops(folder: pathlib.Path, frac: float) -> pathlib.Path:
    """Centre crops of Horama's pictures (``folder/class{c}.png``) into ``folder/centre-crop``: the network saw
    crops of 25–30 % of the canvas side around its centre (horama.common.optimization_step), so a whole 1280 px
    canvas shrunk to the judge's 240 px shows its objects 3–4× smaller than they were optimized at."""
    from PIL import Image

    out = folder / "centre-crop"
    out.mkdir(exist_ok=True)
    for png in sorted(folder.glob("class*.png")):
        if png.name.endswith(".tmp.png"):
            continue
        im = Image.open(png)
        side = round(min(im.size) * frac)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im.crop((left, top, left + side, top + side)).save(out / png.name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--judge", default="efficientnet_lite1")
    ap.add_argument("--classes", default="tuning",
                    help="'tuning' (25, 75, …, 975), 'reporting' (50, 100, …, 950, 999) or indices like 25,525")
    ap.add_argument("--variants", default="paper,natural", help="comma-separated; 'all' for the ablation")
    ap.add_argument("--iters", type=int, default=None, help="default: each style's own")
    ap.add_argument("--batch", type=int, default=5, help="classes per optimize() batch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (each picture's is drawn from it and the "
                    "picture's own record)")
    ap.add_argument("--out", default="benchmarks/results/work/transfer")
    ap.add_argument("--no-lucent", action="store_true")
    ap.add_argument("--lucent-dir", default=None, help="judge Lucent pictures already in this folder")
    ap.add_argument("--lucent-python", default=None)
    ap.add_argument("--horama-dir", default=None)
    ap.add_argument("--horama-crop", type=float, default=0.275,
                    help="also judge a centre crop of this fraction of Horama's canvas side (0: not)")
    ap.add_argument("--results", default=None, help="also write benchmarks/results/NAME.json and NAME.md")
    a = ap.parse_args()
    from preimage.errors import PreimageError
    from preimage.experiments.heldout import parse_classes
    from preimage.experiments.transfer import VARIANTS, class_transfer

    torch.set_num_threads(a.threads)
    variants = list(VARIANTS) if a.variants == "all" else [v.strip() for v in a.variants.split(",") if v.strip()]
    peers = {}
    if a.lucent_dir:
        peers["Lucent render_vis (512 steps)"] = pathlib.Path(a.lucent_dir)
    for flag, folder in (("--lucent-dir", a.lucent_dir), ("--horama-dir", a.horama_dir)):
        if folder and not pathlib.Path(folder).is_dir():
            raise PreimageError(f"{flag}: no folder {folder}")
    if a.seed < 0:
        raise PreimageError(f"--seed is a whole number ≥ 0; got {a.seed}")
    if not 0 <= a.horama_crop <= 1:
        raise PreimageError(f"--horama-crop is a fraction of the canvas side, between 0 and 1; got {a.horama_crop}")
    if a.horama_dir:
        peers["Horama MaCo (1000 steps)"] = pathlib.Path(a.horama_dir)
        if a.horama_crop:
            name = f"Horama MaCo, centre {100 * a.horama_crop:g} % crop"
            peers[name] = centre_crops(pathlib.Path(a.horama_dir), a.horama_crop)
    out = pathlib.Path(a.out)
    info = class_transfer(a.model, a.judge, parse_classes(a.classes), variants, out=out,
                          iters=a.iters, batch=a.batch, seed=a.seed, lucent=not (a.no_lucent or a.lucent_dir),
                          lucent_python_path=a.lucent_python, threads=a.threads, peers=peers,
                          say=lambda m: print(m, file=sys.stderr, flush=True))
    for name, folder in peers.items():
        home = folder.parent if folder.name == "centre-crop" else folder
        log = home / ("log.jsonl" if "Horama" in name else "log.json")
        if log.is_file():
            recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip().startswith("{")]
            row = next(r for r in info["rows"] if r["method"] == name)
            if recs and "per_image_seconds" in recs[-1]:
                row.update(per_image_seconds=recs[-1]["per_image_seconds"], steps=recs[-1]["steps"])
            elif recs:
                row.update(per_image_seconds=sum(r["seconds"] for r in recs) / len(recs), steps=recs[-1]["steps"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(info, indent=1))
    text = table(info)
    if a.results:
        res = pathlib.Path("benchmarks/results")
        res.mkdir(parents=True, exist_ok=True)
        (res / f"{a.results}.json").write_text(json.dumps(info, indent=1))
        (res / f"{a.results}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except (PreimageError, ValueError) as e:  # bad input: one line, exit 2, as the CLI
        print(f"error: {e}" if isinstance(e, PreimageError) else f"error: bad value: {e}", file=sys.stderr)
        sys.exit(2)
