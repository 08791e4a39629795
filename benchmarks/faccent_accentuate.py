"""Feature accentuation with faccent 1.0.3 (Hamblin et al. 2024), run with its own Python (benchmarks/faccent-venv).

    benchmarks/faccent-venv/bin/python benchmarks/faccent_accentuate.py --model-file net.pt \
        --images seeds/*.png --pairs benchmarks/results/accentuation/pairs.json --weights 0.25,1,4 --out DIR

``faccent.render.render_vis(model, "net_classifier:c", init_img=seed, accent_reg_layer=..., accent_reg_alpha=w)``
at faccent's defaults: a Fourier parameterization (Lucid's 1/f scale, decorrelated colour, sigmoid) initialized
from the seed on a 512 px canvas, 16 transformed copies per step (a random box crop of 5–99 % of the canvas,
Gaussian + uniform noise 0.02, resized to 224), Adam lr 0.05, 99 steps (its thresholds range(0, 100, 2)), and the
seed's own activations at the regularization layer as the anchor: an L2 distance per position, weighted by alpha ×
the objective/regularizer gradient ratio measured at the start. faccent has no default regularization layer (None:
no regularization); its demo uses InceptionV1's mixed3a (stride 8), so the layer here is efficientnet_lite0's
stride-8 block, blocks.2. The sweep is over alpha (``--weights``; faccent's default 1).

What differs from its defaults: the network takes [0, 1] input (``model_input_range=(0, 1)``, it normalizes
inside); the 224 px seed is resized to the canvas here (bicubic) instead of by faccent's nearest-neighbour resize;
no inline plotting. The saved module is ``nn.Sequential(normalize, net)``, so faccent names its layers
``net_blocks_2`` and ``net_classifier``. Imports nothing from preimage.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import warnings
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from accent_runner import Job, parser, run  # noqa: E402

STEPS = 99


def main() -> None:
    ap = parser(__doc__, STEPS, "0.1,1,10")
    ap.add_argument("--reg-layer", default="net.blocks.2", help="module name in the saved model (dots)")
    ap.add_argument("--logits", default="net.classifier", help="the class-logit module (dots)")
    ap.add_argument("--size", type=int, default=512, help="canvas side (faccent's default_img_size: 512)")
    ap.add_argument("--transforms", type=int, default=16, help="transformed copies per step (faccent: 16)")
    a = ap.parse_args()
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    warnings.filterwarnings("ignore")
    import faccent
    import torch
    from faccent import render
    from PIL import Image

    net = torch.load(pathlib.Path(a.model_file).resolve(), map_location="cpu", weights_only=False).eval()
    net.requires_grad_(False)
    reg_layer, logits = a.reg_layer.replace(".", "_"), a.logits.replace(".", "_")
    version = getattr(faccent, "__version__", "1.0.3")

    def accentuate(j: Job) -> tuple[Any, dict[str, Any]]:
        seed = Image.open(j.image).convert("RGB").resize((a.size, a.size), Image.BICUBIC)
        with contextlib.redirect_stdout(sys.stderr):  # faccent prints its progress on stdout
            imgs, _, losses, _ = render.render_vis(
                net, f"{logits}:{j.cls}", init_img=seed, accent_reg_layer=reg_layer, accent_reg_alpha=j.weight,
                img_size=(a.size, a.size), model_input_size=(224, 224), model_input_range=(0, 1),
                nb_transforms=a.transforms, out_thresholds=[a.steps - 1], inline_thresholds=[], progress=False,
                trans_p=None)
        img = imgs[-1][0].permute(1, 2, 0).numpy()
        return img, {"objective_end": losses[-1]}

    run(a, "faccent", {"faccent": version, "reg_layer": a.reg_layer, "size": a.size, "transforms": a.transforms},
        accentuate)


if __name__ == "__main__":
    main()
