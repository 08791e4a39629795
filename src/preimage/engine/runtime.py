"""What makes the loop fast without changing what it computes: glibc's allocator (keep freed memory), the
channels-last layout on CPU, autocast with loss scaling, ``torch.compile`` with its fx cut, frozen parameters
and cache-sized update chunks. ``DataTerm`` puts them together for the data term's value and gradient.

Each is measured in ``preimage bench`` and in benchmarks/README.md; none changes the energy or its minimizer
(the tests check channels-last and chunked updates against the plain computation).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..errors import PreimageError
from ..representations.base import Representation
from .objectives import Objective

#: Mixed-precision modes: ``amp=True`` means bf16 (no loss scaling needed: bf16 has float32's range).
AMP_MODES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
#: fp16 has a narrow range: the data term is multiplied by this before the backward pass through the network
#: (and the gradient divided by it after), so that small input gradients do not flush to zero.
FP16_LOSS_SCALE = 1024.0


def amp_dtype(amp: bool | str | None) -> torch.dtype | None:
    """The autocast dtype for an ``amp`` option: None/False/"off" → None (float32), True → bfloat16."""
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("", "off", "none", "fp32")):
        return None
    if amp is True:
        return torch.bfloat16
    if isinstance(amp, str) and amp.lower() in AMP_MODES:
        return AMP_MODES[amp.lower()]
    raise PreimageError(f"unknown mixed-precision mode '{amp}' (choose bf16 or fp16)")


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Cut(nn.Module):
    """Φ as one fx graph: the network cut right after the target layer, so that torch.compile sees a single
    graph instead of the truncation hook (which breaks the graph)."""

    def __init__(self, graph: nn.Module, scale: torch.Tensor,
                 view: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.graph = graph
        self.view = view  # Φ's view of the layer's output (token outputs as maps)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.view(self.graph(x * self.scale)["out"], x)


def _graph_of(rep: Representation) -> nn.Module:
    """An fx-traced truncated copy of Φ if the network traces (timm's tracer knows timm's modules), else Φ."""
    if rep.layer is None or type(rep).forward is not Representation.forward:
        return rep
    try:
        from timm.models import create_feature_extractor

        return _Cut(create_feature_extractor(rep.net, return_nodes={rep.layer: "out"}), rep.scale, rep.as_view)
    except Exception:  # noqa: BLE001 - any tracing failure: compile Φ as it is, with its graph breaks
        return rep


def compiled(rep: Representation) -> Callable[[torch.Tensor], torch.Tensor]:
    """Φ through ``torch.compile`` (cached per representation, device and dtype).

    Opt-in: compiling costs start-up time (30–110 s on a 2-core CPU) and, on CPU, measured slower than eager
    for these networks; it is meant for GPUs, where it fuses the network's elementwise layers.
    """
    per_rep = _COMPILED.setdefault(rep, {})
    key = rep.device_dtype()
    if key not in per_rep:
        per_rep[key] = torch.compile(_graph_of(rep), dynamic=False)
    return per_rep[key]


@contextlib.contextmanager
def borrowed(rep: Representation) -> Iterator[None]:
    """Φ's network ready for a run inside, exactly as it was after: evaluation mode, parameters that do not require
    grad (autograd then computes only the input's gradient), and the network on Φ's device (a user's module may
    live elsewhere). On exit every module's mode, every parameter's ``requires_grad`` and every parameter's and
    buffer's tensor (device, memory layout, values) are put back: a call has no side effect on the user's model.
    Nested uses are cheap (nothing moves twice)."""
    net = rep.net
    modes = [(m, m.training) for m in net.modules()]
    params = [(p, p.data, p.requires_grad) for p in net.parameters()]
    buffers = [(m, name, b) for m in net.modules() for name, b in m._buffers.items() if b is not None]
    device = rep.device_dtype()[0]
    try:
        for m, _ in modes:
            m.training = False
        for p, _, _ in params:
            p.requires_grad_(False)
        if any(d.device != device for _, d, _ in params) or any(b.device != device for _, _, b in buffers):
            net.to(device)
        yield
    finally:
        for m, name, b in buffers:
            m._buffers[name] = b
        for p, data, grad in params:
            p.data = data
            p.requires_grad_(grad)
        for m, t in modes:
            m.training = t


def per_problem(device: torch.device) -> bool:
    """Whether ``optimize`` runs each problem on its own: on the CPU (whose kernels round differently for
    different batch sizes, so that only a problem computed alone is the same whatever batch it was asked in),
    unless PREIMAGE_BATCHED=1 asks for throughput over that guarantee (benchmarks). GPUs run the batch as one."""
    return device.type == "cpu" and os.environ.get("PREIMAGE_BATCHED", "0") != "1"


#: On CPU the update (priors' gradient, step, projection) runs on chunks of problems of about this many canvas
#: elements (2 MB of float32), so that its ~30 passes stay in the caches: 8 problems at 224 px, 2 threads,
#: whole batch 10.9–11.6 ms per iteration, chunks of 2–4 problems 3.6–5.2 ms, one by one 8.2 ms.
CPU_UPDATE_CHUNK_ELEMENTS = 1 << 19


def update_chunks(canvas: torch.Tensor) -> list[slice]:
    """Slices of the batch for the update: chunks of ``CPU_UPDATE_CHUNK_ELEMENTS`` on CPU, the whole batch on
    GPUs (one kernel per operation is what they want)."""
    n = canvas.shape[0]
    if canvas.device.type != "cpu":
        return [slice(0, n)]
    k = max(1, CPU_UPDATE_CHUNK_ELEMENTS // max(canvas[0].numel(), 1))
    return [slice(i, min(i + k, n)) for i in range(0, n, k)]


#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_heap_kept = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS (once per process).

    Every iteration torch frees and re-allocates the same activation-sized buffers (hundreds of kB to MBs).
    glibc serves such sizes with mmap or trims them off the heap when freed, so each iteration page-faults
    them back in: measured 450–11 600 page faults per iteration and up to 2× the time of a bare pass on
    this CPU. Raising the mmap and trim thresholds keeps them in the heap; peak memory is unchanged.
    A no-op off glibc or with PREIMAGE_KEEP_HEAP=0. Returns whether the setting is in effect.
    """
    global _heap_kept
    if _heap_kept or os.environ.get("PREIMAGE_KEEP_HEAP", "1") == "0" or not sys.platform.startswith("linux"):
        return _heap_kept
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        # Older glibc refuses mmap thresholds above 32 MB (half its maximal heap): then blocks up to 32 MB stay.
        mmap = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) or libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        _heap_kept = bool(trim and mmap)
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        _heap_kept = False
    return _heap_kept


