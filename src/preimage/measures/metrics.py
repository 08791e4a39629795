"""How good is a pre-image? The paper's measures (docs/paper-notes.md §3.2) and Dosovitskiy & Brox's image-space error.

All functions take batches: images N×C×H×W in 0–255 units, features N×..., and return one value per problem.

* ``feature_error``: the IJCV error ‖M⊙(Φ(x)−Φ0)‖/‖M⊙Φ0‖ (a fraction; tables show ×100).
* ``image_error``: ‖x−x0‖ / (mean distance between two different images of the set) (Dosovitskiy & Brox 2016).
* ``label_agreement``: does the network give the pre-image the same top-1 class as the original?
* ``log_odds``: a class's log p/(1−p), read from the logits.
* ``naturalness``: intersection of the 18-bin gradient-orientation histograms of pre-image and original.
* ``restart_spread``: standard deviation of a metric across random restarts.
* ``mean_ci``: mean and half-width of the 95% confidence interval 1.96·std/√n, as the paper's error bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PreimageError
from ..images import resize, rgb_to_grey, to_uint8
from ..representations import Representation

#: How pre-images are turned into the image that is evaluated: "minmax" is the paper's saved PNG
#: (``vl_imsc`` min–max rescaling, then 8 bits); "clip" keeps the true colours (clipped, 8 bits); "raw" as is.
EVAL_SCALES = ("minmax", "clip", "raw")


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


def feature_error(phi: torch.Tensor, phi0: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """IJCV error ‖M⊙(Φ−Φ0)‖/‖M⊙Φ0‖ per problem. phi, phi0: N×...; mask broadcastable (None: all ones). → N."""
    d, r = phi - phi0, phi0
    if mask is not None:
        d, r = d * mask, r * mask
    return (_flat_sum(d.pow(2)) / _flat_sum(r.pow(2)).clamp_min(1e-12)).sqrt()


def as_saved(x: torch.Tensor, scale: str = "minmax") -> torch.Tensor:
    """The images as they are evaluated: N×C×H×W (0–255 units) → the same, as saved to 8-bit PNG with ``scale``.

    ``minmax`` rescales each image to the full range (the paper evaluates its ``vl_imsc`` PNGs); ``clip``
    keeps the colours; ``raw`` returns ``x`` unchanged (float, not clipped).
    """
    if scale == "raw":
        return x.float()
    if scale not in EVAL_SCALES:
        raise PreimageError(f"unknown evaluation scaling '{scale}' (use {', '.join(EVAL_SCALES)})")
    out = [torch.from_numpy(np.ascontiguousarray(to_uint8(im, scale))) for im in x]
    out = [t[None] if t.ndim == 2 else t.permute(2, 0, 1) for t in out]
    return torch.stack(out).to(x.device, torch.float32)


def mean_pairwise_distance(x0: torch.Tensor) -> float:
    """Mean Euclidean distance over pairs of *different* images of a set, N×... (N ≥ 2): the normalizer
    of Dosovitskiy & Brox's error."""
    if x0.shape[0] < 2:
        raise PreimageError("the image-space error needs a set of at least 2 images")
    return float(torch.pdist(x0.flatten(1).double()).mean())


