"""The one optimizer loop: minimize data(Φ(τ(x))) + λ_α R_α(x) + λ_β R_TVβ(x) [+ prior] over a batch of N problems,
x = the image a parameterization produces (the pixels themselves in the paper).

docs/paper-notes.md §1.1: noise initialization, jitter canvas, momentum + leaky AdaGrad with lr = H·W·lr0,
projection of every pixel's colour onto the ball of radius B+ after each step, stages that restart the optimizer
state.

A problem's picture depends only on the problem: every random draw comes from its own generator (``rng``), and on
the CPU each problem (or group of coupled problems) is optimized on its own, because the CPU's convolution and
matrix kernels round differently for different batch sizes (measured: batch 1 against batch 8 differ in the last
bits at every layer of efficientnet_lite0), so the same problem in another batch would drift to another picture.
On a GPU the batch runs as one (its kernels are chosen per batch anyway): the same batch gives the same pictures.

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
from ..representations.base import Representation
from . import transforms
from .budget import SeedBall
from .lbfgs import LBFGSStep, image_buffers
from .objectives import Objective, Term, views_of
from .param import ADAM_LR, Parameterization, ParamImage, Pixel, parse_param
from .priors import BNStats
from .regularizers import alpha_norm, alpha_norm_and_grad, project_ball, tv_beta, tv_beta_and_grad
from .rng import ProblemRNG, problem_seed
from .runtime import DataTerm, borrowed, keep_freed_memory, per_problem, update_chunks
from .schedules import Stage
from .transforms import Transform, centre_crop, place_on_canvas, random_offsets, window_index

#: progress(iterations done, total iterations)
Progress = Callable[[int, int], None]


class ImagePrior:
    """A term on the untransformed image itself (N×C×H×W paper units → N values, differentiable), added to the
    energy on the autograd path: e.g. the distance to a seed image in pixels or in a layer (``tasks.accentuate``).
    ``select(rows)`` gives the prior of some problems only (``optimize`` runs problems one by one on the CPU)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def select(self, rows: torch.Tensor) -> ImagePrior:
        return self


@dataclass(frozen=True)
class Energy:
    """The regularizers' constants, in paper units (docs/paper-notes.md §1.1 table)."""

    alpha: float = 6.0
    beta: float = 2.0
    B: float = 80.0
    B_plus: float = 160.0
    regularize: bool = True  # False: the no-regularizer baseline (λ_α = λ_β = 0, B+ = ∞, docs/paper-notes.md §1.5)

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
                         f"coarser ones); use param pyramid, or optimizer paper or adam with param {param}",
                         param=("optimizer", "param"))


def _lbfgs_needs_a_fixed_energy() -> PreimageError:
    return PreimageError("the lbfgs optimizer needs the same energy at every step: use it on stages without jitter "
                         "(transforms none, or style fast)", param=("optimizer", "transforms", "style"))


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
    raise PreimageError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})", param="optimizer")


def noise_init(channels: int, size: tuple[int, int], B: float, rng: ProblemRNG) -> torch.Tensor:
    """U[−1,1] noise, each problem's from its own generator, scaled per problem so its 0.95-quantile is B/√3
    (docs/paper-notes.md §1.1). → N×C×H×W."""
    x = rng.rand(channels, *size) * 2 - 1
    q = torch.stack([torch.quantile(r.flatten(), 0.95) for r in x]).clamp_min(1e-12)
    return x * (B / math.sqrt(3) / q).view(-1, 1, 1, 1)


