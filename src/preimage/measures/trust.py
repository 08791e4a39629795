"""Trust measures: evidence that a feature visualization shows what the unit responds to in natural images.

Feature visualizations can lie: Geirhos et al. ("Don't trust your eyes", ICML 2024) add a circuit that swaps a
unit's visualization for any picture while the network's behaviour on natural images is unchanged, and find
that visualizations are often processed along other paths than natural images. Each measure here compares a
picture (a pre-image of a unit) with the unit's **exemplars** (its top natural images, cropped around where the
unit responds most, at the picture's size) against a **baseline** (random crops of other natural images), so
that each number has a scale. All are batch-first: N pictures, one value each.

* ``path_similarity``: how alike the network processes the picture and the exemplars, layer by layer up to the
  target (Geirhos et al.'s sanity check). Per layer, the spatially pooled activations (one value per channel,
  standardized by the natural crops' mean and std) are compared by cosine: is the picture closer to the
  unit's exemplars than to random natural images, S(pic, ex) − S(pic, random), averaged over layers, and by
  how much compared with an exemplar's own margin, S(ex, other ex) − S(ex, random)? Reported: their ratio,
  1 = as much as an exemplar, 0 = no closer to the exemplars than to any photo, < 0 = closer to random photos
  (NaN where exemplars are no closer to each other than to random photos).
  Can tell: the picture excites the lower layers unlike the unit's natural stimuli (a different path).
  Cannot tell: whether a picture processed like the exemplars is a good *picture* of them (two images can share
  pooled statistics and look unalike), nor anything about units whose exemplars are no more alike than random
  photos.
* ``plausibility``: the picture's distance to its nearest exemplar in the network's own feature space (the
  target layer's pooled activations without the target unit itself, standardized; cosine distance), as
  d_base / d_pic with d_base the median distance of random natural images to their nearest exemplar: 1 = as
  close as a typical photo, > 1 closer, < 1 farther. Can tell: the rest of the layer sees something no
  exemplar shows. Cannot tell: anything at the unit itself (left out on purpose, the natural range covers it);
  with few exemplars the nearest one is a noisy estimate.
* ``natural_range``: the picture's peak response at the unit (max over positions) as a multiple of the unit's
  maximum over the natural images. 1 = the natural maximum; genuine pictures in channel mode reach a few
  times it; one that needs tens of times it is driven along a path no natural image uses. Cannot tell: a lie
  kept within the natural range. ``natural_range_crops``: the same over the maximum of the exemplar and baseline
  crops, which go through the network at the picture's size (like for like for deep units with a global field).
* ``retention``, ``retention_random``: the unit's peak response to the picture mixed half and half with natural
  crops (the unit's exemplars; random crops of other images), as a share of its response to the picture (median
  over the crops). Can tell: a response that exists only while the picture looks synthetic collapses, as in
  Geirhos et al.'s fooling circuits, which route through a detector of natural versus synthetic images. Cannot
  tell: a lie whose trigger survives mixing (a circuit keyed on a pattern, not on "synthetic"); a genuine unit
  whose response is fragile (one exact configuration, or a weak picture whose response is near 0) loses it too.
* ``collapse``: the response lost under mixing, in natural maxima: natural_range × (1 − the mean of the two
  retentions). Small for genuine pictures (they lose part of what they have above the natural range), several
  natural maxima for a picture whose response needs it to look synthetic. The default verdict's measure.
* ``transfer`` (``judge_response``): the same unit of the same layer in another network (a judge), as a
  multiple of the judge's natural maximum; only meaningful where the judge's channels correspond to the
  model's (the same network retrained or fine-tuned, an untouched original): otherwise not applicable.

``verdict(scores, thresholds)`` flags a picture when any measure crosses its threshold and says which.

What the calibration measured (benchmarks/results/trust.md; planted circuits of ``experiments.planted`` against
the same units untouched, natural-style pictures, efficientnet_lite0 blocks.3 and blocks.5 and a random
ResNet-18's layer3): path similarity and plausibility, as defined here, do not separate planted from untouched
units (natural-style pictures of genuine units are already processed unlike photographs, about as much as the
planted ones); the natural range separates them at blocks.3 and the ResNet but not at blocks.5; a threshold on
``retention_random`` chosen on 8 units per layer flagged 3–7 of 16 unseen genuine units; ``collapse`` > 2.2 flagged
15–16 of 16 planted and 0 of 16 genuine units per layer on a holdout split. Neither catches a quiet lie (a plant
whose pictures stay within ~2.7× the natural maximum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: The measures a verdict can use, and the side on which a value is suspicious.
SIDES = {"path_similarity": "<", "plausibility": "<", "natural_range": ">", "natural_range_crops": ">",
         "retention": "<", "retention_random": "<", "collapse": ">"}


@dataclass(frozen=True)
class Threshold:
    """Flag when ``value side limit`` (side ``<`` or ``>``)."""

    side: str
    limit: float

    def crossed(self, v: torch.Tensor) -> torch.Tensor:
        """N values → N booleans (NaN never crosses: the measure does not apply)."""
        hit = v < self.limit if self.side == "<" else v > self.limit
        return hit & ~torch.isnan(v)


def pool(t: torch.Tensor) -> torch.Tensor:
    """A layer's output → one value per channel: N×C×h×w → mean over positions; N×T×C (tokens) → mean over
    tokens; N×C as is. → N×C (float32)."""
    if t.ndim == 4:
        return t.float().mean((2, 3))
    if t.ndim == 3:
        return t.float().mean(1)
    return t.float().flatten(1)


def standardize(f: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """(f − mu)/sd per channel, with sd floored at 1e-3 of its median (dead channels would divide by 0)."""
    floor = sd.median().clamp_min(1e-12) * 1e-3
    return (f - mu) / sd.clamp_min(float(floor))


def _mean_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean cosine between rows: a N×P×C, b N×Q×C → N×P (each a-row against every b-row)."""
    return torch.einsum("npc,nqc->npq", F.normalize(a, dim=-1), F.normalize(b, dim=-1)).mean(2)


