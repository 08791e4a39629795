"""Data terms of the energy (paper-notes §1.2–1.4 and Lucid's objectives). Each maps features N×... → N.

Terms compose: ``a + b``, ``w * a``, ``a - w * b`` give a ``Sum`` (weighted terms), in Python and from the
command line (``parse_objective``). A transform that makes k views of each problem gives k·N feature rows
(crop-major); ``views(phi, n)`` turns them into N values (by default the mean of the term over the k views).
A term that reads another layer than Φ's (``Diversity`` with a layer) hooks it inside ``watching(rep)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError

#: A data term: features N×... → N values (one per problem), differentiable.
Objective = Callable[[torch.Tensor], torch.Tensor]


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


def views_of(objective: Objective, phi: torch.Tensor, n: int) -> torch.Tensor:
    """N values of an objective on k·N feature rows (k views per problem, crop-major): the mean over views."""
    if isinstance(objective, Term):
        return objective.views(phi, n)
    if phi.shape[0] == n:
        return objective(phi)
    return torch.stack([objective(c) for c in phi.split(n)]).mean(0)


class Term:
    """Base of the data terms: arithmetic makes weighted sums."""

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def views(self, phi: torch.Tensor, n: int) -> torch.Tensor:
        """N values from k·N rows of features (crop-major): the mean of the term over each problem's views."""
        if phi.shape[0] == n:
            return self(phi)
        return torch.stack([self(c) for c in phi.split(n)]).mean(0)

    @contextlib.contextmanager
    def watching(self, rep: nn.Module) -> Iterator[None]:
        """Hooks a term needs during Φ's forward pass (none by default)."""
        yield

    def __add__(self, other: Term) -> Sum:
        return Sum([(1.0, self), (1.0, other)])

    def __sub__(self, other: Term) -> Sum:
        return Sum([(1.0, self), (-1.0, other)])

    def __mul__(self, w: float) -> Sum:
        return Sum([(float(w), self)])

    __rmul__ = __mul__

    def __neg__(self) -> Sum:
        return Sum([(-1.0, self)])


class Sum(Term):
    """Σ w_i · term_i, per problem (nested sums are flattened)."""

    def __init__(self, terms: Sequence[tuple[float, Term]]) -> None:
        flat: list[tuple[float, Term]] = []
        for w, t in terms:
            flat += [(w * w2, t2) for w2, t2 in t.terms] if isinstance(t, Sum) else [(w, t)]
        self.terms = flat

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return sum(w * t(phi) for w, t in self.terms)

    def views(self, phi: torch.Tensor, n: int) -> torch.Tensor:
        return sum(w * t.views(phi, n) for w, t in self.terms)

    @contextlib.contextmanager
    def watching(self, rep: nn.Module) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for _, t in self.terms:
                stack.enter_context(t.watching(rep))
            yield

    def first(self, kind: type) -> Term | None:
        """The first term of a type (e.g. the InnerProduct whose score is reported)."""
        return next((t for _, t in self.terms if isinstance(t, kind)), None)