def seeds_for(seed: int | Sequence[int], n: int) -> list[int]:
    """One seed per problem: as given (N of them), or derived from one number (problem i of ``seed``)."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return [problem_seed("problem", seed, i) for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise PreimageError(f"{len(seeds)} seeds for {n} problems", param="seed")
    return seeds


@dataclass
class Trace:
    """What the loop returns: the final images (paper units, centre crop) and the energy history."""

    x: torch.Tensor  # N×C×H×W, paper units
    energy: torch.Tensor  # T×N, energy per iteration (with the jitter of that iteration)
    iterations: int
    seconds: float
    stages: list[dict] = field(default_factory=list)
    #: N×1×H×W: Σ over steps of Σ over colour channels of |∂ attribution term / ∂ image| (``optimize(attribution=)``)
    attribution: torch.Tensor | None = None


class PixelPath:
    """The paper's path (pixel parameterization, jitter canvas, no other transform or prior): autograd runs
    through the network only (gradient w.r.t. each problem's jittered window, the network's parameters frozen),
    the priors' gradients are closed forms, the update and projection are in place, chunk by chunk on CPU."""

    def __init__(self, rep: Representation, data: DataTerm, x: torch.Tensor, size: tuple[int, int],
                 energy: Energy, optimizer: str | None, jitter: int | None, rng: ProblemRNG,
                 attribution: bool = False) -> None:
        self.rep, self.data, self.x, self.size, self.energy = rep, data, x, size, energy
        self.optimizer, self.jitter, self.rng = optimizer, jitter, rng
        # The data term is the attribution term here (its gradient w.r.t. the window is computed anyway).
        self.attr = torch.zeros(x.shape[0], 1, *size, device=rep.device_dtype()[0]) if attribution else None

    def optimizer_for(self, stage: Stage) -> str:
        """The stage's optimizer (the run's, else the stage's own, else the paper's); bad names fail here."""
        name = self.optimizer or stage.optimizer or "paper"
        if name == "hybrid":
            raise _hybrid_only("pixel")
        if name not in ("paper", "adam"):
            raise PreimageError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})", param="optimizer")
        return name

    def start(self, stage: Stage) -> dict:
        device, dtype = self.rep.device_dtype()
        self.J = self.jitter if stage.jitter and self.jitter else 1
        # Each stage starts afresh from the previous result's centre, as a new call of the authors' routine.
        self.canvas = place_on_canvas(self.x.to(device, dtype), self.J)
        self.step = make_step(self.optimizer_for(stage), self.canvas, self.size, self.energy, stage.lr_scale)
        self.chunks = update_chunks(self.canvas)
        if self.attr is not None:
            self.attr_canvas = torch.zeros(self.canvas.shape[0], 1, *self.canvas.shape[-2:], device=self.canvas.device)
        return {"iters": stage.iters, "lr": stage.lr_scale, "jitter": self.J}

    def iterate(self, out: torch.Tensor) -> None:
        """One step; the energy of each problem goes into ``out`` (N)."""
        (h, w), canvas = self.size, self.canvas
        top, left = random_offsets(canvas.shape[0], self.J, self.rng)
        shared = bool((top == top[0]).all()) and bool((left == left[0]).all())
        y, x = int(top[0]), int(left[0])
        c = canvas.shape[1]
        # Autograd sees only the windows and the network: its gradient lands in the windows directly,
        # with no full-canvas scatter and no graph through the priors.
        window = (canvas[..., y:y + h, x:x + w] if shared else
                  canvas[window_index(top, left, c, self.size, canvas.device)]).detach().requires_grad_(True)
        e_data, g_data = self.data(window)
        if self.attr is not None:
            a = g_data.abs().sum(1, keepdim=True).to(self.attr_canvas)
            if shared:
                self.attr_canvas[..., y:y + h, x:x + w] += a
            else:
                self.attr_canvas[window_index(top, left, 1, self.size, a.device)] += a
        with torch.no_grad():
            for sl in self.chunks:
                part = canvas[sl]
                e_reg, g = self.energy.regularizer_and_grad(part)
                if shared:
                    g[..., y:y + h, x:x + w] += g_data[sl]
                else:
                    g[window_index(top[sl], left[sl], c, self.size, g.device)] += g_data[sl]
                self.step(part, g, sl)
                project_ball(part, self.energy.bound)
                torch.add(e_data[sl], e_reg, out=out[sl])

    def finish(self) -> None:
        self.x = centre_crop(self.canvas, self.size)
        if self.attr is not None:
            self.attr += centre_crop(self.attr_canvas, self.size)

    def image(self) -> torch.Tensor:
        return self.x