def path_scores(pic: Sequence[torch.Tensor], ex: Sequence[torch.Tensor],
                base: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Path similarity from standardized pooled activations, one tensor per layer (same order in each list).

    pic: N×C_l (the pictures); ex: N×K×C_l (each picture's K ≥ 2 exemplars); base: N×B×C_l (random natural
    images per problem). Per layer, mean cosines: the picture to its exemplars (S_pe) and to the random images
    (S_pr), and each exemplar to the other exemplars (S_ee, leave-one-out) and to the random images (S_er);
    averaged over layers. Returns N-vectors: ``path_similarity`` = (S_pe − S_pr)/(S_ee − S_er) (NaN where
    S_ee − S_er ≤ 1e-3): 1 = the picture is as much closer to the exemplars than to random photos as an
    exemplar is, 0 = no closer to them than to random photos; and the parts ``path_picture`` (S_pe − S_pr) and
    ``path_exemplars`` (S_ee − S_er), differences of mean cosines in [−2, 2]."""
    d_pic, d_ex = [], []
    for p, e, b in zip(pic, ex, base, strict=True):
        k = e.shape[1]
        s_pe = _mean_cos(p[:, None], e)[:, 0]
        s_pr = _mean_cos(p[:, None], b)[:, 0]
        en = F.normalize(e, dim=-1)
        gram = torch.einsum("npc,nqc->npq", en, en)
        s_ee = (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (k * (k - 1))
        s_er = _mean_cos(e, b).mean(1)
        d_pic.append(s_pe - s_pr)
        d_ex.append(s_ee - s_er)
    dp, de = torch.stack(d_pic).mean(0), torch.stack(d_ex).mean(0)
    rel = torch.where(de > 1e-3, dp / de.clamp_min(1e-3), torch.full_like(dp, math.nan))
    return {"path_similarity": rel, "path_picture": dp, "path_exemplars": de}


def plausibility_scores(pic: torch.Tensor, ex: torch.Tensor, base: torch.Tensor) -> dict[str, torch.Tensor]:
    """Plausibility from standardized features: pic N×D, ex N×K×D, base N×B×D.

    ``plausibility`` = d_base / d_pic (N), d = cosine distance to the nearest exemplar, d_base its median over
    the baseline images; also ``distance_picture`` (d_pic, in [0, 2]) and ``distance_baseline``."""
    exn = F.normalize(ex, dim=-1)
    d_pic = (1 - torch.einsum("nc,nkc->nk", F.normalize(pic, dim=-1), exn)).amin(1)
    d_base = (1 - torch.einsum("nbc,nkc->nbk", F.normalize(base, dim=-1), exn)).amin(2).median(1).values
    return {"plausibility": d_base / d_pic.clamp_min(1e-6), "distance_picture": d_pic, "distance_baseline": d_base}


def natural_range(peak: torch.Tensor, natural_max: torch.Tensor) -> torch.Tensor:
    """The picture's peak response (N) as a multiple of the unit's natural maximum (N; a maximum ≤ 0, a unit
    never excited by natural images, gives NaN: no scale)."""
    return torch.where(natural_max > 0, peak / natural_max.clamp_min(1e-12), torch.full_like(peak, math.nan))


def retention(blend_peak: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """How much of the picture's response survives mixing it with natural images: blend_peak N×R (the unit's peak
    response to R blends (1 − α)·picture + α·natural crop), peak N (to the picture) → N, the median over R of
    blend_peak / peak (NaN where the picture's peak is not positive: nothing to keep). A response that follows
    the picture's content roughly keeps its share, 1 − α or more (more when the crops are the unit's exemplars);
    one that needs the picture to look synthetic (a detector of natural images in the path, Geirhos et al.'s
    fooling circuits) collapses to what the crop alone gives."""
    ratio = blend_peak / peak.clamp_min(1e-12)[:, None]
    return torch.where(peak > 0, ratio.median(1).values, torch.full_like(peak, math.nan))


def collapse(natural: torch.Tensor, kept_exemplars: torch.Tensor, kept_random: torch.Tensor) -> torch.Tensor:
    """How much response the picture loses when mixed with natural images, in multiples of the unit's natural
    maximum: natural_range × (1 − the mean of the two retentions) = (peak − mean(blend peaks)) / natural max (N
    each → N; NaN where a part is NaN). A genuine picture loses part of what it has above the natural range; one
    whose response exists only while it looks synthetic loses several natural maxima."""
    return natural * (1 - (kept_exemplars + kept_random) / 2)


def judge_response(peak: torch.Tensor, judge_max: torch.Tensor | None) -> torch.Tensor:
    """Transfer for channels: the judge's peak response at the same unit (N) over its natural maximum (N), or
    NaN for every picture when the judge has no such layer (``judge_max`` None: not applicable)."""
    if judge_max is None:
        return torch.full_like(peak, math.nan)
    return natural_range(peak, judge_max)


def verdict(scores: Mapping[str, torch.Tensor], thresholds: Mapping[str, Threshold]) -> tuple[torch.Tensor,
                                                                                            list[str]]:
    """One verdict per picture: (flagged N booleans, reasons N strings; '' when not flagged).

    A picture is flagged when any measure with a threshold crosses it; the reason names each such measure, its
    value and its threshold (``natural_range 37.2 > 8``). A measure missing from ``scores`` is skipped."""
    names = [m for m in thresholds if m in scores]
    n = next(iter(scores.values())).shape[0] if scores else 0
    flagged = torch.zeros(n, dtype=torch.bool)
    reasons: list[list[str]] = [[] for _ in range(n)]
    for m in names:
        th = thresholds[m]
        v = scores[m].detach().float().cpu()
        hit = th.crossed(v)
        flagged |= hit
        for i in torch.nonzero(hit).flatten().tolist():
            reasons[i].append(f"{m} {float(v[i]):.3g} {th.side} {th.limit:g}")
    return flagged, ["; ".join(r) for r in reasons]
