"""The one optimizer loop: minimize data(Φ(τ(x))) + λ_α R_α(x) + λ_β R_TVβ(x) [+ prior] over a batch of N problems,
x = the image a parameterization produces (the pixels themselves in the paper).

Paper-notes §1.1: noise initialization, jitter canvas, momentum + leaky AdaGrad with lr = H·W·lr0, projection
of every pixel's colour onto the ball of radius B+ after each step, stages that restart the optimizer state.

One iteration costs what the truncated network's forward+backward costs plus a few passes over the canvas
(see ``preimage bench``): autograd runs through the network only (gradient w.r.t. the jittered window, the
network's parameters frozen), the priors' gradients are closed forms, the update and projection are in place,
and nothing waits for the device except the finiteness check every ``check_every`` steps. What makes it fast
without changing what it computes (allocator, memory layout, autocast, compilation, update chunks) lives in
``runtime``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from ..errors import PreimageError
from ..representations.base import Representation, Stage
from . import transforms
from .lbfgs import LBFGSStep, image_buffers
from .objectives import Objective, Term, views_of
from .param import ADAM_LR, PARAMS, Param, make_param
from .priors import BNStats
from .regularizers import alpha_norm, alpha_norm_and_grad, project_ball, tv_beta, tv_beta_and_grad
from .runtime import DataTerm, frozen, keep_freed_memory, update_chunks
from .transforms import Transform, centre_crop, place_on_canvas, random_offset

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


OPTIMIZERS = ("paper", "adam", "hybrid", "lbfgs")
#: ``hybrid``: one optimizer per tensor of the parameterization (``Param.step_names``): Adam on the pyramid's
#: full-size level and the paper's on the coarser ones. ``lbfgs``: L-BFGS per problem, one evaluation per
#: iteration (``engine.lbfgs``), on stages without jitter or transforms; the fast style's second stage
#: (benchmarks/results/time_to_quality.md).


def _hybrid_only(param: str) -> PreimageError:
    return PreimageError(f"the hybrid optimizer is the pyramid's (Adam on its full-size level, the paper's on the "
                         f"coarser ones); use --param pyramid, or paper or adam with --param {param}")


def _lbfgs_needs_a_fixed_energy() -> PreimageError:
    return PreimageError("the lbfgs optimizer needs the same energy at every step: use it on stages without jitter "
                         "(--transforms none, or --style fast)")


def uses_lbfgs(schedule: Sequence[Stage], optimizer: str | None) -> bool:
    """Whether any stage runs L-BFGS (the run's optimizer, else the stage's own)."""
    return any((optimizer or s.optimizer) == "lbfgs" for s in schedule)


def extra_buffers(schedule: Sequence[Stage], optimizer: str | None) -> int:
    """Image-sized buffers per problem beyond the loop's own (``memory.check_memory``): L-BFGS's pairs."""
    return image_buffers() if uses_lbfgs(schedule, optimizer) else 0


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
            out.append(replace(s, iters=k))
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


class PixelPath:
    """The paper's path (pixel parameterization, jitter canvas, no other transform or prior): autograd runs
    through the network only (gradient w.r.t. the jittered window, the network's parameters frozen), the priors'
    gradients are closed forms, the update and projection are in place, chunk by chunk on CPU."""

    def __init__(self, rep: Representation, data: DataTerm, x: torch.Tensor, size: tuple[int, int],
                 energy: Energy, optimizer: str, jitter: int | None, gen: torch.Generator) -> None:
        self.rep, self.data, self.x, self.size, self.energy = rep, data, x, size, energy
        self.optimizer, self.jitter, self.gen = optimizer, jitter, gen

    def optimizer_for(self, stage: Stage) -> str:
        """The stage's optimizer (the run's, else the stage's own, else the paper's); bad names fail here."""
        name = self.optimizer or stage.optimizer or "paper"
        if name == "hybrid":
            raise _hybrid_only("pixel")
        if name not in ("paper", "adam"):
            raise PreimageError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})")
        return name

    def start(self, stage: Stage) -> dict:
        device, dtype = self.rep.device_dtype()
        J = self.jitter if stage.jitter and self.jitter else 1
        # Each stage starts afresh from the previous result's centre, as a new call of the authors' routine.
        self.canvas = place_on_canvas(self.x.to(device, dtype), J)
        self.step = make_step(self.optimizer_for(stage), self.canvas, self.size, self.energy, stage.lr_scale)
        self.chunks = update_chunks(self.canvas)
        return {"iters": stage.iters, "lr": stage.lr_scale, "jitter": J}

    def iterate(self, out: torch.Tensor) -> None:
        """One step; the energy of each problem goes into ``out`` (N)."""
        (h, w), canvas = self.size, self.canvas
        jy, jx = random_offset(canvas, self.size, self.gen)
        # Autograd sees only the window and the network: its gradient lands in the window directly,
        # with no full-canvas scatter and no graph through the priors.
        window = canvas[..., jy:jy + h, jx:jx + w].detach().requires_grad_(True)
        e_data, g_data = self.data(window)
        with torch.no_grad():
            for sl in self.chunks:
                part = canvas[sl]
                e_reg, g = self.energy.regularizer_and_grad(part)
                g[..., jy:jy + h, jx:jx + w] += g_data[sl]
                self.step(part, g, sl)
                project_ball(part, self.energy.bound)
                torch.add(e_data[sl], e_reg, out=out[sl])

    def finish(self) -> None:
        self.x = centre_crop(self.canvas, self.size)

    def image(self) -> torch.Tensor:
        return self.x


class AutogradPath:
    """Every other combination: parameterization → image (paper units) → transforms (k views per problem) →
    Φ in one call → objective (+ feature prior) + the paper's priors on the image, one autograd pass back to the
    parameters. Stages without jitter use no transforms (the paper's refinement stage)."""

    def __init__(self, rep: Representation, data: DataTerm, objective: Objective, param: Param, n: int,
                 size: tuple[int, int], energy: Energy, optimizer: str | None, jitter: int | None,
                 transforms: Sequence[Transform] | None, prior: BNStats | None, gen: torch.Generator) -> None:
        self.rep, self.data, self.objective, self.param, self.n = rep, data, objective, param, n
        self.size, self.energy, self.gen, self.prior = size, energy, gen, prior
        self.optimizer, self.jitter, self.transforms = optimizer, jitter, transforms

    def optimizer_for(self, stage: Stage) -> str:
        """The stage's optimizer (the run's, else the stage's own, else the parameterization's); bad names and
        combinations fail here, before any work."""
        name = self.optimizer or stage.optimizer or self.param.optimizer
        if name not in OPTIMIZERS:
            raise PreimageError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})")
        if name == "paper" and self.param.optimizer not in ("paper", "hybrid"):
            raise PreimageError(f"the paper's optimizer is for parameterizations in paper units (pixel, pyramid); "
                                f"use --optimizer adam with --param {self.param.name}")
        if name == "hybrid" and self.param.optimizer != "hybrid":
            raise _hybrid_only(self.param.name)
        if name == "lbfgs" and self._transforms(stage):
            raise _lbfgs_needs_a_fixed_energy()
        return name

    def _transforms(self, stage: Stage) -> list[Transform]:
        if not stage.jitter:
            return []
        if self.transforms is None:
            return [transforms.jitter(self.jitter)] if self.jitter and self.jitter > 1 else []
        return list(self.transforms)

    def start(self, stage: Stage) -> dict:
        name = self.optimizer_for(stage)
        self.stage_transforms = self._transforms(stage)
        params = self.param.params()
        self.lbfgs = (LBFGSStep(first=self.param.lr * stage.lr_scale, scale=self.param.lbfgs_scale())
                      if name == "lbfgs" else None)
        self.steps = [] if self.lbfgs else [
            AdamStep(t, self.param.lr * stage.lr_scale) if step == "adam" else
            make_step(step, t, self.size, self.energy, stage.lr_scale)
            for t, step in zip(params, self.param.step_names(name), strict=True)]
        return {"iters": stage.iters, "lr": stage.lr_scale, "jitter": self.jitter if stage.jitter else 1,
                "param": self.param.name, "transforms": len(self.stage_transforms), "optimizer": name,
                "prior": self.prior.weight if self.prior else None}

    def iterate(self, out: torch.Tensor) -> None:
        with torch.enable_grad():
            img = self.param()
            views = transforms.compose(self.stage_transforms, img, self.gen)
            with self.prior.watching(self.rep) if self.prior else contextlib.nullcontext():
                phi = self.data.phi(views)
            e = views_of(self.objective, phi, self.n)
            if self.prior:
                e = e + self.prior.value(self.n)
            e = e + self.energy.regularizer(img)
            grads = torch.autograd.grad(e.sum(), self.param.params())
        with torch.no_grad():
            e = e.detach()
            if self.lbfgs:  # the energy it records is that of the accepted points
                e = self.lbfgs([t.data for t in self.param.params()], list(grads), e)
            else:
                for t, g, step in zip(self.param.params(), grads, self.steps, strict=True):
                    step(t.data, g)
            self.param.project_()
            out.copy_(e)

    def finish(self) -> None:
        if self.lbfgs:
            self.lbfgs.restore([t.data for t in self.param.params()])

    def image(self) -> torch.Tensor:
        with torch.no_grad():
            return self.param().detach()