class AutogradPath:
    """Every other combination: parameterization → image (paper units) → transforms (k views per problem) →
    Φ in one call → objective (+ feature prior) + the paper's priors on the image, one autograd pass back to the
    parameters. Stages without jitter use no transforms (the paper's refinement stage)."""

    def __init__(self, rep: Representation, data: DataTerm, objective: Objective, param: ParamImage, n: int,
                 size: tuple[int, int], energy: Energy, optimizer: str | None, jitter: int | None,
                 transforms: Sequence[Transform] | None, prior: BNStats | None, rng: ProblemRNG,
                 image_prior: ImagePrior | None = None, attribution: bool = False,
                 image_map: SeedBall | None = None, param_spec: str | None = None) -> None:
        self.rep, self.data, self.objective, self.param, self.n = rep, data, objective, param, n
        self.param_spec = param_spec or param.name  # the stages record the parameterization with its options
        self.image_map = image_map
        self.size, self.energy, self.rng, self.prior = size, energy, rng, prior
        self.optimizer, self.jitter, self.transforms = optimizer, jitter, transforms
        self.image_prior = image_prior
        self.attr = torch.zeros(n, 1, *size, device=rep.device_dtype()[0]) if attribution else None

    def optimizer_for(self, stage: Stage) -> str:
        """The stage's optimizer (the run's, else the stage's own, else the parameterization's); bad names and
        combinations fail here, before any work."""
        name = self.optimizer or stage.optimizer or self.param.optimizer
        if name not in OPTIMIZERS:
            raise PreimageError(f"unknown optimizer '{name}' (choose {', '.join(OPTIMIZERS)})", param="optimizer")
        if name == "paper" and self.param.optimizer not in ("paper", "hybrid"):
            raise PreimageError(f"the paper's optimizer is for parameterizations in paper units (pixel, pyramid); "
                                f"use optimizer adam with param {self.param.name}", param=("optimizer", "param"))
        if name == "hybrid" and self.param.optimizer != "hybrid":
            raise _hybrid_only(self.param.name)
        if name == "lbfgs" and self._transforms(stage):
            raise _lbfgs_needs_a_fixed_energy()
        return name

    def _transforms(self, stage: Stage) -> list[Transform]:
        if not stage.jitter:
            return []
        if self.transforms is None:
            return [transforms.Jitter(self.jitter)] if self.jitter and self.jitter > 1 else []
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
                "param": self.param_spec, "transforms": len(self.stage_transforms), "optimizer": name,
                "prior": self.prior.weight if self.prior else None}

    def iterate(self, out: torch.Tensor) -> None:
        with torch.enable_grad():
            img = self.picture()
            views = transforms.compose(self.stage_transforms, img, self.rng)
            with self.prior.watching(self.rep) if self.prior else contextlib.nullcontext():
                phi = self.data.phi(views)
            e = views_of(self.objective, phi, self.n)
            if self.attr is not None:  # the data term's own gradient w.r.t. the image (MaCo's transparency)
                (g_img,) = torch.autograd.grad(e.sum(), img, retain_graph=True)
                self.attr += g_img.detach().abs().sum(1, keepdim=True).to(self.attr)
            if self.prior:
                e = e + self.prior.value(self.n)
            if self.image_prior is not None:
                e = e + self.image_prior(img)
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

    def picture(self) -> torch.Tensor:
        """The parameterization's image, through the image map (a distance budget) where there is one."""
        img = self.param()
        return img if self.image_map is None else self.image_map(img)

    def image(self) -> torch.Tensor:
        with torch.no_grad():
            return self.picture().detach()


