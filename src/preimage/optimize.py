"""The one optimizer loop: minimize data(Φ(τ(x))) + λ_α R_α(x) + λ_β R_TVβ(x) over a batch of N problems.

Paper-notes §1.1: noise initialization, jitter canvas, momentum + leaky AdaGrad with lr = H·W·lr0, projection
of every pixel's colour onto the ball of radius B+ after each step, stages that restart the optimizer state.

One iteration costs what the truncated network's forward+backward costs plus a few passes over the canvas
(see ``preimage bench``): autograd runs through the network only (gradient w.r.t. the jittered window, the
network's parameters frozen), the priors' gradients are closed forms, the update and projection are in place,
and nothing waits for the device except the finiteness check every ``check_every`` steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import PreimageError
from .regularizers import alpha_norm, alpha_norm_and_grad, project_ball, tv_beta, tv_beta_and_grad
from .representations.base import Representation, Stage
from .transforms import centre_crop, place_on_canvas, random_offset

Objective = Callable[[torch.Tensor], torch.Tensor]
#: progress(iterations done, total iterations)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Energy:
    """The regularizers' constants, in paper units (paper-notes §1.1 table)."""

    alpha: float = 6.0
    beta: float = 2.0
    B: float = 80.0
    B_plus: float = 160.0
    regularize: bool = True  # False: the no-regularizer baseline (λ_α = λ_β = 0, B+ = ∞, paper-notes §1.5)

    @property
    def V(self) -> float:
        return self.B / 6.5

    @property
    def lambda_alpha(self) -> float:
        return self.B ** -self.alpha if self.regularize else 0.0

    @property
    def lambda_beta(self) -> float:
        return self.V ** -self.beta if self.regularize else 0.0

    @property
    def bound(self) -> float:
        return self.B_plus if self.regularize else float("inf")

    @property
    def lr0(self) -> float:
        """Base learning rate 0.05·B²/α (53.33 with the defaults)."""
        return 0.05 * self.B ** 2 / self.alpha

    def regularizer(self, x: torch.Tensor) -> torch.Tensor:
        """λ_α R_α(x) + λ_β R_TVβ(x), N×C×H×W → N (differentiable)."""
        if not self.regularize:
            return x.new_zeros(x.shape[0])
        return self.lambda_alpha * alpha_norm(x, self.alpha) + self.lambda_beta * tv_beta(x, self.beta)

    def regularizer_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """λ_α R_α(x) + λ_β R_TVβ(x) (N) and its gradient (N×C×H×W, a new tensor), in closed form."""
        if not self.regularize:
            return x.new_zeros(x.shape[0]), torch.zeros_like(x)
        va, g = alpha_norm_and_grad(x, self.alpha, self.lambda_alpha)
        vt, g = tv_beta_and_grad(x, self.beta, self.lambda_beta, grad=g)
        return va.add_(vt), g


class PaperStep:
    """Momentum ρ + leaky AdaGrad (no (1−ρ) factor), as the authors' code: G ← ρG + g²;
    Δ ← ρΔ − g/(1/η + √G); x ← x + Δ. ``lr`` is η (already multiplied by H·W).

    Called as ``step(x[index], g, index)``: ``index`` selects the problems (a slice of the batch) whose state
    is updated, so that one iteration can be applied chunk by chunk."""

    def __init__(self, x: torch.Tensor, lr: float, rho: float = 0.9) -> None:
        self.inv_lr, self.rho = 1.0 / lr, rho
        self.G = torch.zeros_like(x)
        self.D = torch.zeros_like(x)
        self._den = torch.empty_like(x)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, g: torch.Tensor, index: slice = slice(None)) -> None:
        G, D, den = self.G[index], self.D[index], self._den[index]
        G.mul_(self.rho).addcmul_(g, g)
        torch.sqrt(G, out=den).add_(self.inv_lr)
        D.mul_(self.rho).addcdiv_(g, den, value=-1.0)
        x.add_(D)


class AdamStep:
    """Adam on the pixels, ``lr`` in paper units per step (0–255 scale). ``index`` as for PaperStep; the call
    that includes the batch's first problem advances the step count."""

    def __init__(self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, g: torch.Tensor, index: slice = slice(None)) -> None:
        if not index.start:
            self.t += 1
        m, v = self.m[index], self.v[index]
        m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        step = self.lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        x.addcdiv_(m, v.sqrt().add_(self.eps), value=-step)


OPTIMIZERS = ("paper", "adam")
ADAM_LR = 2.0  # paper units per step at stage scale 1


def make_step(name: str, x: torch.Tensor, size: tuple[int, int], energy: Energy, lr_scale: float):
    """The optimizer for one stage; the paper's η = H·W·lr0·scale (H·W: network input, not the canvas)."""
    if name == "paper":
        return PaperStep(x, size[0] * size[1] * energy.lr0 * lr_scale)
    if name == "adam":
        return AdamStep(x, ADAM_LR * lr_scale)
    raise PreimageError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})")


def noise_init(n: int, channels: int, size: tuple[int, int], B: float, generator: torch.Generator) -> torch.Tensor:
    """U[−1,1] noise scaled per sample so its 0.95-quantile is B/√3 (paper-notes §1.1). → N×C×H×W."""
    x = torch.rand(n, channels, *size, generator=generator) * 2 - 1
    q = torch.quantile(x.flatten(1), 0.95, dim=1).clamp_min(1e-12)
    return x * (B / math.sqrt(3) / q).view(n, 1, 1, 1)


