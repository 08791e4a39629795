#!/usr/bin/env bash
# Create benchmarks/faccent-venv: faccent 1.0.3 (PyPI; the official code of Hamblin et al. 2024, "Feature
# accentuation") in its own environment, for benchmarks/faccent_accentuate.py.
#
# faccent pins kornia==0.4.1 and declares plotting/notebook packages it only partly uses (lucent==0.1.0, kaleido,
# pyarrow, nbformat). What it imports is: torch, torchvision, numpy, scipy, matplotlib, PIL, tqdm, imageio, einops,
# decorator, kornia and ipywidgets (at module level, for a notebook widget). So faccent and kornia 0.4.1 are
# installed without their dependencies, plus einops, decorator and ipywidgets. Its magnitude spectrum
# (clean_decorrelated.npy) ships inside the wheel, so it runs offline.
#
# torch/torchvision/numpy/scipy/matplotlib: by default the venv sees the project's .venv packages through a .pth
# file (the same torch build on both sides of the comparison, no second multi-GB download); the venv's own
# packages (kornia 0.4.1) come first on sys.path. TORCH=2.14.1 TORCHVISION=0.29.1 installs its own instead.
#
#   bash benchmarks/setup_faccent.sh           # PROJECT_VENV=/path/to/.venv when the checkout has none
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${FACCENT_VENV:-$here/faccent-venv}"
# shellcheck source=peer_venv.sh
source "$here/peer_venv.sh"
make_peer_venv "$venv" numpy scipy matplotlib tqdm imageio pillow timm
"$venv/bin/python" -m pip install --quiet --no-deps "faccent==1.0.3" "kornia==0.4.1"
"$venv/bin/python" -m pip install --quiet einops decorator ipywidgets
"$venv/bin/python" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
import kornia, torch, torchvision
import faccent
from faccent import param, render
net = torchvision.models.alexnet().eval()
from PIL import Image
img = Image.fromarray((torch.rand(64, 64, 3) * 255).byte().numpy())
render.render_vis(net, "features_10:0", init_img=img, accent_reg_layer="features_3", img_size=(64, 64),
                  out_thresholds=range(2), inline_thresholds=[], nb_transforms=2, progress=False,
                  model_input_size=(64, 64), model_input_range=(0, 1), trans_p=None)
print(f"faccent-venv ready: faccent {faccent.__file__}, torch {torch.__version__}, kornia {kornia.__version__}")
PY
echo "$venv/bin/python"
