"""Every family of vision networks researchers use today, run through the paper's method: a table of
architectures (timm and torchvision, random weights, the smallest input sizes they allow) and one check per
architecture: ``layers``, a short inversion and maximization at a middle block, and a 20-iteration inversion.

Used by ``tests/test_architectures.py`` (values asserted) and ``benchmarks/architectures.py`` (the report's
table, with each one's cost per iteration against its bare network).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..engine.objectives import Inversion
from ..engine.optimize import Energy, noise_init
from ..engine.rng import ProblemRNG, problem_seed
from ..measures.stats import compute_stats
from ..representations import Representation, build
from ..representations.layers import layer_rows
from ..tasks.activation import maximize
from ..tasks.common import prepare_images
from ..tasks.inversion import invert


@dataclass(frozen=True)
class Arch:
    """One architecture: its family, the name users type, a middle block, the input side it runs at here, and
    model arguments (timm's ``img_size`` builds a fixed-size model for a smaller input)."""

    family: str
    model: str
    layer: str
    size: int = 64
    args: dict[str, Any] = field(default_factory=dict)


_SMALL = {"img_size": 64}  # fixed-size models, built for a small input

#: Plain and hierarchical ViTs, hybrids, modern CNNs and CLIP image towers, from timm and torchvision. Sizes:
#: 64 px (56 for patch-14 models), 32 for CNNs whose many layers make ``layers`` slow. Also checked by hand,
#: left out for the test suite's time: MobileCLIP's tower timm:fastvit_mci0 (``layers`` ~50 s) and torchvision's
#: efficientnet_v2_s (~25 s).
ARCHITECTURES: tuple[Arch, ...] = (
    Arch("ViT", "timm:vit_tiny_patch16_224", "blocks.5"),
    Arch("ViT", "timm:vit_small_patch14_reg4_dinov2", "blocks.5", 56, {"img_size": 56}),  # + 4 register tokens
    Arch("ViT", "vit_b_16", "encoder.layers.encoder_layer_5", args={"image_size": 64}),
    Arch("DeiT", "timm:deit_tiny_patch16_224", "blocks.5"),
    Arch("DeiT", "timm:deit_tiny_distilled_patch16_224", "blocks.5"),  # class + distillation tokens
    Arch("BEiT", "timm:beit_base_patch16_224", "blocks.5", args=_SMALL),
    Arch("EVA", "timm:eva02_tiny_patch14_224", "blocks.5", 56),
    Arch("Swin", "timm:swin_tiny_patch4_window7_224", "layers.1"),
    Arch("Swin", "swin_t", "features.3"),
    Arch("MaxViT", "timm:maxvit_pico_rw_256", "stages.1", args=_SMALL),
    Arch("PVT", "timm:pvt_v2_b0", "stages.1"),
    Arch("CoaT", "timm:coat_lite_tiny", "serial_blocks2.1", args=_SMALL),
    Arch("CoaT", "timm:coat_tiny", "serial_blocks2.1", args=_SMALL),  # with parallel blocks
    Arch("LeViT", "timm:levit_128s", "stages.1", args=_SMALL),
    Arch("LeViT", "timm:levit_conv_128s", "stages.1", args=_SMALL),  # its convolutional (N×C×H×W) form
    Arch("CaiT", "timm:cait_xxs24_224", "blocks.11", args=_SMALL),
    Arch("MobileViT", "timm:mobilevit_xxs", "stages.3"),
    Arch("MobileViT", "timm:mobilevitv2_050", "stages.3"),
    Arch("EfficientViT", "timm:efficientvit_b0", "stages.1"),  # random weights: deeper maps do not vary
    Arch("EfficientViT", "timm:efficientvit_m0", "stages.1"),
    Arch("FastViT", "timm:fastvit_t8", "stages.2", 32),
    Arch("ConvNeXt", "timm:convnext_atto", "stages.2"),
    Arch("ConvNeXt", "convnext_tiny", "features.4", 32),
    Arch("RegNet", "timm:regnetx_002", "s2"),
    Arch("RegNet", "regnet_y_400mf", "trunk_output.block2"),
    Arch("EfficientNetV2", "timm:tf_efficientnetv2_b0", "blocks.3", 32),
    Arch("MobileNetV3", "timm:mobilenetv3_small_050", "blocks.2"),
    Arch("MobileNetV3", "mobilenet_v3_small", "features.4"),
    Arch("ResNet", "timm:resnet18", "layer2"),
    Arch("ResNet", "resnet18", "layer2"),
    Arch("CLIP", "timm:vit_base_patch32_clip_224", "blocks.5"),  # OpenAI CLIP ViT-B/32's image tower
)

#: Networks that cannot be supported, with the reason (``preimage`` refuses them in one line).
UNSUPPORTED: dict[str, str] = {}


def check_architecture(arch: Arch, iters: int = 20, short: int = 3, seed: int = 0) -> dict[str, Any]:
    """Build ``arch`` (random weights), list its layers, invert and maximize ``short`` iterations at its middle
    block, and invert ``iters`` iterations; the numbers the test asserts and the report tabulates."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    spec = build(arch.model, random_weights=True, **arch.args)
    # Its default size becomes the one checked here, so that Φ's geometry is measured there, not at 224–384 px.
    spec = dataclasses.replace(spec, input_size=(arch.size, arch.size))
    built = time.perf_counter()
    rows = layer_rows(spec, (arch.size, arch.size))
    listed = time.perf_counter()
    rep = Representation(spec, arch.layer)
    geo = rep.geometry()
    quick = invert(rep, "sample:chelsea", size=arch.size, iters=short, seed=seed)
    stats = compute_stats(spec, ["sample:chelsea"], size=arch.size)
    # Both kinds of unit: the channel's mean and its centre neuron (a token output's centre token).
    maxed = maximize(spec, [f"channel:{arch.layer}:0", f"neuron:{arch.layer}:0"], size=arch.size, iters=short,
                     seed=seed, stats=stats)
    full = invert(rep, "sample:chelsea", size=arch.size, iters=iters, seed=seed)
    row = next(r for r in rows if r["name"] == arch.layer)
    return {"family": arch.family, "model": arch.model, "layer": arch.layer, "size": arch.size,
            "build_s": built - t0, "layers_s": listed - built, "layers": len(rows), "row": row,
            "stride": geo.stride, "global_field": geo.global_field, "jitter": geo.jitter,
            "tokens": geo.tokens.kind if geo.tokens else None,
            "invert_short_error": float(quick.metrics["error"][0]),
            "maximize_short_activation": float(maxed.metrics["activation"][0]),
            "maximize_short_neuron": float(maxed.metrics["activation"][1]),
            "error_start": start_error(rep, arch.size, seed), "error": float(full.metrics["error"][0]),
            "images_finite": bool(torch.isfinite(quick.images).all() and torch.isfinite(maxed.images).all()
                                  and torch.isfinite(full.images).all()),
            "seconds": time.perf_counter() - t0}


def start_error(rep: Representation, size: int, seed: int = 0, image: str = "sample:chelsea") -> float:
    """The IJCV error of a noise image of the paper's start distribution (``optimize.noise_init``)."""
    img, _, _ = prepare_images(rep, image, size)
    with torch.no_grad():
        obj = Inversion(rep(rep.to_paper_units(img)))
        x = noise_init(rep.channels, (size, size), Energy().B, ProblemRNG([problem_seed("start", seed)]))
        err = float(obj.error(rep(x.to(*rep.device_dtype())))[0])
    return err if math.isfinite(err) else float("nan")