def optimize(rep: Representation, objective: Objective, n: int, size: tuple[int, int],
             schedule: Sequence[Stage], *, init: torch.Tensor | None = None, seed: int = 0,
             optimizer: str | None = None, energy: Energy = Energy(), jitter: int | None = None,
             progress: Progress | None = None, check_every: int = 20, amp: bool | str | None = None,
             compile: bool = False, param: str = "pixel", transforms: Sequence[Transform] | None = None,
             prior: BNStats | None = None) -> Trace:
    """Minimize the energy for N problems at once.

    rep: Φ; objective: features → N data terms; size: (H, W) of the network input; init: N×C×H×W in paper
    units (None: noise, or the parameterization's own random start); jitter: J (default from the layer's
    measured stride). param: ``pixel`` (the paper's), ``fourier`` or ``maco``; transforms: a list of transforms
    applied before Φ each step (None: the paper's jitter); prior: a feature-statistics prior (``priors.BNStats``).
    The pixel parameterization without transforms, prior or L-BFGS takes the paper's fast path (closed-form prior
    gradients, jitter canvas); everything else goes through autograd, the α-norm, TV^β and projection applied
    to the image the parameterization produces. optimizer: ``paper``, ``adam``, ``hybrid`` (the pyramid's) or
    ``lbfgs`` (stages without jitter only) for every stage; None: each stage's own (``Stage.optimizer``), else the
    parameterization's: paper for pixel, hybrid for pyramid, adam otherwise. amp: mixed
    precision for Φ (True or "bf16": bfloat16 autocast; "fp16": float16, with a fixed loss scale on the fast
    path); the data term, the priors, the image and the optimizer state stay float32. compile: run Φ through
    ``torch.compile`` (start-up cost; for GPUs). Raises PreimageError if the energy becomes NaN/inf.
    Deterministic for a given seed.
    """
    device, dtype = rep.device_dtype()
    keep_freed_memory()
    gen = torch.Generator().manual_seed(seed)
    if param not in PARAMS:
        raise PreimageError(f"unknown parameterization '{param}' (choose {', '.join(PARAMS)})")
    x = None
    if init is not None:
        x = init.detach().to("cpu", dtype)
    elif param == "pixel":
        x = noise_init(n, rep.channels, size, energy.B, gen)
    if jitter is None and any(s.jitter for s in schedule):
        jitter = rep.geometry().jitter
    data = DataTerm(rep, objective, amp, compile)
    if param == "pixel" and transforms is None and prior is None and not uses_lbfgs(schedule, optimizer):
        path: PixelPath | AutogradPath = PixelPath(rep, data, x, size, energy, optimizer, jitter, gen)
    else:
        p = make_param(param, n, rep.channels, size, rep.mean.cpu(), energy.bound, gen,
                       init=None if x is None else x).to(device, dtype)
        path = AutogradPath(rep, data, objective, p, n, size, energy, optimizer, jitter, transforms, prior, gen)
    for stage in schedule:
        path.optimizer_for(stage)
    total = sum(s.iters for s in schedule)
    history = torch.empty(total, n, dtype=dtype, device=device)
    t = 0
    t0 = time.perf_counter()
    stage_log = []
    watch = objective.watching(rep) if isinstance(objective, Term) else contextlib.nullcontext()
    with frozen(rep), watch:
        for stage in schedule:
            stage_log.append(path.start(stage))
            for _ in range(stage.iters):
                path.iterate(history[t])
                t += 1
                if t % check_every == 0 or t == total:
                    _check_finite(history[t - 1], t)
                    if progress:
                        progress(t, total)
            path.finish()
    x = path.image() if (total or x is None) else x.to(device, dtype)
    return Trace(x.contiguous(), history, total, time.perf_counter() - t0, stage_log)


def _check_finite(e: torch.Tensor, t: int) -> None:
    if not bool(torch.isfinite(e).all()):
        raise PreimageError(f"the optimization diverged (energy is NaN/inf at iteration {t}); "
                            "try a smaller C or learning rate; no result was written")