def channels_last(rep: Representation, device: torch.device) -> bool:
    """Whether Φ runs in the channels-last layout: on CPU, for networks with 2-D convolutions (converted in place).

    oneDNN's CPU convolutions run faster on NHWC than on NCHW (fwd+bwd at batch 1, 224 px, 2 threads:
    efficientnet_lite0 0.82×, VGG 0.85×, AlexNet 0.94×, ResNet-18 0.99×); the result is the same.
    """
    if device.type != "cpu" or not any(isinstance(m, nn.Conv2d) for m in rep.net.modules()):
        return False
    rep.net.to(memory_format=torch.channels_last)  # returns the same tensors once converted
    return True


class DataTerm:
    """objective(Φ(window)) and its gradient w.r.t. the window, with optional autocast and compilation."""

    def __init__(self, rep: Representation, objective: Objective, amp: bool | str | None, compile: bool) -> None:
        self.objective = objective
        self.forward = compiled(rep) if compile else rep
        self.device = rep.device_dtype()[0]
        self.amp = amp_dtype(amp)
        self.loss_scale = FP16_LOSS_SCALE if self.amp == torch.float16 else 1.0
        self.layout = torch.channels_last if channels_last(rep, self.device) else torch.contiguous_format

    def features(self, window: torch.Tensor) -> torch.Tensor:
        """Φ(window), N×... (the whole batch in one call)."""
        return self.forward(window.contiguous(memory_format=self.layout))

    def phi(self, views: torch.Tensor) -> torch.Tensor:
        """Φ(views) in float32 for autograd through everything (autocast inside Φ when asked)."""
        if self.amp is None:
            return self.features(views)
        with torch.autocast(self.device.type, dtype=self.amp):
            phi = self.features(views)
        return phi.float()

    def __call__(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """window: N×C×H×W (a leaf) → (data term N, its gradient N×C×H×W in the window's dtype)."""
        if self.amp is None:
            e = self.objective(self.features(window))
            (g,) = torch.autograd.grad(e.sum(), window)
            return e.detach(), g
        with torch.autocast(self.device.type, dtype=self.amp):
            phi = self.features(window)
        # The data term itself (a sum of squares or an inner product over the map) stays in float32.
        e = self.objective(phi.float())
        if self.loss_scale == 1.0:
            (g,) = torch.autograd.grad(e.sum(), window)
            return e.detach(), g
        # fp16: a gradient that overflows at this loss scale is recomputed at half of it (the scale stays lowered).
        while True:
            (g,) = torch.autograd.grad(e.sum() * self.loss_scale, window, retain_graph=True)
            if bool(torch.isfinite(g).all()) or self.loss_scale <= 1.0:
                break
            self.loss_scale /= 2.0
        return e.detach(), g.div_(self.loss_scale)