def image_error(x: torch.Tensor, x0: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Image-space error ‖x−x0‖ / normalizer per problem (Dosovitskiy & Brox 2016).

    x, x0: N×C×H×W in 0–255 (x0[i] is the original of x[i]). normalizer: the mean pairwise distance of the
    image set (default: computed from x0, which must then hold each original once). → N.
    """
    if normalizer is None:
        normalizer = mean_pairwise_distance(x0)
    return (x.double() - x0.double()).flatten(1).norm(dim=1).float() / normalizer


def classifier_for(rep: Representation) -> Representation | None:
    """Φ at the class-logit layer of ``rep``'s network (same module, same weights), or None if it has none."""
    layer = rep.spec.classifier_layer
    if layer is None:
        return None
    cls = Representation(rep.spec, layer)
    return cls.to(rep.device_dtype()[0])


@torch.no_grad()
def top1(classifier: Representation, images: torch.Tensor, size: int | tuple[int, int] | None = None,
         batch: int = 32) -> torch.Tensor:
    """Top-1 class of each image, N×C×H×W in 0–255, resized to ``size`` (default: the network's input size).
    → N (long)."""
    size = size or classifier.spec.input_size
    dev = classifier.device_dtype()[0]
    out = []
    for chunk in images.split(batch):
        x = resize(chunk.float().clamp(0, 255), size) if size is not None else chunk.float()
        logits = classifier(classifier.to_paper_units(x.to(dev)))
        out.append(logits.flatten(1).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def log_odds(logits: torch.Tensor, classes: torch.Tensor | int) -> torch.Tensor:
    """logits: N×K; classes: (N,) or one class for all → (N,) log p/(1−p) of each row's class, in the logits'
    dtype. Read from the logits, not from p: it still orders pictures where p rounds to 1."""
    c = torch.as_tensor(classes, device=logits.device).expand(logits.shape[0])[:, None]
    return logits.gather(1, c)[:, 0] - logits.scatter(1, c, float("-inf")).logsumexp(1)


def label_agreement(classifier: Representation, x: torch.Tensor, x0: torch.Tensor,
                    size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """1.0 where pre-image x[i] and original x0[i] (N×C×H×W, 0–255) get the same top-1 class, else 0.0. → N."""
    return (top1(classifier, x, size) == top1(classifier, x0, size)).float()


def gradient_histogram(x: torch.Tensor, bins: int = 18) -> torch.Tensor:
    """L1-normalized histogram of gradient orientation over [−180°, 180°), weighted by gradient magnitude.

    x: N×C×H×W (grey is taken first). Sobel gradients with replicated borders, as MATLAB's ``imgradient``
    (docs/paper-notes.md §3.2). → N×bins.
    """
    g = rgb_to_grey(x.double()) if x.shape[1] == 3 else x.double()
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=g.dtype, device=g.device)
    gp = F.pad(g, (1, 1, 1, 1), mode="replicate")
    gx = -F.conv2d(gp, k.view(1, 1, 3, 3))  # cross-correlation; sign so that gx grows to the right
    gy = -F.conv2d(gp, k.t().contiguous().view(1, 1, 3, 3))  # grows downwards
    mag = torch.hypot(gx, gy).flatten(1)
    deg = torch.rad2deg(torch.atan2(-gy, gx).flatten(1))  # MATLAB: y axis points up
    # Convolution sums are not exact (±1e-14°): snap, so that axis-aligned edges fall in one bin, not two.
    deg = torch.round(deg * 1e6) / 1e6
    idx = ((deg + 180.0) / (360.0 / bins)).floor().long().clamp(0, bins - 1)
    hist = torch.zeros(g.shape[0], bins, dtype=g.dtype, device=g.device).scatter_add_(1, idx, mag)
    return (hist / hist.sum(1, keepdim=True).clamp_min(1e-12)).float()


def naturalness(x: torch.Tensor, x0: torch.Tensor, bins: int = 18) -> torch.Tensor:
    """Histogram intersection Σ min(h(x), h(x0)) of gradient-orientation histograms; 1 = same statistics.

    x, x0: N×C×H×W in 0–255 (x0[i] the original of x[i]). → N in [0, 1].
    """
    return torch.minimum(gradient_histogram(x, bins), gradient_histogram(x0, bins)).sum(1)


def restart_spread(values: torch.Tensor) -> torch.Tensor:
    """Sample standard deviation (n−1, as MATLAB's ``std``) over the last dimension (restarts): ...×R → ...
    NaN where R < 2."""
    if values.shape[-1] < 2:
        return torch.full(values.shape[:-1], float("nan"))
    return values.double().std(dim=-1, correction=1).float()


def mean_ci(values: Iterable[float] | torch.Tensor, z: float = 1.96) -> tuple[float, float]:
    """(mean, half-width z·std/√n) of the values, NaNs ignored; std with n−1. Half-width NaN for n < 2;
    both NaN for n = 0. For 0/1 values this is the normal-approximation binomial interval, up to a
    factor √(n/(n−1))."""
    v = torch.as_tensor(values if isinstance(values, torch.Tensor) else list(values), dtype=torch.float64)
    v = v[~torch.isnan(v)]
    n = v.numel()
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(z * v.std(correction=1) / math.sqrt(n))