class Inversion(Term):
    """C·‖M⊙(Φ(x)−Φ0)‖² / ‖M⊙Φ0‖², per problem.

    target: Φ0, N×D×h×w (or N×D); C: N (or scalar); mask: 0/1, broadcastable to the target (None: all ones).
    """

    def __init__(self, target: torch.Tensor, C: torch.Tensor | float = 100.0,
                 mask: torch.Tensor | None = None) -> None:
        self.target = target.detach()
        self.mask = mask
        n = target.shape[0]
        self.C = torch.as_tensor(C, dtype=target.dtype, device=target.device).expand(n).clone()
        self.norm2 = _flat_sum(self._masked(self.target).pow(2)).clamp_min(1e-12)
        self.weight = self.C / self.norm2

    def _masked(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.mask is None else t * self.mask

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return self.weight * _flat_sum(self._masked(phi - self.target).pow(2))

    def error(self, phi: torch.Tensor) -> torch.Tensor:
        """The IJCV error ‖M⊙(Φ−Φ0)‖/‖M⊙Φ0‖ (a fraction), N."""
        return (_flat_sum(self._masked(phi - self.target).pow(2)) / self.norm2).sqrt()


class InnerProduct(Term):
    """−⟨Φ(x), W⟩ per problem: activation maximization (W a normalized one-hot target) and caricature.

    weight: broadcastable to the features N×D×h×w.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.detach()

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return -_flat_sum(phi * self.weight)

    def score(self, phi: torch.Tensor) -> torch.Tensor:
        """⟨Φ(x), W⟩, N (the activation reached, or the caricature score)."""
        return _flat_sum(phi * self.weight)


def caricature(phi0: torch.Tensor) -> InnerProduct:
    """−⟨Φ(x), max(Φ0,0)⟩ / ‖max(Φ0,0)‖², per problem (phi0: N×...)."""
    pos = phi0.detach().clamp_min(0)
    norm2 = _flat_sum(pos.pow(2)).clamp_min(1e-12)
    return InnerProduct(pos / norm2.view(-1, *([1] * (pos.ndim - 1))))


def neighbourhood_mask(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    """0/1 mask 1×D×h×w selecting the central n×n neurons of the map, all channels (paper-notes §1.2)."""
    d, h, w = shape[-3:]
    mask = torch.zeros(1, d, h, w)
    # MATLAB: s = (0:n−1) + ceil((W−n+1)/2), 1-based.
    y0, x0 = max(math.ceil((h - n + 1) / 2) - 1, 0), max(math.ceil((w - n + 1) / 2) - 1, 0)
    mask[..., y0:y0 + n, x0:x0 + n] = 1
    return mask


def channel_mask(shape: tuple[int, ...], part: str) -> torch.Tensor:
    """0/1 mask 1×D×(h×w) selecting a channel group: ``first-half``, ``second-half`` or ``A:B``."""
    d = shape[-3] if len(shape) >= 3 else shape[-1]
    if part == "first-half":
        sl = slice(0, d // 2)
    elif part == "second-half":
        sl = slice(d // 2, d)
    else:
        a, _, b = part.partition(":")
        sl = slice(int(a) if a else 0, int(b) if b else d)
    mask = torch.zeros(1, *shape[-3:]) if len(shape) >= 3 else torch.zeros(1, d)
    mask[:, sl] = 1
    return mask


def direction(vector: torch.Tensor, shape: Sequence[int], weight: float = 1.0) -> InnerProduct:
    """−weight·mean over the map of ⟨Φ(x)(u,v,:), v̂⟩: a direction in channel space (Lucid's ``direction``, e.g. a
    concept activation vector), v̂ = v/‖v‖. vector: D (or N×D, one per problem); shape: one problem's features
    D×h×w or D."""
    v = vector.detach().float()
    if v.ndim == 1:
        v = v[None]
    d = shape[0]
    if v.ndim != 2 or v.shape[1] != d:
        raise PreimageError(f"the direction has {v.shape[-1]} entries, the layer has {d} channels")
    if not bool(torch.isfinite(v).all()) or not bool((v.norm(dim=1) > 0).all()):
        raise PreimageError("the direction must be a finite, non-zero vector")
    v = v / v.norm(dim=1, keepdim=True)
    area = math.prod(shape[1:]) if len(shape) > 1 else 1
    return InnerProduct(weight * v.view(v.shape[0], d, *([1] * (len(shape) - 1))) / area)


def load_direction(path: str) -> torch.Tensor:
    """A direction vector from a ``.npy`` file (D values, or N×D), or a clear error."""
    import numpy as np

    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PreimageError(f"direction file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise PreimageError(f"cannot read direction file {path} (need a .npy array): {e.__class__.__name__}") from None
    if a.dtype.kind not in "fiu" or a.ndim not in (1, 2) or a.size == 0:
        raise PreimageError(f"direction file {path} must hold a numeric vector (D) or matrix (N×D), got "
                            f"{a.dtype} {a.shape}")
    return torch.from_numpy(a.astype("float32"))


def gram(features: torch.Tensor) -> torch.Tensor:
    """Normalized Gram matrices of N×D×h×w features: N×D×D, each of unit Frobenius norm (Lucid's diversity)."""
    f = features.flatten(2)
    g = f @ f.transpose(1, 2)
    return F.normalize(g.flatten(1), dim=1).view_as(g)


class Diversity(Term):
    """A penalty on the similarity of restarts (Lucid's ``diversity``): for problem i, Σ_{j≠i in its group}
    ⟨G_i, G_j⟩ with G the normalized Gram matrix of the features (at Φ, or at ``layer`` of the network).

    groups: N group ids (problems of one group are restarts of one unit; default: all one group). Minimizing it
    pushes the restarts apart. With k views per problem, view j of each problem is compared with view j of the
    others and the k values are averaged."""

    def __init__(self, groups: torch.Tensor | None = None, layer: str | None = None) -> None:
        self.groups = groups
        self.layer = layer
        self._tapped: torch.Tensor | None = None

    @contextlib.contextmanager
    def watching(self, rep: nn.Module) -> Iterator[None]:
        if self.layer is None:
            yield
            return
        net = rep.net if hasattr(rep, "net") else rep
        mods = dict(net.named_modules())
        if self.layer not in mods:
            raise PreimageError(f"unknown layer '{self.layer}' for the diversity term")

        def hook(_m: nn.Module, _a: tuple, out: torch.Tensor) -> None:
            self._tapped = out

        handle = mods[self.layer].register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return self.views(phi, phi.shape[0])

    def views(self, phi: torch.Tensor, n: int) -> torch.Tensor:
        feats = phi
        if self.layer is not None:
            if self._tapped is None:
                raise PreimageError(f"the diversity layer '{self.layer}' is not reached before the target layer")
            feats, self._tapped = self._tapped, None
        if feats.ndim != 4:
            raise PreimageError("the diversity term needs a layer with a spatial map (N×D×h×w); name one with "
                                "diversity@LAYER")
        groups = torch.zeros(n, dtype=torch.long) if self.groups is None else self.groups
        same = (groups.view(-1, 1) == groups.view(1, -1)).to(feats) - torch.eye(n).to(feats)
        out = []
        for chunk in feats.float().split(n):
            g = gram(chunk).flatten(1)
            out.append(((g @ g.T) * same).sum(1))
        return torch.stack(out).mean(0)


#: Terms of ``--objective``: the units' response and a direction (maximized), Lucid's diversity (a penalty).
OBJECTIVE_TERMS = ("unit", "direction", "diversity")


def parse_objective(spec: str) -> list[tuple[float, str, str | None]]:
    """``"unit + 0.5*direction:cav.npy + 100*diversity@blocks.3"`` → [(1.0, "unit", None), (0.5, "direction",
    "cav.npy"), (100.0, "diversity", "blocks.3")]: terms joined by `` + `` or `` - `` (spaces around), each
    ``[W*]NAME``, with a file after ``direction:`` and an optional layer after ``diversity@``."""
    import re

    pieces = re.split(r"\s+([+-])\s+", spec.strip())
    out: list[tuple[float, str, str | None]] = []
    for sign, term in zip(["+"] + pieces[1::2], pieces[0::2], strict=True):
        if term.startswith("-"):
            sign, term = ("+" if sign == "-" else "-"), term[1:]
        m = re.fullmatch(r"(?:([0-9.]+(?:[eE][+-]?[0-9]+)?)\*)?(unit|direction:(.+)|diversity(?:@(.+))?)", term)
        try:
            w = float(m.group(1)) if m and m.group(1) else 1.0
        except ValueError:
            m = None
        if m is None:
            raise PreimageError(f"bad --objective '{spec}': write terms W*unit, W*direction:FILE.npy, W*diversity "
                                "or W*diversity@LAYER joined by ' + ' or ' - '")
        name = m.group(2).split(":")[0].split("@")[0]
        out.append((-w if sign == "-" else w, name, m.group(3) or m.group(4)))
    return out
