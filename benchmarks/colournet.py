"""A third small user network, for reporting a rule that the shapes network's miss suggested (issue 28, item 3).

``objective_sizes.md`` round 9 adds a rule after seeing the shapes network's "plus" fail, so that network no longer
reports it untouched. This one was built after the rule was written and no choice looked at it. It differs from
both earlier networks: colour input, classes that share a colour or a shape (so rivals share features), strided
convolutions without BatchNorm, and a two-layer head::

    conv1 3×3 3→24, relu1 | conv2 3×3/2 24→48, relu2 | conv3 3×3/2 48→64, relu3 | gap, fc1 64→32, relu4, fc2 32→8

Eight classes drawn with scikit-image at 32×32 on a grey-noise background: red disc, red square, green disc, green
square, blue ring, yellow plus, horizontal stripes, checkerboard (random place, size, angle, shade and noise;
seeded). ``load_colournet()`` trains it (about a minute of one CPU thread; 89.9 % on 800 held-out images, a disc
and a square of one colour confused most) the first time and keeps the weights in
``benchmarks/data/colournet.safetensors``; ``colournet_stats()`` measures its natural maxima over 96 training images.

    PYTHONPATH=src .venv/bin/python benchmarks/colournet.py [--threads N]   # train (or load), print held-out accuracy
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from shapesnet import fit, load_or_train, reference_stats
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "data" / "colournet.safetensors"
SIZE = 32
CLASSES = ("red disc", "red square", "green disc", "green square", "blue ring", "yellow plus", "stripes", "checker")
MEAN, STD = (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)
_COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 70, 230), "yellow": (230, 210, 40)}


def draw(label: int, rng: np.random.Generator) -> np.ndarray:
    """One 3×32×32 colour image of class ``label`` in 0–255."""
    from skimage.draw import disk, polygon

    shape = (SIZE, SIZE)
    img = np.repeat(rng.uniform(60, 160) + rng.normal(0, 12, (1, *shape)), 3, 0).astype(np.float32)
    cx, cy = rng.uniform(12, 20, 2)
    r = rng.uniform(7, 11)
    a = rng.uniform(0, 2 * math.pi)
    name = CLASSES[label]
    colour = np.array(_COLOURS.get(name.split()[0], (0, 0, 0)), np.float32) * rng.uniform(0.8, 1.1)
    mask = np.zeros(shape, bool)
    if name.endswith("disc") or name.endswith("ring"):
        mask[disk((cy, cx), r, shape=shape)] = True
        if name.endswith("ring"):
            mask[disk((cy, cx), r * 0.55, shape=shape)] = False
    elif name.endswith("square"):
        t = a + np.arange(4) * math.pi / 2
        mask[polygon(cy + r * np.sin(t), cx + r * np.cos(t), shape)] = True
    elif name.endswith("plus"):
        w = max(r * 0.3, 1.5)
        mask[polygon([cy - w, cy - w, cy + w, cy + w], [cx - r, cx + r, cx + r, cx - r], shape)] = True
        mask[polygon([cy - r, cy - r, cy + r, cy + r], [cx - w, cx + w, cx + w, cx - w], shape)] = True
    else:  # stripes or a checkerboard of two random colours
        period = rng.uniform(4, 9)
        yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
        mask = (yy // (period / 2)) % 2 == 0 if name == "stripes" else \
            ((yy // (period / 2)) + (xx // (period / 2))) % 2 == 0
        img[:, mask] = rng.uniform(0, 255, (3, 1))
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        mask = ~mask
    img[:, mask] = colour[:, None]
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.float32)


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (N×3×32×32, 0–255) and their labels, balanced, from ``seed``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    return torch.from_numpy(np.stack([draw(int(c), rng) for c in y])), torch.from_numpy(y.astype(np.int64))


class ColourNet(nn.Module):
    """colour N×3×H×W (normalized) → N×8 logits; any side ≥ 8."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 24, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(24, 48, 3, stride=2, padding=1), nn.ReLU()
        self.conv3, self.relu3 = nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.relu4, self.fc2 = nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu3(self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x))))))
        return self.fc2(self.relu4(self.fc1(self.gap(x).flatten(1))))


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x / 255.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train(epochs: int = 20, seed: int = 0) -> tuple[ColourNet, float]:
    """Train on 3200 images; the net (eval mode) and its accuracy on 800 other images."""
    torch.manual_seed(seed)
    net = ColourNet()
    return net, fit(net, (*images(3200, seed), *images(800, seed + 1)), normalize, epochs, seed)


def load_colournet() -> ColourNet:
    """The trained network (trained and kept in ``WEIGHTS`` the first time)."""
    return load_or_train(ColourNet(), WEIGHTS, train)


def colournet_rep(layer: str | None = None):
    from preimage.representations import load

    return load(load_colournet(), layer, channels=3, mean=MEAN, std=STD, input_size=(SIZE, SIZE))


def colournet_stats(n: int = 96):
    """Natural maxima of every layer over the first ``n`` training images, at 32 px (the same in every process)."""
    return reference_stats(colournet_rep(), *images(n, 0), "colour")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Train the colour network (or load its kept weights) and print its "
                                 "accuracy on 800 held-out images.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args()
    if a.threads < 1:
        ap.error(f"--threads takes a count of at least 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    net = load_colournet()
    xt, yt = images(800, 1)
    with torch.no_grad():
        print(f"held-out accuracy: {float((net(normalize(xt)).argmax(1) == yt).float().mean()):.4f}")