def problem_units(objective: Objective, n: int) -> list[list[int]]:
    """The problems as they are optimized on the CPU: each alone, except those the objective couples
    (``Term.groups``: the restarts of a diversity term), which stay together; [[0..N−1]] for an objective that
    cannot be split (a plain callable)."""
    if not isinstance(objective, Term):
        return [list(range(n))]
    groups = objective.groups(n)
    if groups is None:
        return [[i] for i in range(n)]
    units: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        units.setdefault(g, []).append(i)
    return list(units.values())


def optimize(rep: Representation, objective: Objective, n: int, size: tuple[int, int],
             schedule: Sequence[Stage], *, init: torch.Tensor | None = None, seed: int | Sequence[int] = 0,
             optimizer: str | None = None, energy: Energy = Energy(), jitter: int | None = None,
             progress: Progress | None = None, check_every: int = 20, amp: bool | str | None = None,
             compile: bool = False, param: str | Parameterization = "pixel",
             transforms: Sequence[Transform] | None = None, prior: BNStats | None = None,
             image_prior: ImagePrior | None = None, attribution: bool = False,
             bound: float | None = None, image_map: SeedBall | None = None) -> Trace:
    """Minimize the energy for N problems.

    rep: Φ; objective: features → N data terms; size: (H, W) of the network input; init: N×C×H×W in paper
    units (None: noise, or the parameterization's own random start); seed: one seed per problem (``rng.
    problem_seed`` of what defines it), or one number for all (problem i gets the i-th seed derived from it);
    jitter: J (default from the layer's measured stride). param: a parameterization (``Pixel()``, the paper's;
    ``Fourier()``, ``Maco()``, ``Pyramid()``) or its name; transforms: a list of transforms applied before Φ each
    step (None: the paper's jitter); prior: a feature-statistics prior (``priors.BNStats``). The pixel
    parameterization without transforms, prior or L-BFGS takes the paper's fast path (closed-form prior
    gradients, jitter canvas); everything else goes through autograd, the α-norm, TV^β and projection applied
    to the image the parameterization produces. optimizer: ``paper``, ``adam``, ``hybrid`` (the pyramid's) or
    ``lbfgs`` (stages without jitter only) for every stage; None: each stage's own (``Stage.optimizer``), else the
    parameterization's: paper for pixel, hybrid for pyramid, adam otherwise. amp: mixed precision for Φ (True or
    "bf16": bfloat16 autocast; "fp16": float16, with a fixed loss scale on the fast path); the data term, the
    priors, the image and the optimizer state stay float32. compile: run Φ through ``torch.compile`` (start-up
    cost; for GPUs). image_prior: a term on the untransformed image (``ImagePrior``; takes the autograd path).
    bound: a style's pixel bound B+ (``Style.bound``; None: the energy's). image_map: a map applied to the
    parameterization's image before everything else (``budget.SeedBall``: a distance budget around a seed; takes
    the autograd path); the pictures returned are its output.
    attribution: also sum, over the steps, |∂ data term / ∂ image| per pixel (summed over colour channels; MaCo's
    transparency map) into ``Trace.attribution`` (N×1×H×W); one more backward pass per step on the autograd path,
    none on the paper's; the pictures are the same with or without it. Raises PreimageError if the energy becomes
    NaN/inf.

    On the CPU each problem (or group of coupled problems, ``problem_units``) runs on its own, so its picture is
    the same bit for bit whatever batch it was asked in (at the same number of torch threads); on a GPU the batch
    runs as one.
    """
    seeds = seeds_for(seed, n)
    param = parse_param(param)
    energy = styled_energy(energy, bound)
    with borrowed(rep):
        units = problem_units(objective, n) if per_problem(rep.device_dtype()[0]) else [list(range(n))]
        if len(units) == 1:
            return _optimize(rep, objective, n, size, schedule, init, ProblemRNG(seeds), optimizer, energy, jitter,
                             progress, check_every, amp, compile, param, transforms, prior, image_prior, attribution,
                             image_map)
        total = n * sum(st.iters for st in schedule)
        traces = []
        done = 0
        for idx in units:
            rows = torch.tensor(idx)

            def sub(t: int, _total: int, done: int = done, k: int = len(idx)) -> None:
                if progress:
                    progress(done + t * k, total)

            traces.append(_optimize(rep, objective.select(rows), len(idx), size, schedule,
                                    None if init is None else init[rows], ProblemRNG([seeds[i] for i in idx]),
                                    optimizer, energy, jitter, sub, check_every, amp, compile, param, transforms,
                                    prior, None if image_prior is None else image_prior.select(rows), attribution,
                                    None if image_map is None else image_map.select(rows)))
            done += len(idx) * sum(st.iters for st in schedule)
        order = torch.argsort(torch.tensor([i for idx in units for i in idx]))
        x = torch.cat([t.x for t in traces])[order.to(traces[0].x.device)]
        history = torch.cat([t.energy for t in traces], 1)[:, order.to(traces[0].energy.device)]
        attr = None
        if attribution:
            attr = torch.cat([t.attribution for t in traces])[order.to(traces[0].attribution.device)].contiguous()
        return Trace(x.contiguous(), history, traces[0].iterations, sum(t.seconds for t in traces), traces[0].stages,
                     attr)


