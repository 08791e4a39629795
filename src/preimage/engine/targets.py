"""What users ask to maximize: objective objects that compose, and the strings that are shorthand for them.

    Channel("blocks.4", 5)                  the mean of channel 5's map (Lucid's convention; "blocks.4:5")
    Neuron("blocks.4", 5)                   its centre neuron (the paper's; "neuron:blocks.4:5")
    Class(25)                               class 25's logit (the model's classifier layer; "class:25")
    LogProb(25)                             its log-probability, log softmax(logits)₂₅ ("logprob:25")
    Direction("blocks.4", v)                the mean of ⟨Φ(u,v,:), v̂⟩ over the map ("direction:blocks.4:cav.npy")
    Diversity("blocks.3")                   Lucid's penalty on the restarts' similarity ("diversity@blocks.3")
    Concept(dictionary, 3)                  concept 3 of a dictionary (SAE/NMF) on its layer, at the map's centre
    Channel("l", 5) - 0.5 * Channel("l", 7) + 100 * Diversity()     a weighted sum

Objects are declarative: a task binds them to the network (``tasks.activation``: the pre-ReLU point of each
layer, the paper's normalization 10⁴/(ρ²·M_c), the map's shape) and gets the data term of ``objectives``. Every
objective has a ``spec()``: its canonical shorthand, which parses back to an equal objective and names it in
results, keys and seeds. A string with a range (``"layer2:0-7"``) or a list (``"blocks.4:3,5,7"``) stands for
several objectives, one picture each.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PreimageError

#: How ``"layer:unit"`` is read when it names no kind: the channel (the whole map's mean), as Lucid and Lucent do.
DEFAULT_KIND = "channel"


class Objective:
    """What to maximize (a weighted sum of atoms); composes with ``+``, ``-``, ``*`` and unary ``-``."""

    def terms(self) -> list[tuple[float, Atom]]:
        """The weighted atoms of the sum."""
        raise NotImplementedError

    def spec(self) -> str:
        """The canonical shorthand (parses back to an equal objective)."""
        return " + ".join(_weighted(w, a.spec()) for w, a in self.terms()).replace("+ -", "- ")

    @property
    def label(self) -> str:
        """A short caption for pictures."""
        return self.spec()

    def atoms(self) -> list[Atom]:
        return [a for _, a in self.terms()]

    def __add__(self, other: Objective) -> Combination:
        if not isinstance(other, Objective):
            return NotImplemented
        return Combination(self.terms() + other.terms())

    def __sub__(self, other: Objective) -> Combination:
        if not isinstance(other, Objective):
            return NotImplemented
        return Combination(self.terms() + [(-w, a) for w, a in other.terms()])

    def __mul__(self, w: float) -> Combination:
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            return NotImplemented
        return Combination([(float(w) * v, a) for v, a in self.terms()])

    __rmul__ = __mul__

    def __neg__(self) -> Combination:
        return self * -1.0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Objective) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(self.spec())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"


def _weighted(w: float, spec: str) -> str:
    return spec if w == 1 else f"-{spec}" if w == -1 else f"{w:g}*{spec}"


class Atom(Objective):
    """One term of an objective, read at one layer (None: the model's classifier or output)."""

    layer: str | None = None

    def terms(self) -> list[tuple[float, Atom]]:
        return [(1.0, self)]


class Combination(Objective):
    """Σ wᵢ·atomᵢ (equal atoms merged, zero weights dropped)."""

    def __init__(self, terms: Sequence[tuple[float, Atom]]) -> None:
        merged: dict[str, list] = {}
        for w, a in terms:
            if a.spec() in merged:
                merged[a.spec()][0] += w
            else:
                merged[a.spec()] = [w, a]
        self._terms = [(w, a) for w, a in merged.values() if w != 0]
        if not self._terms:
            raise PreimageError("the objective's terms cancel out: nothing to maximize", param="target")

    def terms(self) -> list[tuple[float, Atom]]:
        return list(self._terms)


def _check_unit(unit: object) -> int:
    if not isinstance(unit, (int, np.integer)) or isinstance(unit, bool) or unit < 0:
        raise PreimageError(f"a unit is a channel index (an integer ≥ 0), got {unit!r}", param="target")
    return int(unit)


def _check_layer(layer: object) -> str:
    if not isinstance(layer, str) or not layer.strip() or any(c in layer for c in ":@*"):
        raise PreimageError(f"a layer is a module name (see preimage.layers(model)), got {layer!r}", param="target")
    return layer.strip()


class Channel(Atom):
    """The mean of channel ``unit``'s response over the layer's map (pre-ReLU; for a token output the patch grid,
    or with ``token`` a prefix token's channel: "cls", "dist", "reg0" or an index)."""

    kind = "channel"

    def __init__(self, layer: str, unit: int, token: str | None = None) -> None:
        self.layer, self.unit, self.token = _check_layer(layer), _check_unit(unit), token

    def spec(self) -> str:
        return f"{self.kind}:{self.layer}:{self.unit}" + (f"@{self.token}" if self.token is not None else "")

    @property
    def label(self) -> str:
        return f"{self.layer} {self.kind} {self.unit}" + (f" ({self.token})" if self.token is not None else "")


class Neuron(Channel):
    """Channel ``unit``'s centre neuron of the layer's map (the paper's activation maximization)."""

    kind = "neuron"


class Class(Atom):
    """Class ``index``'s logit: the model's classifier layer (or ``layer``)."""

    def __init__(self, index: int, layer: str | None = None) -> None:
        self.index = _check_unit(index)
        self.layer = None if layer is None else _check_layer(layer)

    def spec(self) -> str:
        return f"class:{self.index}" if self.layer is None else f"class:{self.layer}:{self.index}"

    @property
    def label(self) -> str:
        return f"class {self.index}"


class LogProb(Class):
    """Class ``index``'s log-probability: the log-softmax of the classifier layer's logits (or ``layer``'s).
    Raising it lowers the other classes too, so the picture becomes the network's top-1 where the logit alone
    often raises its rivals with it (benchmarks/results/objective_sizes.md); it transfers less well to another
    network than the logit (benchmarks/results/transfer.md), which is why ``Class`` stays the default."""

    def spec(self) -> str:
        return f"logprob:{self.index}" if self.layer is None else f"logprob:{self.layer}:{self.index}"

    @property
    def label(self) -> str:
        return f"log p(class {self.index})"


class Direction(Atom):
    """The mean over the layer's map of ⟨Φ(u,v,:), v̂⟩, v̂ = vector/‖vector‖ (Lucid's ``direction``; a concept
    activation vector, a probe's weights). vector: D values, or a ``.npy`` file of them."""

    def __init__(self, layer: str, vector: torch.Tensor | np.ndarray | Sequence[float] | str | Path,
                 name: str | None = None) -> None:
        self.layer = _check_layer(layer)
        if isinstance(vector, (str, Path)):
            name = name or str(vector)
            vector = load_direction(str(vector))
        v = torch.as_tensor(np.asarray(vector, dtype=np.float32) if not isinstance(vector, torch.Tensor)
                            else vector.detach().float().cpu())
        if v.ndim != 1 or v.numel() == 0 or not bool(torch.isfinite(v).all()) or float(v.norm()) == 0:
            raise PreimageError("a direction is a finite, non-zero vector of D values (one per channel)",
                                param="target")
        self.vector = v
        self.name = name

    def digest(self) -> str:
        """12 hex digits naming the vector's values."""
        return hashlib.sha1(self.vector.numpy().tobytes()).hexdigest()[:12]

    def spec(self) -> str:
        return f"direction:{self.layer}:{self.name or 'sha1=' + self.digest()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Direction) and self.layer == other.layer and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash((self.layer, self.digest()))

    @property
    def label(self) -> str:
        return f"{self.layer} direction {Path(self.name).stem if self.name else self.digest()[:6]}"


class Diversity(Atom):
    """Lucid's penalty on the similarity of the restarts of each objective (their Gram matrices at ``layer``; None:
    the layer of the objective's other terms). Use it with a positive weight and ``restarts`` > 1."""

    def __init__(self, layer: str | None = None) -> None:
        self.layer = None if layer is None else _check_layer(layer)

    def spec(self) -> str:
        return "diversity" + (f"@{self.layer}" if self.layer else "")


class Concept(Atom):
    """Concept ``k`` of a dictionary (``representations.dictionary``: an SAE or NMF on a layer's channels): the
    encoder's pre-activation x·Wₑ[k] + bₑ[k] of the layer's features x, at the map's centre position
    (``position="centre"``, as the paper's neuron) or averaged over positions (``"mean"``). It is read on the
    layer's output (the features the dictionary was trained on; a token output's patch grid), linear in them,
    and normalized as a unit is, by the concept's natural maximum (``Dictionary.concept_max``)."""

    POSITIONS = ("centre", "mean")

    def __init__(self, dictionary: Any, k: int, position: str = "centre", layer: str | None = None) -> None:
        from ..representations.dictionary import Dictionary

        if not isinstance(dictionary, Dictionary):
            raise PreimageError(f"Concept needs a Dictionary (preimage.concepts.train or preimage.concepts.load), "
                                f"got {type(dictionary).__name__}", param="target")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < dictionary.k:
            raise PreimageError(f"concept {k!r} is out of range: the dictionary has {dictionary.k} concepts "
                                f"(0–{dictionary.k - 1})", param="target")
        if position not in self.POSITIONS:
            raise PreimageError(f"position must be centre or mean, got {position!r}", param="position")
        layer = layer if layer is not None else dictionary.layer
        if layer is None:
            raise PreimageError("the dictionary does not name its layer: give Concept(dictionary, k, layer=...)",
                                param="layer")
        self.dictionary, self.k, self.position = dictionary, int(k), position
        self.layer = _check_layer(layer)

    def spec(self) -> str:
        return (f"concept:{self.layer}:{self.dictionary.digest()}:{self.k}"
                + ("" if self.position == "centre" else f"@{self.position}"))

    @property
    def label(self) -> str:
        return f"{self.layer} concept {self.k}" + ("" if self.position == "centre" else " (mean)")

    def value(self, phi: torch.Tensor) -> torch.Tensor:
        """The concept's pre-activation per problem, N, on features N×D×h×w (centre or mean) or N×D."""
        w = self.dictionary.encoder.weight[self.k].to(phi)
        b = self.dictionary.encoder.bias[self.k].to(phi)
        if phi.ndim == 4:
            if self.position == "centre":
                phi = phi[:, :, (phi.shape[2] - 1) // 2, (phi.shape[3] - 1) // 2]
            else:
                return torch.einsum("ndhw,d->nhw", phi, w).flatten(1).mean(1) + b
        return phi @ w + b


def load_direction(path: str) -> torch.Tensor:
    """A direction vector from a ``.npy`` file (D values), or a clear error."""
    p = Path(path)
    if not p.is_file():
        raise PreimageError(f"direction file not found: {path}", param="target")
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise PreimageError(f"cannot read direction file {path} (need a .npy array): {_short(e)}",
                            param="target") from None
    if a.dtype.kind not in "fiu" or a.ndim != 1 or a.size == 0:
        raise PreimageError(f"direction file {path} must hold a numeric vector of D values, got {a.dtype} "
                            f"{a.shape}", param="target")
    return torch.from_numpy(a.astype("float32"))


def _short(e: BaseException) -> str:
    from ..images import short_error

    return short_error(e)


# --- strings ------------------------------------------------------------------------------------------------------

_TERM = re.compile(r"(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\*)?(?P<t>\S+)")


def parse_units(spec: str) -> list[int]:
    """``"3"``, ``"3,5,7"`` or ranges ``"0-24"`` (inclusive) → unit indices (at most 100 000); a clear error
    otherwise."""
    units: list[int] = []
    try:
        for part in (p.strip() for p in str(spec).split(",")):
            if not part:
                continue
            a, dash, b = part.partition("-")
            if dash and a:
                lo, hi = int(a), int(b)
                if hi < lo or lo < 0:
                    raise ValueError
                if hi - lo >= 100_000 or len(units) + hi - lo >= 100_000:
                    raise PreimageError(f"units are at most 100000 at once; got {spec!r} ({len(units) + hi - lo + 1} "
                                        "units)", param="target")
                units.extend(range(lo, hi + 1))
            else:
                u = int(part)
                if u < 0:
                    raise ValueError
                units.append(u)
    except PreimageError:  # the specific reason (too many), not the generic line below
        raise
    except ValueError:
        raise PreimageError(f"units are indices like 3, 3,5,7 or 0-24; got {spec!r}", param="target") from None
    if not units:
        raise PreimageError("give at least one unit index", param="target")
    if len(set(units)) != len(units):
        raise PreimageError(f"a unit is named twice in {spec!r}", param="target")
    return units


def _atoms(term: str, kind: str) -> list[Atom]:
    """One term of a spec (no weight) → its atoms (several for a unit range)."""
    head, _, rest = term.partition(":")
    if head in ("class", "logprob") and rest:
        layer, _, idx = rest.rpartition(":")
        return [(LogProb if head == "logprob" else Class)(u, layer or None) for u in parse_units(idx)]
    if head == "concept":
        raise PreimageError("a concept target needs its dictionary: use preimage.Concept(dictionary, k) "
                            "(preimage.concepts.train or preimage.concepts.load)", param="target")
    if head == "direction":
        layer, _, file = rest.partition(":")
        if not layer or not file:
            raise PreimageError(f"a direction is direction:LAYER:FILE.npy, got {term!r}", param="target")
        return [Direction(layer, file)]
    if head.startswith("diversity"):
        name, _, layer = (head + (":" + rest if rest else "")).replace("diversity:", "diversity@").partition("@")
        if name != "diversity":
            raise ValueError(term)
        return [Diversity(layer or None)]
    if head in ("channel", "neuron"):
        kind, term = head, rest
    body, _, token = term.partition("@")
    layer, sep, units = body.rpartition(":")
    if not sep or not layer:
        raise ValueError(term)
    cls = Neuron if kind == "neuron" else Channel
    return [cls(layer, u, token or None) for u in parse_units(units)]


def parse_target(spec: str | Objective | Sequence[str | Objective], *, kind: str = DEFAULT_KIND,
                 unit: Sequence[Objective] | None = None) -> list[Objective]:
    """Objectives from objects or shorthand strings; one picture each.

    A string is a term or a weighted sum of terms joined by `` + `` or `` - ``: ``[W*]LAYER:UNITS[@TOKEN]`` (the
    ``kind`` of unit: channel by default), ``channel:LAYER:U``, ``neuron:LAYER:U``, ``class:C`` (or
    ``class:LAYER:C``), ``logprob:C``, ``direction:LAYER:FILE.npy``, ``diversity`` or ``diversity@LAYER``; and,
    for the command line's ``--objective``, ``unit`` for each of ``unit``'s objectives. UNITS may be a list or a
    range (``3,5,7``, ``0-7``) in a lone term: one objective per unit. A list of strings and objects gives all
    of theirs."""
    if isinstance(spec, Objective):
        return [spec]
    if not isinstance(spec, str):
        try:
            items = list(spec)
        except TypeError:
            raise PreimageError(f"target must be a string such as 'blocks.4:5' or an objective such as "
                                f"preimage.Channel('blocks.4', 5), got {type(spec).__name__}", param="target") from None
        out = [o for item in items for o in parse_target(item, kind=kind, unit=unit)]
        if not out:
            raise PreimageError("give at least one target", param="target")
        return out
    if kind not in ("channel", "neuron"):
        raise PreimageError(f"unknown kind {kind!r} (choose channel or neuron)", param="mode")
    text = spec.strip()
    if not text:
        raise PreimageError("the target is empty; give one such as 'blocks.4:5' or 'class:25'", param="target")
    pieces = re.split(r"\s+([+-])\s+", text)
    # 'a+b' reads as one layer named 'a+b': say how to join terms ('+' may be in an exponent or a file name)
    if any(re.search(r"(?<![eE])\+", p.lstrip("+")) and "direction:" not in p for p in pieces):
        raise PreimageError(f"cannot read the target {spec!r}: join terms with ' + ' or ' - ', spaces around the "
                            "sign (e.g. 'blocks.4:3 + class:5')", param="target")
    groups: list[list[tuple[float, Atom]]] = []
    for sign, piece in zip(["+"] + pieces[1::2], pieces[0::2], strict=True):
        if piece.startswith("-"):
            sign, piece = ("+" if sign == "-" else "-"), piece[1:]
        m = _TERM.fullmatch(piece)
        try:
            if m is None:
                raise ValueError(piece)
            w = (float(m.group("w")) if m.group("w") else 1.0) * (-1 if sign == "-" else 1)
            t = m.group("t")
            if t == "unit":
                if not unit:
                    raise PreimageError("'unit' in an objective stands for the --unit targets: give --unit",
                                        param="target")
                groups.append([(w, a) for o in unit for _, a in o.terms()] if len(pieces) == 1 else
                              [(w, a) for o in unit[:1] for _, a in o.terms()])
                if len(pieces) > 1 and len(unit) > 1:
                    return [_sum_with(o, spec, kind, unit_term=True) for o in unit]
                continue
            groups.append([(w, a) for a in _atoms(t, kind)])
        except PreimageError:
            raise
        except ValueError:
            raise PreimageError(f"cannot read the target {spec!r}: write LAYER:UNIT (e.g. blocks.4:5), "
                                "channel:LAYER:U, neuron:LAYER:U, class:C, logprob:C, direction:LAYER:FILE.npy or "
                                "diversity@LAYER, weighted as W*TERM and joined by ' + ' or ' - '",
                                param="target") from None
    if len(groups) == 1:
        return [a if w == 1 else Combination([(w, a)]) for w, a in groups[0]]
    if any(len(g) > 1 for g in groups):
        raise PreimageError(f"a unit list or range cannot be part of a sum: {spec!r}", param="target")
    return [Combination([g[0] for g in groups])]


def _sum_with(unit: Objective, spec: str, kind: str, unit_term: bool) -> Objective:
    """``spec`` with its ``unit`` term standing for one of the --unit objectives."""
    (o,) = parse_target(spec, kind=kind, unit=[unit])
    return o


def is_logit(atom: Atom) -> bool:
    """Whether an atom reads class scores (a ``Class``)."""
    return isinstance(atom, Class)
