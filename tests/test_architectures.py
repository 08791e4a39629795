"""Every family works: ViTs plain and hierarchical, hybrids, modern CNNs and CLIP towers from timm and torchvision
(``experiments/architectures.py``), random weights, small inputs. One test per architecture, so each network is
built once: ``layers``, 3 iterations of inversion and of maximization at a middle block, and 20 of inversion."""

from __future__ import annotations

import math

import pytest

from preimage.experiments.architectures import ARCHITECTURES, check_architecture

FAMILIES = {"ViT", "DeiT", "BEiT", "EVA", "Swin", "MaxViT", "PVT", "CoaT", "LeViT", "CaiT", "MobileViT", "EfficientViT",
            "FastViT", "ConvNeXt", "RegNet", "EfficientNetV2", "MobileNetV3", "ResNet", "CLIP"}


def test_the_table_covers_every_family_from_both_libraries() -> None:
    assert len(ARCHITECTURES) >= 30
    assert {a.family for a in ARCHITECTURES} == FAMILIES
    assert sum(a.model.startswith("timm:") for a in ARCHITECTURES) >= 20
    assert sum(not a.model.startswith("timm:") for a in ARCHITECTURES) >= 6  # torchvision


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=[a.model for a in ARCHITECTURES])
def test_architecture(arch) -> None:
    r = check_architecture(arch, iters=20, short=3)
    row = r["row"]  # what `preimage layers` lists for the middle block
    assert r["layers"] > 5 and row["shape"] and row["stride"] is not None
    stride = row["stride"] if isinstance(row["stride"], int) else max(row["stride"])
    assert 2 <= stride <= 64 and r["jitter"] == max(round(stride / 4 + 1e-9), 1)
    if row["tokens"]:  # a token output: its grid matches the stride
        h, w = row["tokens"]["grid"]
        assert (h, w) == (arch.size // stride, arch.size // stride)
    assert r["images_finite"]
    assert math.isfinite(r["invert_short_error"]) and math.isfinite(r["maximize_short_activation"])
    assert r["error"] < r["error_start"], (r["error_start"], r["error"])  # 20 iterations got closer
