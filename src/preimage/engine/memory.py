"""Memory a request will need, estimated before anything large is allocated, so that a request the machine
cannot hold is refused in one line instead of crashing part way (or being killed by the kernel)."""

from __future__ import annotations

import os

import torch

from ..errors import PreimageError
from ..representations.base import Representation
from .runtime import per_problem

#: Image-sized float32 buffers the loop holds per problem: canvas, AdaGrad and momentum state, denominator,
#: prior gradient, data gradient, window gradient, the initial image and its reference (engine/optimize.py).
IMAGE_BUFFERS = 10
#: The layer outputs autograd keeps for the backward pass, plus the gradients it makes from them.
AUTOGRAD_FACTOR = 2.0


def machine_bytes(device: torch.device | str = "cpu") -> int:
    """The memory of the device: physical RAM for the CPU, the GPU's total memory for CUDA."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_properties(dev).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def bytes_per_pixel(rep: Representation) -> float:
    """Bytes of all layer outputs up to ``rep``'s layer per input pixel, for one image: measured once with a
    forward pass at the model's own size and cached on ``rep`` (convolutional networks' activations grow with
    the input's area)."""
    cached = getattr(rep, "_bytes_per_pixel", None)
    if cached is not None:
        return cached
    h, w = rep.spec.input_size or (64, 64)
    total = [0]

    def count(_m: torch.nn.Module, _i: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(count) for m in rep.net.modules() if not list(m.children())]
    device, dtype = rep.device_dtype()
    try:
        with torch.no_grad():
            y = rep(torch.zeros(1, rep.channels, h, w, device=device, dtype=dtype))
        total[0] += y.numel() * y.element_size()
    except Exception:  # noqa: BLE001 - a network that fails here fails clearly later; estimate the images alone
        total[0] = 0
    finally:
        for hd in handles:
            hd.remove()
    rep._bytes_per_pixel = total[0] / (h * w)
    return rep._bytes_per_pixel


def estimate_bytes(rep: Representation, n: int, size: tuple[int, int], extra_buffers: int = 0) -> int:
    """Memory for optimizing ``n`` problems of ``size`` (H, W) at ``rep``'s layer: the network's activations
    and their gradients (of one problem at a time where problems run on their own, ``runtime.per_problem``), plus
    the loop's image-sized buffers (and ``extra_buffers`` more: L-BFGS's memory)."""
    h, w = size
    at_once = 1 if per_problem(rep.device_dtype()[0]) else n
    network = at_once * AUTOGRAD_FACTOR * bytes_per_pixel(rep)
    return int(h * w * (network + n * (IMAGE_BUFFERS + extra_buffers) * 4 * rep.channels))


def check_memory(rep: Representation, n: int, size: tuple[int, int] | int | None, what: str = "",
                 extra_buffers: int = 0) -> None:
    """Refuse, in one line with the estimate, a request that needs more memory than the device has."""
    if size is None:
        return
    hw = (size, size) if isinstance(size, int) else tuple(size)
    need = estimate_bytes(rep, n, hw, extra_buffers)
    have = machine_bytes(rep.device_dtype()[0])
    if need > have:
        raise PreimageError(f"{what or 'this request'} would need about {need / 2**30:.1f} GB ({n} problem(s) at "
                            f"{hw[0]}×{hw[1]} through {rep.name} {rep.layer or 'output'}), more than this machine's "
                            f"{have / 2**30:.1f} GB; use a smaller size or fewer problems", param="size")
