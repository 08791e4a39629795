"""Feature accentuation with Horama 0.3.0's ``accentuation``, run with Horama's own Python (benchmarks/horama-venv).

    benchmarks/horama-venv/bin/python benchmarks/horama_accentuate.py --model-file net.pt \
        --images seeds/*.png --pairs benchmarks/results/accentuation/pairs.json --weights 0.25,1,4 --out DIR

``horama.accentuation(objective, seed, penalty=w)`` at Horama's defaults: the seed (min–max normalized) is
resized to a 1280 px canvas and inverted into a Fourier spectrum (1/f^1.5 gradient scaling, decorrelated colour,
sigmoid), NAdam lr 1.0, 1000 steps, 6 crops per step (boxes of 25–30 % of the side around the centre, resized to
224, noise 0.05), and the penalty mean((x − seed)²) × w in pixel space on the canvas; w is swept
(``--weights``; Horama's default 1.0). It needs no download (unlike ``maco``, it makes no use of the MaCo
spectrum). The objective is the mean class logit over the crops.

What differs from its defaults: ``values_range`` is the seed's own (min, max) in [0, 1] units (the network takes
[0, 1] input and normalizes inside). Horama min–max normalizes the seed before inverting it, so with
``values_range=(0, 1)`` its starting point, and the anchor of its penalty, would be the seed stretched to [0, 1]
(chelsea: RMSE 25 from the seed before any step; ``--stretch`` gives that). ``device="cpu"``. The PNG is the whole
canvas as Horama returns it. Imports nothing from preimage.
"""

from __future__ import annotations

import os
import pathlib
import sys
import warnings
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from accent_runner import Job, parser, run  # noqa: E402

STEPS = 1000


def main() -> None:
    ap = parser(__doc__, STEPS, "1,100000")
    ap.add_argument("--size", type=int, default=1280, help="canvas side (Horama's image_size: 1280)")
    ap.add_argument("--stretch", action="store_true", help="values_range=(0, 1): start from the seed stretched "
                    "to [0, 1] (Horama's normalization) instead of the seed's own range")
    a = ap.parse_args()
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    warnings.filterwarnings("ignore")
    import horama
    import numpy as np
    import torch
    from PIL import Image

    net = torch.load(pathlib.Path(a.model_file).resolve(), map_location="cpu", weights_only=False).eval()
    net.requires_grad_(False)

    def accentuate(j: Job) -> tuple[Any, dict[str, Any]]:
        seed = torch.from_numpy(np.asarray(Image.open(j.image).convert("RGB"), dtype=np.float32) / 255)
        seed = seed.permute(2, 0, 1).contiguous()

        def objective(images: torch.Tensor) -> torch.Tensor:
            return net(images)[:, j.cls].mean()

        # Horama min–max normalizes the seed before inverting it; with the seed's own range as values_range its
        # starting image is the seed itself (with (0, 1) it would be the contrast-stretched seed).
        lo, hi = (0.0, 1.0) if a.stretch else (float(seed.min()), float(seed.max()))
        img, _ = horama.accentuation(objective, seed, total_steps=a.steps, image_size=a.size, penalty=j.weight,
                                     values_range=(lo, hi), device="cpu")
        return img.detach().permute(1, 2, 0).numpy(), {"values_range": [lo, hi]}

    run(a, "horama", {"horama": horama.__version__, "size": a.size}, accentuate)


if __name__ == "__main__":
    main()