def styled_energy(energy: Energy, bound: float | None) -> Energy:
    """The energy with a style's pixel bound B+ (``Style.bound``) where the energy's is the paper's own."""
    return energy if bound is None or energy.B_plus != Energy.B_plus else replace(energy, B_plus=bound)


def _optimize(rep: Representation, objective: Objective, n: int, size: tuple[int, int], schedule: Sequence[Stage],
              init: torch.Tensor | None, rng: ProblemRNG, optimizer: str | None, energy: Energy, jitter: int | None,
              progress: Progress | None, check_every: int, amp: bool | str | None, compile: bool,
              param: Parameterization, transforms: Sequence[Transform] | None, prior: BNStats | None,
              image_prior: ImagePrior | None = None, attribution: bool = False,
              image_map: SeedBall | None = None) -> Trace:
    """One batch of problems through the loop (``optimize``)."""
    device, dtype = rep.device_dtype()
    keep_freed_memory()
    x = None
    if init is not None:
        x = init.detach().to("cpu", dtype)
    elif isinstance(param, Pixel):
        x = noise_init(rep.channels, size, energy.B, rng)
    if jitter is None and any(s.jitter for s in schedule):
        jitter = rep.geometry().jitter
    data = DataTerm(rep, objective, amp, compile)
    if isinstance(param, Pixel) and transforms is None and prior is None and image_prior is None and \
            image_map is None and not uses_lbfgs(schedule, optimizer):
        path: PixelPath | AutogradPath = PixelPath(rep, data, x, size, energy, optimizer, jitter, rng, attribution)
    else:
        p = param.build(n, rep.channels, size, rep.mean.cpu(), energy.bound, rng,
                        init=None if x is None else x).to(device, dtype)
        path = AutogradPath(rep, data, objective, p, n, size, energy, optimizer, jitter, transforms, prior, rng,
                            image_prior, attribution, image_map, param.spec())
    for stage in schedule:
        path.optimizer_for(stage)
    total = sum(s.iters for s in schedule)
    history = torch.empty(total, n, dtype=dtype, device=device)
    t = 0
    t0 = time.perf_counter()
    stage_log = []
    watch = objective.watching(rep) if isinstance(objective, Term) else contextlib.nullcontext()
    with watch:
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
    return Trace(x.contiguous(), history, total, time.perf_counter() - t0, stage_log, path.attr)


def _check_finite(e: torch.Tensor, t: int) -> None:
    if not bool(torch.isfinite(e).all()):
        raise PreimageError(f"the optimization diverged (energy is NaN/inf at iteration {t}); "
                            "try a smaller C or learning rate; no result was written")
