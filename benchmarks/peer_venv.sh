# Sourced by setup_faccent.sh and setup_horama.sh: make_peer_venv VENV PACKAGE... creates VENV for a peer's
# package. By default it sees the project's .venv packages through a .pth file (the same torch build on both sides
# of the comparison, no second multi-GB download), the venv's own packages first on sys.path; with TORCH=VERSION
# (TORCHVISION=VERSION), or without a project .venv, it installs torch, torchvision and PACKAGE... itself.
# Reads: PYTHON (default python3.11), PROJECT_VENV (default the checkout's .venv), TORCH, TORCHVISION.
make_peer_venv() {
    local venv="$1"; shift
    local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    local project_venv="${PROJECT_VENV:-$root/.venv}"
    local purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
    "${PYTHON:-python3.11}" -m venv "$venv"
    local site; site="$("$venv/bin/python" -c "$purelib")"
    if [[ -z "${TORCH:-}" && -x "$project_venv/bin/python" ]]; then
        "$project_venv/bin/python" -c "$purelib" > "$site/project-venv.pth"
    else
        "$venv/bin/python" -m pip install --quiet "torch${TORCH:+==$TORCH}" "torchvision${TORCHVISION:+==$TORCHVISION}" "$@"
    fi
}
