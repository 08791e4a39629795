#!/usr/bin/env bash
# Create benchmarks/lucent-venv: Lucent (torch-lucent 0.1.8) in its own environment, for `preimage bench`.
#
# Lucent pins kornia<=0.4.1, which the project's environment must not carry, so it gets a venv of its own.
# It uses the same torch/torchvision as the project's .venv (so both sides of the comparison run the same
# kernels); checked: kornia 0.4.1 imports and render_vis runs with torch 2.14.1 / torchvision 0.29.1 on
# Python 3.11. timm is installed so that timm networks (efficientnet_lite0) can be unpickled there.
#
#   bash benchmarks/setup_lucent.sh            # then: preimage bench speed  (finds benchmarks/lucent-venv)
#   PYTHON=python3.11 TORCH=2.14.1 TORCHVISION=0.29.1 bash benchmarks/setup_lucent.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${LUCENT_VENV:-$here/lucent-venv}"
python="${PYTHON:-python3.11}"
# Default: the torch of the project's .venv, without its local build tag (+cu130, +cpu).
if [[ -z "${TORCH:-}" && -x "$root/.venv/bin/python" ]]; then
    TORCH="$("$root/.venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
    TORCHVISION="$("$root/.venv/bin/python" -c 'import torchvision; print(torchvision.__version__.split("+")[0])')"
fi
torch_spec="torch${TORCH:+==$TORCH}"
tv_spec="torchvision${TORCHVISION:+==$TORCHVISION}"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$torch_spec" "$tv_spec" "kornia==0.4.1" "torch-lucent==0.1.8" timm
"$venv/bin/python" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
import kornia, torch, torchvision
from lucent.optvis import param, render
net = torchvision.models.alexnet().eval()
render.render_vis(net, "features_0:0", param_f=lambda: param.image(32), thresholds=(2,), show_image=False,
                  progress=False, fixed_image_size=32)
print(f"lucent-venv ready: torch {torch.__version__}, torchvision {torchvision.__version__}, kornia {kornia.__version__}")
PY
echo "$venv/bin/python"
