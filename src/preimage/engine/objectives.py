"""Data terms of the energy (docs/paper-notes.md §1.2–1.4 and Lucid's objectives): tensor functions that map
features N×... → N values, one per problem. What users name (``Channel("blocks.4", 5)``, ``"classifier:25"``) is
in ``targets``; a task binds it to these terms.

Terms compose: ``a + b``, ``w * a``, ``a - w * b`` give a ``Sum`` (weighted terms). A transform that makes k views
of each problem gives k·N feature rows (crop-major); ``views(phi, n)`` turns them into N values (by default the
mean of the term over the k views). A term that reads another point of the network than Φ's output does so
through a ``Tap``, hooked inside ``watching(rep)``. ``select(rows)`` gives the term of some problems only, so that
each problem can be optimized on its own (``optimize``); ``groups(n)`` says which problems a term couples
(``Diversity``: the restarts of one target), so that they stay together.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError
from ..images import short_error

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

    def select(self, rows: torch.Tensor) -> Term:
        """The term of the problems ``rows`` (an index vector) only."""
        return self

    def groups(self, n: int) -> torch.Tensor | None:
        """N group ids of problems this term couples (they must be optimized together), or None."""
        return None

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

    def select(self, rows: torch.Tensor) -> Sum:
        return Sum([(w, t.select(rows)) for w, t in self.terms])

    def groups(self, n: int) -> torch.Tensor | None:
        return next((g for g in (t.groups(n) for _, t in self.terms) if g is not None), None)


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

    def select(self, rows: torch.Tensor) -> Inversion:
        mask = self.mask if self.mask is None or self.mask.shape[0] == 1 else self.mask[rows.to(self.mask.device)]
        r = rows.to(self.target.device)
        return Inversion(self.target[r], self.C[r], mask)


class InnerProduct(Term):
    """−⟨Φ(x), W⟩ per problem: activation maximization (W a normalized one-hot target) and caricature.

    weight: broadcastable to the features N×D×h×w. tap: read the features at another point of the network
    (``Tap``) instead of Φ's output. log_softmax: take the inner product with the log-softmax of N×D features
    (class log-probabilities) instead of the features themselves.
    """

    def __init__(self, weight: torch.Tensor, tap: Tap | None = None, log_softmax: bool = False) -> None:
        self.weight = weight.detach()
        self.tap = tap
        self.log_softmax = log_softmax

    def _read(self, f: torch.Tensor) -> torch.Tensor:
        return f.log_softmax(1) if self.log_softmax else f

    def _features(self, phi: torch.Tensor) -> torch.Tensor:
        return self._read(phi if self.tap is None else self.tap.take())

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return -_flat_sum(self._features(phi) * self.weight)

    def views(self, phi: torch.Tensor, n: int) -> torch.Tensor:
        return super().views(phi, n) if self.tap is None else self._tapped_views(n)

    def _tapped_views(self, n: int) -> torch.Tensor:
        f = self.tap.take()
        return torch.stack([-_flat_sum(self._read(c) * self.weight) for c in f.split(n)]).mean(0)

    def score(self, phi: torch.Tensor) -> torch.Tensor:
        """⟨Φ(x), W⟩, N (the activation reached, or the caricature score)."""
        return _flat_sum(self._features(phi) * self.weight)

    @contextlib.contextmanager
    def watching(self, rep: nn.Module) -> Iterator[None]:
        with self.tap.watching(rep) if self.tap is not None else contextlib.nullcontext():
            yield

    def select(self, rows: torch.Tensor) -> InnerProduct:
        if self.weight.shape[0] == 1:
            return self
        return InnerProduct(self.weight[rows.to(self.weight.device)], self.tap, self.log_softmax)


def caricature(phi0: torch.Tensor) -> InnerProduct:
    """−⟨Φ(x), max(Φ0,0)⟩ / ‖max(Φ0,0)‖², per problem (phi0: N×...)."""
    pos = phi0.detach().clamp_min(0)
    norm2 = _flat_sum(pos.pow(2)).clamp_min(1e-12)
    return InnerProduct(pos / norm2.view(-1, *([1] * (pos.ndim - 1))))


def neighbourhood_mask(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    """0/1 mask 1×D×h×w selecting the central n×n neurons of the map, all channels (docs/paper-notes.md §1.2).
    n must be between 1 and the map's smaller side (a clear error otherwise: an empty or whole-map mask is not a
    neighbourhood)."""
    d, h, w = shape[-3:]
    if not 1 <= n <= min(h, w):
        raise PreimageError(f"a neighbourhood is 1 to {min(h, w)} neurons wide on this {h}×{w} map, got {n}",
                            param="mask")
    mask = torch.zeros(1, d, h, w)
    # MATLAB: s = (0:n−1) + ceil((W−n+1)/2), 1-based.
    y0, x0 = max(math.ceil((h - n + 1) / 2) - 1, 0), max(math.ceil((w - n + 1) / 2) - 1, 0)
    mask[..., y0:y0 + n, x0:x0 + n] = 1
    return mask


def channel_mask(shape: tuple[int, ...], part: str) -> torch.Tensor:
    """0/1 mask 1×D×(h×w) selecting a channel group: ``first-half``, ``second-half`` or ``A:B`` (channels A to B−1,
    0 ≤ A < B ≤ D; a clear error otherwise)."""
    d = shape[-3] if len(shape) >= 3 else shape[-1]
    if part == "first-half":
        a, b = 0, d // 2
    elif part == "second-half":
        a, b = d // 2, d
    else:
        lo, sep, hi = part.partition(":")
        try:
            a, b = int(lo) if lo else 0, int(hi) if hi else d
        except ValueError:
            a, b = -1, -1
        if not sep or not 0 <= a < b <= d:
            raise PreimageError(f"a channel mask is channels:A:B with 0 ≤ A < B ≤ {d} (this layer's channels), "
                                f"first-half or second-half; got channels:{part}", param="mask")
    if b <= a:
        raise PreimageError(f"channels:{part} selects no channel of this {d}-channel layer", param="mask")
    mask = torch.zeros(1, *shape[-3:]) if len(shape) >= 3 else torch.zeros(1, d)
    mask[:, a:b] = 1
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
        raise PreimageError(f"the direction has {v.shape[-1]} entries, the layer has {d} channels", param="target")
    if not bool(torch.isfinite(v).all()) or not bool((v.norm(dim=1) > 0).all()):
        raise PreimageError("the direction must be a finite, non-zero vector", param="target")
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
        raise PreimageError(f"cannot read direction file {path} (need a .npy array): {short_error(e)}") from None
    if a.dtype.kind not in "fiu" or a.ndim not in (1, 2) or a.size == 0:
        raise PreimageError(f"direction file {path} must hold a numeric vector (D) or matrix (N×D), got "
                            f"{a.dtype} {a.shape}")
    return torch.from_numpy(a.astype("float32"))


def gram(features: torch.Tensor) -> torch.Tensor:
    """Normalized Gram matrices of N×D×h×w features: N×D×D, each of unit Frobenius norm (Lucid's diversity)."""
    f = features.flatten(2)
    g = f @ f.transpose(1, 2)
    return F.normalize(g.flatten(1), dim=1).view_as(g)


class Tap:
    """What passes through one point of the network during Φ's forward pass (a module's output, or its first input
    with ``at_input``: the pre-activation of a ReLU module), read by terms on other layers than Φ's.

    ``view``: how the raw value becomes features (token outputs as maps: a ``Representation.as_view``)."""

    def __init__(self, module: str, at_input: bool = False,
                 view: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.module, self.at_input, self.view = module, at_input, view
        self._value: torch.Tensor | None = None

    @contextlib.contextmanager
    def watching(self, rep: nn.Module) -> Iterator[None]:
        net = rep.net if hasattr(rep, "net") else rep
        mods = dict(net.named_modules())
        if self.module not in mods:
            raise PreimageError(f"unknown layer '{self.module}'", param="layer")

        def hook(_m: nn.Module, args: tuple, out: object = None) -> None:
            value = args[0] if self.at_input else out
            if isinstance(value, torch.Tensor):
                self._value = value if self.view is None else self.view(value)

        m = mods[self.module]
        handle = m.register_forward_pre_hook(hook) if self.at_input else m.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
            self._value = None

    def take(self) -> torch.Tensor:
        """The value seen in the last forward pass (an error when the point was not reached before Φ's end)."""
        if self._value is None:
            raise PreimageError(f"layer '{self.module}' is not reached before the target layer: put the deeper "
                                "layer's term first or choose another layer", param="target")
        return self._value


class Diversity(Term):
    """A penalty on the similarity of restarts (Lucid's ``diversity``): for problem i, Σ_{j≠i in its group}
    ⟨G_i, G_j⟩ with G the normalized Gram matrix of the features (at Φ, or at a ``Tap``).

    groups: N group ids (problems of one group are restarts of one target; default: all one group); weight: N
    weights (problems without the term have 0). Minimizing it pushes the restarts apart. With k views per
    problem, view j of each problem is compared with view j of the others and the k values are averaged."""

    def __init__(self, groups: torch.Tensor | None = None, tap: Tap | None = None,
                 weight: torch.Tensor | None = None) -> None:
        self.groups_ = groups
        self.tap = tap
        self.weight = weight

    @contextlib.contextmanager
    def watching(self, rep: nn.Module) -> Iterator[None]:
        with self.tap.watching(rep) if self.tap is not None else contextlib.nullcontext():
            yield

    def select(self, rows: torch.Tensor) -> Diversity:
        return Diversity(None if self.groups_ is None else self.groups_[rows.cpu()], self.tap,
                         None if self.weight is None else self.weight[rows.to(self.weight.device)])

    def groups(self, n: int) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.long) if self.groups_ is None else self.groups_

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return self.views(phi, phi.shape[0])

    def views(self, phi: torch.Tensor, n: int) -> torch.Tensor:
        feats = phi if self.tap is None else self.tap.take()
        if feats.ndim != 4:
            raise PreimageError("the diversity term needs a layer with a spatial map (N×D×h×w); give one with "
                                "Diversity(layer)", param="target")
        groups = self.groups(n)
        same = (groups.view(-1, 1) == groups.view(1, -1)).to(feats) - torch.eye(n).to(feats)
        out = []
        for chunk in feats.float().split(n):
            g = gram(chunk).flatten(1)
            out.append(((g @ g.T) * same).sum(1))
        value = torch.stack(out).mean(0)
        return value if self.weight is None else value * self.weight.to(value)
