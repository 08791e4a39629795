"""Micro-measurements behind the optimizer loop's design choices (not a test; prints a table).

    .venv/bin/python benchmarks/components.py [--layer blocks.4] [--size 224] [--threads 1] [--repeats 7]

Each line times two ways of doing one thing, interleaved and repeated, and prints the medians and the
median ratio (first ÷ second):

* truncation: the forward hook that raises to stop the network (representations/base.py) ÷ the same
  network cut as an fx graph (no hook, no exception);
* autograd.grad ÷ .backward() for the input gradient of the bare network;
* the priors' gradient by autograd ÷ in closed form (regularizers.*_and_grad);
* projection: the previous pow/sum/sqrt/clamp/div ÷ a channel sum of squares + rsqrt (``linalg.vector_norm``
  over the channel dimension, the obvious alternative, is ~45× slower than either on CPU);
* the bare forward+backward with 2 threads ÷ with 1 thread (on a shared machine, 2 can be far slower).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def pair(a: Callable[[], object], b: Callable[[], object], repeats: int, k: int) -> tuple[float, float, float]:
    """Median ms of ``a`` and ``b`` (k calls per timing, order alternating) and the median ratio a/b."""
    a()
    b()
    ta, tb, r = [], [], []
    for i in range(repeats):
        for which in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t = time.perf_counter()
            for _ in range(k):
                which[0]()
            which[1].append(1e3 * (time.perf_counter() - t) / k)
        r.append(ta[-1] / tb[-1])
    return statistics.median(ta), statistics.median(tb), statistics.median(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--layer", default="blocks.4")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    from timm.models import create_feature_extractor

    from preimage.engine.optimize import Energy
    from preimage.engine.regularizers import project_ball
    from preimage.representations import load

    torch.set_num_threads(a.threads)
    rep = load(a.model, a.layer)
    cut = create_feature_extractor(rep.net, return_nodes={rep.layer: "out"})
    x = (torch.randn(1, rep.channels, a.size, a.size) * 40).requires_grad_(True)
    k = 3 if a.size >= 160 else 10

    def hooked() -> None:
        torch.autograd.grad(rep(x).sum(), x)

    def fx_cut() -> None:
        torch.autograd.grad(cut(x * rep.scale)["out"].sum(), x)

    def backward() -> None:
        x.grad = None
        rep(x).sum().backward()

    energy = Energy()
    canvas = (torch.randn(1, rep.channels, a.size + 7, a.size + 7) * 40).requires_grad_(True)

    def prior_autograd() -> None:
        torch.autograd.grad(energy.regularizer(canvas).sum(), canvas)

    def prior_closed() -> None:
        with torch.no_grad():
            energy.regularizer_and_grad(canvas)

    big = canvas.detach() * 3

    def proj_previous() -> None:
        y = big.clone()
        norm = y.pow(2).sum(1, keepdim=True).sqrt_()
        y.mul_((160.0 / norm.clamp_min_(1e-12)).clamp_max_(1.0))

    def proj_rsqrt() -> None:
        project_ball(big.clone(), 160.0)

    rows = [("truncation: hook ÷ fx cut", *pair(hooked, fx_cut, a.repeats, k)),
            ("autograd.grad ÷ .backward()", *pair(hooked, backward, a.repeats, k)),
            ("priors: autograd ÷ closed form", *pair(prior_autograd, prior_closed, a.repeats, 20)),
            ("projection: previous (sqrt, clamp, div) ÷ rsqrt", *pair(proj_previous, proj_rsqrt, a.repeats, 20))]
    if torch.get_num_threads() == 1:
        def two() -> None:
            torch.set_num_threads(2)
            hooked()
            torch.set_num_threads(1)

        rows.append(("bare fwd+bwd: 2 threads ÷ 1 thread", *pair(two, hooked, a.repeats, k)))
    print(f"{rep.name} {rep.layer}, {a.size} px, {a.threads} thread(s), torch {torch.__version__}")
    for name, ma, mb, r in rows:
        print(f"{name:40s} {ma:9.2f} ms {mb:9.2f} ms  ratio {r:6.2f}")


if __name__ == "__main__":
    main()
