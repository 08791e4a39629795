"""A second small user network, for reporting what was tuned on the digits network (issue 28, item 3).

Six grey shape classes drawn with scikit-image at 32×32 (disc, square, triangle, plus, ring, bar; random place,
size, angle, brightness and noise; seeded), and a CNN unlike the digits one (a 5×5 first layer, BatchNorm)::

    conv1 5×5 1→16, bn1, relu1, pool1 | conv2 3×3 16→32, bn2, relu2, pool2 | conv3 3×3 32→32, relu3 | gap, fc 32→6

``load_shapesnet()`` trains it (about 30 s of one CPU thread) the first time and keeps the weights in
``benchmarks/data/shapesnet.safetensors``; ``shapesnet_stats()`` measures its natural maxima over 100 training
shapes. No choice of the natural style looked at this network: it is the reporting half of objective_sizes.md.

    PYTHONPATH=src .venv/bin/python benchmarks/shapesnet.py [--threads N]   # train (or load), print held-out accuracy
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "data" / "shapesnet.safetensors"
SIZE = 32
CLASSES = ("disc", "square", "triangle", "plus", "ring", "bar")
MEAN, STD = (0.12,), (0.2,)


def _polygon(cx: float, cy: float, r: float, sides: int, angle: float) -> list[np.ndarray]:
    t = angle + 2 * math.pi * np.arange(sides) / sides
    return [cy + r * np.sin(t), cx + r * np.cos(t)]


def draw(label: int, rng: np.random.Generator) -> np.ndarray:
    """One 32×32 grey shape of class ``label`` in 0–255."""
    from skimage.draw import disk, polygon, rectangle

    img = np.zeros((SIZE, SIZE), np.float32)
    cx, cy = rng.uniform(12, 20, 2)
    r = rng.uniform(6, 11)
    a = rng.uniform(0, 2 * math.pi)
    v = rng.uniform(150, 255)
    shape = (SIZE, SIZE)
    if label == 0:
        img[disk((cy, cx), r, shape=shape)] = v
    elif label in (1, 2):
        ys, xs = _polygon(cx, cy, r, 4 if label == 1 else 3, a)
        img[polygon(ys, xs, shape)] = v
    elif label == 3:
        for k in (0, 1):
            c, s = math.cos(a + k * math.pi / 2), math.sin(a + k * math.pi / 2)
            w = r * 0.3
            ys = [cy - r * s - w * c, cy - r * s + w * c, cy + r * s + w * c, cy + r * s - w * c]
            xs = [cx - r * c + w * s, cx - r * c - w * s, cx + r * c - w * s, cx + r * c + w * s]
            img[polygon(ys, xs, shape)] = v
    elif label == 4:
        img[disk((cy, cx), r, shape=shape)] = v
        img[disk((cy, cx), r * 0.55, shape=shape)] = 0
    else:
        h = max(int(r * 0.5), 2)
        rr, cc = rectangle((int(cy) - h // 2, int(cx - r)), extent=(h, int(2 * r)), shape=shape)
        img[rr, cc] = v
    img += rng.uniform(0, 40) + rng.normal(0, 10, shape)
    return np.clip(img, 0, 255)


def shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n shapes (N×1×32×32, 0–255) and their labels, balanced, from ``seed``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    x = np.stack([draw(int(c), rng) for c in y])[:, None]
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


class ShapesNet(nn.Module):
    """grey N×1×H×W (normalized) → N×6 logits; any side ≥ 8."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1, self.pool1 = nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), \
            nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2, self.pool2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), \
            nn.ReLU(), nn.MaxPool2d(2)
        self.conv3, self.relu3 = nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.gap(self.relu3(self.conv3(x))).flatten(1))


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x / 255.0 - MEAN[0]) / STD[0]


def fit(net: nn.Module, data: tuple[torch.Tensor, ...], normalize, epochs: int = 8, seed: int = 0) -> float:
    """Train ``net`` in place on ``data`` = (x, y, x_test, y_test), images in 0–255 (Adam, one-cycle rate, batches
    of 64); leave it in eval mode and return its accuracy on the test images."""
    x, y, xt, yt = data
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * math.ceil(len(y) / 64))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(y), generator=g).split(64):
            loss = nn.functional.cross_entropy(net(normalize(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        return float((net(normalize(xt)).argmax(1) == yt).float().mean())


def train(epochs: int = 8, seed: int = 0) -> tuple[ShapesNet, float]:
    """Train on 2400 shapes; the net (eval mode) and its accuracy on 600 other shapes."""
    torch.manual_seed(seed)
    net = ShapesNet()
    return net, fit(net, (*shapes(2400, seed), *shapes(600, seed + 1)), normalize, epochs, seed)


def load_or_train(net: nn.Module, path: Path, train_fn) -> nn.Module:
    """``net`` with the weights kept in ``path``, which ``train_fn() → (net, accuracy)`` makes the first time."""
    from safetensors.torch import load_file, save_file

    if not path.is_file():
        trained, acc = train_fn()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path),
                  metadata={"test_accuracy": f"{acc:.4f}"})
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def load_shapesnet() -> ShapesNet:
    """The trained network (trained and kept in ``WEIGHTS`` the first time)."""
    return load_or_train(ShapesNet(), WEIGHTS, train)


def shapesnet_rep(layer: str | None = None):
    from preimage.representations import load

    return load(load_shapesnet(), layer, channels=1, mean=MEAN, std=STD, input_size=(SIZE, SIZE))


def shapesnet_stats(n: int = 100):
    """Natural maxima of every layer over the first ``n`` training shapes, at 32 px (the same in every process)."""
    return reference_stats(shapesnet_rep(), *shapes(n, 0), "shape")


def reference_stats(rep, x: torch.Tensor, y: torch.Tensor, prefix: str):
    """Neuron statistics of ``rep`` over images ``x`` (N×C×H×W, 0–255) with labels ``y``, at their own side."""
    from preimage.images import save_png
    from preimage.measures.stats import compute_stats

    with tempfile.TemporaryDirectory() as tmp:
        files = [str(save_png(x[i], Path(tmp) / f"{prefix}-{i:03d}-{int(y[i])}.png", scale="clip"))
                 for i in range(len(x))]
        stats = compute_stats(rep, files, size=x.shape[-1])
    # Named without the temporary folder: the names enter each picture's seed (``images_id``), which would
    # otherwise change from one process to the next.
    return replace(stats, images=[Path(f).name for f in files], source=f"{prefix}s")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Train the shapes network (or load its kept weights) and print its "
                                 "accuracy on 600 held-out shapes.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args()
    if a.threads < 1:
        ap.error(f"--threads takes a count of at least 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    net = load_shapesnet()
    xt, yt = shapes(600, 1)
    with torch.no_grad():
        print(f"held-out accuracy: {float((net(normalize(xt)).argmax(1) == yt).float().mean()):.4f}")
