"""Class pre-images with Lucent's ``render_vis`` defaults, run with Lucent's own Python (benchmarks/lucent-venv).

    benchmarks/lucent-venv/bin/python benchmarks/lucent_classes.py --model-file net.pt --classes 25,75 --out DIR

Lucent's defaults: ``param.image(size, batch=B)`` (FFT, decorrelated colour, sigmoid), ``transform.standard_
transforms``, Adam lr 0.05, 512 steps. The network (``torch.save`` of a module) is wrapped so that it takes
Lucent's [0, 1] RGB and normalizes inside (mean and std 0.5 for EfficientNet-Lite), and ``render_vis`` is called
with ``preprocess=False`` (peers.md §7); the objective is the class logit (``net_classifier:c``). All classes are
optimized in one batch (objective: the sum over the batch of each image's own class logit). Writes
``DIR/class{c}.png`` and prints one JSON line: ``{"seconds", "per_image_seconds", "steps", "classes"}``.
Imports nothing from preimage.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-file", required=True)
    ap.add_argument("--classes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--mean", type=float, default=0.5)
    ap.add_argument("--std", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layer", default="net_classifier", help="Lucent's name of the layer (channels of it, when "
                    "not the logits: e.g. net_blocks_4)")
    ap.add_argument("--prefix", default="class", help="file names: PREFIX{c}.png")
    a = ap.parse_args()
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    from lucent.optvis import objectives, param, render
    from PIL import Image

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    classes = [int(s) for s in a.classes.split(",") if s.strip()]
    inner = torch.load(a.model_file, map_location="cpu", weights_only=False).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - a.mean) / a.std)

    model = Wrapped().eval().requires_grad_(False)
    obj = sum(objectives.channel(a.layer, c, batch=i) for i, c in enumerate(classes))
    t = time.perf_counter()
    images = render.render_vis(model, obj, param_f=lambda: param.image(a.size, batch=len(classes)),
                               thresholds=(a.steps,), show_image=False, progress=False, preprocess=False,
                               fixed_image_size=a.size)[-1]
    seconds = time.perf_counter() - t
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for c, img in zip(classes, images, strict=True):
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(out / f"{a.prefix}{c}.png")
    print(json.dumps({"seconds": seconds, "per_image_seconds": seconds / len(classes), "steps": a.steps,
                      "classes": classes, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
