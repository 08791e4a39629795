"""An HTML page side by side: 8 classes and 8 channels of blocks.4 of efficientnet_lite0, paper vs natural vs
Lucent, each picture with what the judge (efficientnet_lite1) sees in it.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/side_by_side.py \
        --transfer-dir benchmarks/results/work/transfer

Class pictures come from a benchmarks/transfer.py run (its paper/, natural/ and lucent/ folders); the channel
pictures (channel objective: the mean of the map, as Lucent's) are computed here, Lucent's through its venv.
Writes benchmarks/results/side_by_side/index.html with JPEG copies of the pictures.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import torch
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--transfer-dir", default="benchmarks/results/work/transfer")
    ap.add_argument("--lucent-dir", default=None, help="Lucent's class pictures (default: TRANSFER_DIR/lucent)")
    ap.add_argument("--skip-channels", action="store_true")
    ap.add_argument("--classes", default="25,125,225,325,425,525,725,925")
    ap.add_argument("--channels", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--layer", default="blocks.4")
    ap.add_argument("--judge", default="efficientnet_lite1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/side_by_side")
    ap.add_argument("--lucent-python", default="benchmarks/lucent-venv/bin/python")
    a = ap.parse_args()
    import torchvision

    from preimage.images import save_png
    from preimage.measures.judge import Judge
    from preimage.report import html_page
    from preimage.representations import load
    from preimage.tasks.activation import maximize

    torch.set_num_threads(a.threads)
    names = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    judge = Judge(a.judge)
    out = pathlib.Path(a.out)
    work = pathlib.Path("benchmarks/results/work/side_by_side")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    src = pathlib.Path(a.transfer_dir)
    class_dirs = {"paper": src / "paper", "natural": src / "natural",
                  "Lucent": pathlib.Path(a.lucent_dir) if a.lucent_dir else src / "lucent"}
    methods = {"paper": "paper", "natural": "natural", "Lucent": "lucent"}
    classes = [int(c) for c in a.classes.split(",")]
    channels = [int(c) for c in a.channels.split(",")]

    def figure(png: pathlib.Path, tag: str, target: int | None) -> tuple[str, str]:
        jpg = out / f"{tag}.jpg"
        Image.open(png).convert("RGB").save(jpg, quality=90)
        p = judge.probabilities(judge.read([png]))[0]
        top = int(p.argmax())
        seen = f"judge: {names[top]} ({p[top]:.2f})"
        if target is not None:
            seen = f"judge p({names[target]}) = {p[target]:.2f}, top-1 {'yes' if top == target else 'no'}; " + seen
        return jpg.name, seen

    sections = []
    for c in classes:
        figs = []
        for label, folder in methods.items():
            png = class_dirs[label] / f"class{c}.png"
            if png.is_file():
                name, seen = figure(png, f"class{c}-{folder}", c)
                figs.append((name, f"{label}: {seen}"))
        sections.append((f"class {c}: {names[c]}", figs))
    # Channels of the layer: ours here, Lucent's through its own venv.
    rep = load("efficientnet_lite0", a.layer)
    for style in () if a.skip_channels else ("paper", "natural"):
        res = maximize(rep, channels, mode="channel", size=224, style=style)
        (work / style).mkdir(exist_ok=True)
        for ch, img in zip(channels, res.images, strict=True):
            save_png(img, work / style / f"channel{ch}.png")
    py = pathlib.Path(a.lucent_python)
    if py.is_file() and not a.skip_channels:
        net = work / "net.pt"
        torch.save(load("efficientnet_lite0").net, net)
        runner = "src/preimage/experiments/peers/lucent_classes.py"
        subprocess.run([str(py), runner, "--model-file", str(net), "--classes", a.channels,
                        "--layer", "net_" + a.layer.replace(".", "_"), "--prefix", "channel",
                        "--out", str(work / "lucent"), "--threads", str(a.threads)], check=True)
        net.unlink()
    for ch in channels:
        figs = []
        for label, folder in methods.items():
            png = work / folder / f"channel{ch}.png"
            if png.is_file():
                name, seen = figure(png, f"channel{ch}-{folder}", None)
                figs.append((name, f"{label}: {seen}"))
        sections.append((f"{a.layer} channel {ch}", figs))
    info = json.loads((src / "transfer.json").read_text()) if (src / "transfer.json").is_file() else None
    intro = (f"Pre-images of efficientnet_lite0 (classes: class logits; channels: the mean of the channel's map "
             f"at {a.layer}), paper style vs natural style vs Lucent's render_vis defaults, each judged by "
             f"{judge.name}, a network that never saw the optimization.")
    if info:
        intro += " Over all classes of the run: " + "; ".join(
            f"{r['method']}: top-1 {sum(r['top1'])}/{len(r['top1'])}, mean p {r['mean_probability']:.2f}"
            for r in info["rows"] if r.get("top1"))
    page = html_page(out / "index.html", "Paper vs natural vs Lucent, judged by another network", sections, intro)
    print(page, file=sys.stderr)


if __name__ == "__main__":
    main()
