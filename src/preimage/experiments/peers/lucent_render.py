"""Time Lucent's ``render_vis`` on a pickled network: run by ``preimage bench`` with Lucent's own Python.

Lucent (torch-lucent 0.1.8) pins kornia<=0.4.1, so it lives in its own virtual environment
(``benchmarks/setup_lucent.sh``). This script imports nothing from preimage. It prints one JSON line:
``{"ms_per_iter": ..., "frozen_ms_per_iter": ..., "lucent": VERSION, "kornia": VERSION, "torch": VERSION}``.

``ms_per_iter`` runs the network as Lucent's README does (``model.eval()``, parameters left trainable, so
each backward also computes the parameters' gradients); ``frozen_ms_per_iter`` with parameters frozen.
Both use Lucent's defaults otherwise: ``param.image(size)`` (FFT, decorrelated colour), its standard
transforms, Adam, and the whole network's forward (Lucent does not truncate at the layer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-file", required=True, help="torch.save(module) of the network")
    ap.add_argument("--layer", required=True, help="Lucent's hook name, e.g. blocks_4")
    ap.add_argument("--channel", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if not a.device.startswith("cuda"):
        # Lucent picks cuda:0 by itself whenever it is available; a CPU comparison must hide it.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    warnings.filterwarnings("ignore")
    import kornia
    import torch
    from lucent.optvis import param, render

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    net = torch.load(a.model_file, map_location=dev, weights_only=False).eval()

    def run(k: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        render.render_vis(net, f"{a.layer}:{a.channel}", param_f=lambda: param.image(a.size), thresholds=(k,),
                          show_image=False, progress=False, fixed_image_size=a.size)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return (time.perf_counter() - t) / k

    out = {"lucent": _version("torch-lucent"), "kornia": kornia.__version__, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "size": a.size, "layer": a.layer, "channel": a.channel}
    for key, trainable in (("ms_per_iter", True), ("frozen_ms_per_iter", False)):
        net.requires_grad_(trainable)
        run(2)  # warm-up
        out[key] = 1e3 * statistics.median(run(a.iters) for _ in range(a.repeats))
    print(json.dumps(out))


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
