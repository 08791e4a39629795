"""A small user network: a 3-layer grey CNN trained on scikit-learn's digits (issue 28's "small user network").

The data: scikit-learn's bundled ``load_digits`` (1797 grey 8×8 digits, 0–16, white ink on black), scaled to
0–255 and resized to 32×32 with the library's own ``images.resize`` (bicubic, antialiased, as ``load_image``
resizes a PNG); a fixed 80/20 split (``SPLIT_SEED``): 1438 training, 359 held-out digits. The network::

    conv1 3×3 1→16, relu1, pool1 2×2 | conv2 3×3 16→32, relu2, pool2 2×2 | conv3 3×3 32→32, relu3 | gap, fc 32→10

(padding 1, global average pooling: any input side ≥ 8 works, 32 is the training size). Its input is normalized
as ``(x/255 − MEAN)/STD`` (one grey channel, [0, 1] units, measured on the training split), which is what
``preimage.load(load_smallnet(), channels=1, mean=MEAN, std=STD, input_size=(32, 32))`` does. ``layer=None`` is
the logits (class c is digit c); ``conv3`` is a layer of units. Training needs scikit-learn
(``pip install scikit-learn``); loading the shipped weights and statistics does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import PreimageError
from ..images import resize, save_png
from ..measures.stats import NeuronStats, compute_stats, read_stats, save_stats
from ..representations import Representation, load

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS = DATA / "smallnet.safetensors"
#: Per-channel statistics (max/mean/std of every layer) over ``STATS_IMAGES`` training digits at 32 px.
STATS = DATA / "smallnet_stats.pt"
INPUT_SIZE = 32
CLASSES = 10
WIDTHS = (16, 32, 32)
SPLIT_SEED = 0
TEST_FRACTION = 0.2
STATS_IMAGES = 100
#: Input normalization in [0, 1] units, measured on the 1438 training digits at 32×32.
MEAN = (0.3093,)
STD = (0.3499,)
#: Held-out accuracy of the shipped weights on the 359 test digits (``train_smallnet``'s report).
TEST_ACCURACY = 0.9833


class SmallNet(nn.Module):
    """conv-relu-pool ×2, conv-relu, global average pool, linear: grey N×1×H×W (normalized) → N×classes logits."""

    def __init__(self, widths: tuple[int, int, int] = WIDTHS, classes: int = CLASSES) -> None:
        super().__init__()
        a, b, c = widths
        self.conv1 = nn.Conv2d(1, a, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(a, b, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(b, c, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.gap(self.relu3(self.conv3(x)))
        return self.fc(x.flatten(1))


def digits(split: str = "train", size: int = INPUT_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of one split (``train``, ``test`` or ``all``) as N×1×size×size floats in 0–255, and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise PreimageError("the small network's digits need scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = round(len(y) * TEST_FRACTION)
    pick = {"train": order[n_test:], "test": order[:n_test], "all": torch.arange(len(y))}
    if split not in pick:
        raise PreimageError(f"unknown split '{split}' (choose train, test or all)")
    idx = pick[split]
    return resize(x[idx], size), y[idx]


def normalize(x: torch.Tensor) -> torch.Tensor:
    """0–255 grey images → the network's input."""
    return (x / 255.0 - MEAN[0]) / STD[0]


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` on 0–255 images ``x`` with labels ``y``."""
    with torch.no_grad():
        return float((net(normalize(x)).argmax(1) == y).float().mean())


def _shift(x: torch.Tensor, g: torch.Generator, pad: int = 3) -> torch.Tensor:
    """Random translations of up to ``pad`` pixels (zero padding: the digits' black background)."""
    n, _, h, w = x.shape
    p = nn.functional.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
    return torch.stack([p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_smallnet(epochs: int = 30, seed: int = 0, lr: float = 1e-2, batch: int = 64,
                   widths: tuple[int, int, int] = WIDTHS) -> tuple[SmallNet, float]:
    """Train a SmallNet on the training digits (Adam, random shifts ±3 px, cosine rate); returns the net (eval
    mode) and its accuracy on the held-out digits. About 25 s of one CPU thread."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = digits("train")
    xt, yt = digits("test")
    net = SmallNet(widths)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * -(-len(y) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(y), generator=g).split(batch):
            loss = nn.functional.cross_entropy(net(normalize(_shift(x[idx], g))), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net, accuracy(net, xt, yt)


def save_smallnet(net: SmallNet, path: str | Path = WEIGHTS, test_accuracy: float | None = None) -> Path:
    """Write the weights as safetensors, with the normalization and accuracy in its metadata."""
    from safetensors.torch import save_file

    meta = {"mean": json.dumps(MEAN), "std": json.dumps(STD), "input_size": str(INPUT_SIZE)}
    if test_accuracy is not None:
        meta["test_accuracy"] = f"{test_accuracy:.4f}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    return path


def load_smallnet(path: str | Path = WEIGHTS) -> SmallNet:
    """The trained SmallNet (eval mode, CPU) from the weights shipped with the package."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise PreimageError(f"small network weights not found: {path}")
    state = load_file(str(path))
    widths = tuple(int(state[f"conv{i}.weight"].shape[0]) for i in (1, 2, 3))
    net = SmallNet(widths, int(state["fc.weight"].shape[0]))  # type: ignore[arg-type]
    net.load_state_dict(state)
    return net.eval()


def smallnet_rep(layer: str | None = None, size: int = INPUT_SIZE) -> Representation:
    """Φ of the shipped SmallNet at ``layer`` (None: the logits), with its normalization and a native size."""
    return load(load_smallnet(), layer, channels=1, mean=MEAN, std=STD, input_size=(size, size))


def write_digit_images(folder: str | Path, n: int = STATS_IMAGES, split: str = "train",
                       size: int = INPUT_SIZE) -> list[str]:
    """Write the first ``n`` digits of ``split`` as grey PNGs (``digit-INDEX-LABEL.png``); returns the paths."""
    x, y = digits(split, size)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [str(save_png(x[i], folder / f"digit-{i:04d}-{int(y[i])}.png", scale="clip"))
            for i in range(min(n, len(y)))]


def compute_smallnet_stats(folder: str | Path, n: int = STATS_IMAGES) -> NeuronStats:
    """Natural statistics of the SmallNet over ``n`` training digits written (as PNGs) into ``folder``, at 32 px:
    each layer's per-channel maximum is the "natural maximum" a unit's pre-image should reach."""
    files = write_digit_images(folder, n)
    return compute_stats(smallnet_rep(), files, size=INPUT_SIZE)


def smallnet_stats(path: str | Path = STATS) -> NeuronStats:
    """The shipped statistics (``compute_smallnet_stats`` over the first 100 training digits)."""
    return read_stats(path)


def main() -> None:
    """Retrain and rewrite the shipped weights and statistics: ``python -m preimage.experiments.smallnet``."""
    import tempfile

    torch.set_num_threads(1)
    x, _ = digits("train")
    print(f"training-split normalization: mean {float(x.mean() / 255):.4f}, std {float(x.std() / 255):.4f} "
          f"(MEAN/STD in the module: {MEAN[0]}, {STD[0]})")
    net, acc = train_smallnet()
    print(f"held-out accuracy: {acc:.4f} ({sum(p.numel() for p in net.parameters())} parameters)")
    save_smallnet(net, test_accuracy=acc)
    with tempfile.TemporaryDirectory() as tmp:
        stats = compute_smallnet_stats(tmp)
    stats.images = [Path(f).name for f in stats.images]  # not the temporary folder's paths
    stats.source = f"scikit-learn digits: the first {STATS_IMAGES} training digits at {INPUT_SIZE} px"
    save_stats(stats, STATS)
    print(f"wrote {WEIGHTS} and {STATS}")


if __name__ == "__main__":
    main()