def scale_schedule(schedule: Sequence[Stage], iters: int | None) -> tuple[Stage, ...]:
    """Rescale a schedule to ``iters`` iterations in total, keeping the stages' proportions."""
    if iters is None:
        return tuple(schedule)
    if iters < 1:
        raise PreimageError("--iters must be at least 1")
    total = sum(s.iters for s in schedule)
    out, left = [], iters
    for i, s in enumerate(schedule):
        k = left if i == len(schedule) - 1 else min(max(round(iters * s.iters / total), 1), left)
        if k > 0:
            out.append(Stage(k, s.lr_scale, s.jitter))
        left -= k
    return tuple(out)


@dataclass
class Trace:
    """What the loop returns: the final images (paper units, centre crop) and the energy history."""

    x: torch.Tensor  # N×C×H×W, paper units
    energy: torch.Tensor  # T×N, energy per iteration (with the jitter of that iteration)
    iterations: int
    seconds: float
    stages: list[dict] = field(default_factory=list)


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

    def __init__(self, graph: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.graph = graph
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x * self.scale)["out"]


def _graph_of(rep: Representation) -> nn.Module:
    """An fx-traced truncated copy of Φ if the network traces (timm's tracer knows timm's modules), else Φ."""
    if rep.layer is None or type(rep).forward is not Representation.forward:
        return rep
    try:
        from timm.models import create_feature_extractor

        return _Cut(create_feature_extractor(rep.net, return_nodes={rep.layer: "out"}), rep.scale)
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
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters do not require grad inside (restored after): autograd then computes only the input's gradient."""
    thawed = [p for p in module.parameters() if p.requires_grad]
    for p in thawed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in thawed:
            p.requires_grad_(True)


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


class _DataTerm:
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
        (g,) = torch.autograd.grad(e.sum() * self.loss_scale if self.loss_scale != 1.0 else e.sum(), window)
        if self.loss_scale != 1.0:
            g = g.div_(self.loss_scale)
        return e.detach(), g


def optimize(rep: Representation, objective: Objective, n: int, size: tuple[int, int],
             schedule: Sequence[Stage], *, init: torch.Tensor | None = None, seed: int = 0,
             optimizer: str = "paper", energy: Energy = Energy(), jitter: int | None = None,
             progress: Progress | None = None, check_every: int = 20, amp: bool | str | None = None,
             compile: bool = False) -> Trace:
    """Minimize the energy for N problems at once.

    rep: Φ; objective: features → N data terms; size: (H, W) of the network input; init: N×C×H×W in paper
    units (None: noise); jitter: J (default from the layer's measured stride). amp: mixed precision for Φ
    (True or "bf16": bfloat16 autocast; "fp16": float16 with a fixed loss scale); the data term, the priors,
    the image and the optimizer state stay float32. compile: run Φ through ``torch.compile`` (start-up cost;
    for GPUs). Raises PreimageError if the energy becomes NaN/inf.
    Deterministic for a given seed.
    """
    device, dtype = rep.device_dtype()
    keep_freed_memory()
    gen = torch.Generator().manual_seed(seed)
    if init is None:
        x = noise_init(n, rep.channels, size, energy.B, gen)
    else:
        x = init.detach().to("cpu", dtype)
    if jitter is None and any(s.jitter for s in schedule):
        jitter = rep.geometry().jitter
    data = _DataTerm(rep, objective, amp, compile)
    total = sum(s.iters for s in schedule)
    history = torch.empty(total, n, dtype=dtype, device=device)
    h, w = size
    t = 0
    t0 = time.perf_counter()
    stage_log = []
    with frozen(rep):
        for stage in schedule:
            J = jitter if stage.jitter and jitter else 1
            # Each stage starts afresh from the previous result's centre, as a new call of the authors' routine.
            canvas = place_on_canvas(x.to(device, dtype), J)
            step = make_step(optimizer, canvas, size, energy, stage.lr_scale)
            chunks = update_chunks(canvas)
            for _ in range(stage.iters):
                jy, jx = random_offset(canvas, size, gen)
                # Autograd sees only the window and the network: its gradient lands in the window directly,
                # with no full-canvas scatter and no graph through the priors.
                window = canvas[..., jy:jy + h, jx:jx + w].detach().requires_grad_(True)
                e_data, g_data = data(window)
                with torch.no_grad():
                    for sl in chunks:
                        part = canvas[sl]
                        e_reg, g = energy.regularizer_and_grad(part)
                        g[..., jy:jy + h, jx:jx + w] += g_data[sl]
                        step(part, g, sl)
                        project_ball(part, energy.bound)
                        torch.add(e_data[sl], e_reg, out=history[t, sl])
                t += 1
                if t % check_every == 0 or t == total:
                    _check_finite(history[t - 1], t)
                    if progress:
                        progress(t, total)
            x = centre_crop(canvas, size)
            stage_log.append({"iters": stage.iters, "lr": stage.lr_scale, "jitter": J})
    if total == 0:
        x = x.to(device, dtype)
    return Trace(x.contiguous(), history, total, time.perf_counter() - t0, stage_log)


def _check_finite(e: torch.Tensor, t: int) -> None:
    if not bool(torch.isfinite(e).all()):
        raise PreimageError(f"the optimization diverged (energy is NaN/inf at iteration {t}); "
                            "try a smaller C or learning rate; no result was written")
