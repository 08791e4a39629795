"""Measures of a concept dictionary (``representations/dictionary.py``) on a layer's activation rows.

* reconstruction r² = 1 − Σ‖x − x̂‖² / Σ‖x − μ‖², μ the per-channel mean of the rows: the fraction of the
  activations' variance the dictionary explains (``overcomplete``'s ``r2_score`` subtracts one scalar mean for
  all channels instead, which counts the channel means as explained and reads higher);
* mean L0: concepts active (code > 0) per row; dead concepts: never active over the data;
* stability: two dictionaries' atoms matched one-to-one by the Hungarian algorithm on cosine similarity
  (``scipy.optimize.linear_sum_assignment``); the mean matched cosine is 1 − ``overcomplete``'s
  ``cosine_hungarian_loss`` / K;
* selectivity of a concept's picture: its activation ÷ the mean activation of the other concepts on it.

Rows are M×D (positions or tokens as rows); ``ConceptStats`` accumulates in float64 so a folder streams through
in batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import PreimageError
from ..representations.dictionary import Dictionary


class ConceptStats:
    """Streaming reconstruction r², mean L0 and per-concept activity over batches of rows."""

    def __init__(self, k: int, d: int) -> None:
        self.rows = 0
        self.sq_err = 0.0
        self.sum = torch.zeros(d, dtype=torch.float64)
        self.sum_sq = 0.0
        self.active = torch.zeros(k, dtype=torch.float64)  # rows in which each concept fires
        self.code_sum = torch.zeros(k, dtype=torch.float64)
        self.pre_max = torch.full((k,), -torch.inf, dtype=torch.float64)

    def update(self, rows: torch.Tensor, codes: torch.Tensor, recon: torch.Tensor,
               pre: torch.Tensor | None = None) -> None:
        """rows, recon: M×D; codes: M×K; pre: the encoder's pre-activations M×K (for each concept's maximum)."""
        x = rows.detach().double().cpu()
        self.code_sum += codes.detach().double().cpu().sum(0)
        if pre is not None and pre.shape[0]:
            self.pre_max = torch.maximum(self.pre_max, pre.detach().double().cpu().amax(0))
        self.rows += x.shape[0]
        self.sq_err += float((x - recon.detach().double().cpu()).pow(2).sum())
        self.sum += x.sum(0)
        self.sum_sq += float(x.pow(2).sum())
        self.active += (codes.detach().cpu() > 0).double().sum(0)

    @property
    def r2(self) -> float:
        """1 − SSE / total sum of squares about the per-channel mean."""
        if self.rows == 0:
            return float("nan")
        total = self.sum_sq - float(self.sum.pow(2).sum()) / self.rows
        return 1.0 - self.sq_err / max(total, 1e-30)

    @property
    def l0(self) -> float:
        """Mean number of active concepts per row."""
        return float(self.active.sum()) / max(self.rows, 1)

    @property
    def dead(self) -> torch.Tensor:
        """K booleans: concepts never active."""
        return self.active == 0

    def figures(self) -> dict[str, Any]:
        """r2, l0, dead (count), dead_fraction, rows."""
        dead = int(self.dead.sum())
        n = max(self.rows, 1)
        out = {"r2": self.r2, "l0": self.l0, "dead": dead, "dead_fraction": dead / self.active.numel(),
               "rows": self.rows, "frequency": (self.active / n).tolist(), "mean_code": (self.code_sum / n).tolist()}
        if bool(torch.isfinite(self.pre_max).all()):
            out["concept_max"] = self.pre_max.tolist()
        return out


@torch.no_grad()
def measure(dictionary: Dictionary, rows: torch.Tensor, batch: int = 8192) -> dict[str, Any]:
    """r2, l0, dead, dead_fraction, rows, and per concept frequency (share of rows where it fires), mean_code
    and concept_max (largest pre-activation) of a dictionary on rows M×D (in batches of ``batch`` rows)."""
    stats = ConceptStats(dictionary.k, dictionary.d)
    dev = dictionary.encoder.weight.device
    for chunk in rows.split(batch):
        x = chunk.to(dev, torch.float32)
        pre = dictionary.pre_rows(x)
        z = dictionary.sparsify(pre, x)
        stats.update(x, z, dictionary.decode_rows(z), pre)
    return stats.figures()


def r2_score(rows: torch.Tensor, recon: torch.Tensor) -> float:
    """Reconstruction r² of rows M×D by recon M×D (per-channel mean as the baseline)."""
    x, r = rows.double(), recon.double()
    total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-30)
    return float(1 - (x - r).pow(2).sum() / total)


def matched_cosine(a: torch.Tensor, b: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Atoms a: K×D and b: K'×D matched one-to-one (Hungarian, maximal total cosine).

    Returns (mean matched cosine over min(K, K') pairs, the matched cosines, index into b for each matched row
    of a; rows of a left unmatched when K > K' get −1).
    """
    from scipy.optimize import linear_sum_assignment

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise PreimageError(f"atoms must be K×D with the same D, got {list(a.shape)} and {list(b.shape)}")
    an = torch.nn.functional.normalize(a.detach().double().cpu(), dim=1)
    bn = torch.nn.functional.normalize(b.detach().double().cpu(), dim=1)
    cos = (an @ bn.T).numpy()
    rows, cols = linear_sum_assignment(-cos)
    match = torch.full((a.shape[0],), -1, dtype=torch.long)
    match[torch.from_numpy(rows)] = torch.from_numpy(cols)
    vals = torch.from_numpy(np.asarray(cos[rows, cols]))
    return float(vals.mean()), vals, match


def stability(first: Dictionary, second: Dictionary) -> float:
    """Mean Hungarian-matched cosine of two dictionaries' atoms (e.g. trained with two seeds): 1 = the same
    concepts up to order."""
    return matched_cosine(first.atoms, second.atoms)[0]


def selectivity(codes: torch.Tensor, k: int, position: str = "mean") -> torch.Tensor:
    """Concept k's activation on each picture ÷ the mean activation of the other concepts on it: N values.

    codes: N×K, N×K×h×w (concepts on axis 1) or N×T×K (tokens) — ``Dictionary.encode`` of the pictures'
    features; position: ``mean`` pools over positions/tokens, ``centre`` reads the centre position (maps),
    ``max`` takes each concept's maximum. inf where the other concepts are all silent and k is not, 0 where all are.
    """
    if codes.ndim == 3:
        codes = codes.transpose(1, 2)  # N×T×K → N×K×T
    if codes.ndim not in (2, 3, 4):
        raise PreimageError(f"codes must be N×K, N×K×h×w or N×T×K, got shape {list(codes.shape)}")
    kk = codes.shape[1]
    if not 0 <= k < kk:
        raise PreimageError(f"concept {k} out of range: the dictionary has {kk} concepts (0–{kk - 1})")
    if codes.ndim == 2:
        pooled = codes
    elif position == "mean":
        pooled = codes.flatten(2).mean(2)
    elif position == "max":
        pooled = codes.flatten(2).amax(2)
    elif position == "centre" and codes.ndim == 4:
        pooled = codes[:, :, codes.shape[2] // 2, codes.shape[3] // 2]
    else:
        raise PreimageError(f"unknown position '{position}' for codes of shape {list(codes.shape)} "
                            "(mean, max; centre for maps)")
    pooled = pooled.double()
    own = pooled[:, k]
    others = (pooled.sum(1) - own) / max(kk - 1, 1)
    return torch.where(others > 0, own / others.clamp_min(1e-300),
                       torch.where(own > 0, torch.inf, 0.0)).to(codes.dtype)
