"""Concept dictionaries: a sparse autoencoder (TopK, BatchTopK) or an NMF trained on a layer's activations.

``train(model, layer, images, k)`` streams the images through Φ in batches; every spatial position (or token:
patch and prefix tokens) of every image is a row, optionally subsampled per image (``rows_per_image``). The rows
go into a reservoir sample of at most ``max_rows`` rows, so memory is bounded by ``max_rows``×D whatever the
folder's size (each row of the folder has the same chance to be kept), and the dictionary is fit on it by ``fit``.

Why not ``overcomplete`` (0.3.0): it installs beside torch 2.14.1 without changing torch, but pulls in
opencv-python, scikit-learn and einops, and ``import overcomplete`` fails with matplotlib ≥ 3.9 (its
``visualization`` package calls ``matplotlib.cm.get_cmap``, removed in 3.9; this project has 3.11), and every
submodule import runs that package ``__init__``. Its training loops are also not what a bounded-memory pass
needs (its NMF fits one in-memory matrix; its SAEs have no decoder bias). So this module is the smallest
faithful version of its recipes, and ``load_dictionary`` reads its saved models:

* TopK SAE (Gao et al. 2024, overcomplete ``TopKSAE``): pre = (x − b_d)·Wₑᵀ + bₑ, z = TopK(ReLU(pre)),
  x̂ = z·W_dᵀ + b_d with unit-norm atoms (W_d's columns, renormalized after each step), loss ‖x − x̂‖² plus Gao's
  AuxK term (the ``aux_k`` largest pre-activations of dead concepts reconstruct the residual, weight 1/32),
  Adam, and dead concepts resampled towards badly reconstructed rows in the first 3/4 of training (Bricken et
  al. 2023). The rows are centred and scaled by one factor to unit mean square for the fit; the shift and scale
  are folded into the saved weights, which read the layer's own activations.
* BatchTopK SAE (Bussmann et al. 2024, overcomplete ``BatchTopKSAE``): the top top_k·B activations over a batch
  of B rows are kept in training; a running threshold (an exponential average of each batch's cut-off, momentum
  0.9 as overcomplete) replaces it at inference.
* NMF (overcomplete ``NMF``, its default HALS solver): A ≈ Z·D, Z, D ≥ 0 on max(A, 0) (the energy of the
  negative part clipped away is reported as ``clipped``), atoms scaled to unit norm.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..engine.runtime import borrowed
from ..errors import PreimageError
from ..images import list_images, load_image, resize
from ..measures.concepts import measure
from ..representations import ModelLike, Representation
from ..representations.dictionary import Dictionary
from .common import as_representation, check_count, features

METHODS = ("topk", "batchtopk", "nmf")
#: AuxK's weight (Gao et al. 2024: α = 1/32).
AUX_WEIGHT = 1 / 32

Progress = Callable[[str], None] | None


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def check_k(k: object) -> int:
    """K as a positive int, or a clear error."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise PreimageError(f"k (the number of concepts) must be a positive integer, got {k!r}", param="k")
    return k


def check_method(method: object) -> str:
    """A training method's name, or a clear error."""
    if method not in METHODS:
        raise PreimageError(f"method must be one of {', '.join(METHODS)}, got {method!r}", param="method")
    return str(method)


def feature_rows(y: torch.Tensor) -> torch.Tensor:
    """Φ's output → rows per image, N×P×D: N×D×h×w (positions), N×T×D (tokens) or N×D (one row each)."""
    if y.ndim == 4:
        return y.flatten(2).transpose(1, 2)
    if y.ndim == 3:
        return y
    if y.ndim == 2:
        return y[:, None]
    raise PreimageError(f"the layer's output {list(y.shape)} has no channel axis (need N×D, N×T×D or N×D×h×w)")


class Reservoir:
    """A uniform sample of at most ``capacity`` rows from a stream of rows (Vitter's algorithm R, in batches)."""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        if capacity <= 0:
            raise PreimageError(f"max_rows must be positive, got {capacity}", param="max_rows")
        self.capacity = capacity
        self.g = generator
        self.seen = 0
        self.buf: torch.Tensor | None = None
        self.filled = 0

    def add(self, rows: torch.Tensor) -> None:
        """rows: M×D (float32, CPU)."""
        if self.buf is None:
            self.buf = torch.empty(self.capacity, rows.shape[1], dtype=rows.dtype)
        n_fill = min(rows.shape[0], self.capacity - self.filled)
        self.buf[self.filled:self.filled + n_fill] = rows[:n_fill]
        self.filled += n_fill
        rest = rows[n_fill:]
        if rest.shape[0]:
            # Row number t (0-based) replaces slot j ~ U{0..t} when j < capacity; later rows win ties.
            t = self.seen + n_fill + torch.arange(rest.shape[0], dtype=torch.float64)
            j = (torch.rand(rest.shape[0], generator=self.g, dtype=torch.float64) * (t + 1)).long()
            keep = j < self.capacity
            j, rest = j[keep], rest[keep]
            order = torch.arange(j.numel())
            last = torch.full((self.capacity,), -1, dtype=torch.long).scatter_reduce_(0, j, order, "amax")
            win = last[j] == order
            self.buf[j[win]] = rest[win]
        self.seen += rows.shape[0]

    @property
    def rows(self) -> torch.Tensor:
        """The sample, M×D (M ≤ capacity)."""
        if self.buf is None:
            raise PreimageError("no activation rows were collected")
        return self.buf[:self.filled]


def _image_batches(images: str | Sequence[str] | torch.Tensor, size: tuple[int, int] | None, channels: int,
                   batch: int) -> tuple[int, Any]:
    """(number of images, an iterator of N×C×H×W batches in 0–255)."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[0] == 0:
            raise PreimageError(f"images must be an N×C×H×W tensor in 0–255, got shape {list(images.shape)}",
                                param="images")
        t = images if size is None else resize(images.float(), size)
        return t.shape[0], iter(t.float().split(batch))
    specs, _ = list_images(images)

    def gen() -> Any:
        for i in range(0, len(specs), batch):
            yield torch.cat([load_image(s, size, channels=channels) for s in specs[i:i + batch]])

    return len(specs), gen()


@torch.no_grad()
def collect_rows(rep: Representation, images: str | Sequence[str] | torch.Tensor, *,
                 size: int | tuple[int, int] | None = None, batch: int = 8, rows_per_image: int | None = None,
                 max_rows: int = 65536, seed: int = 0, progress: Progress = None) -> tuple[torch.Tensor, dict]:
    """A bounded uniform sample of Φ's activation rows over images (streamed in batches of ``batch`` images).

    images: a folder, a list of specs (paths, ``sample:NAME``), ``"samples"``, or an N×C×H×W tensor in 0–255.
    size: the input size (default: the model's). rows_per_image: a random subset of each image's positions.
    Returns (rows M×D float32 on the CPU, {images, rows_seen, rows}).
    """
    hw = (size, size) if isinstance(size, int) else tuple(size) if size else (rep.spec.input_size or None)
    n_images, batches = _image_batches(images, hw, rep.channels, batch)
    g = torch.Generator().manual_seed(seed)
    res = Reservoir(max_rows, g)
    dev, dtype = rep.device_dtype()
    done = 0
    for x in batches:
        y = features(rep, rep.to_paper_units(x.to(dev, dtype)))  # image by image: rows independent of the batch
        per = feature_rows(y).float().cpu()
        for r in per:
            if rows_per_image is not None and rows_per_image < r.shape[0]:
                r = r[torch.randperm(r.shape[0], generator=g)[:rows_per_image]]
            res.add(r)
        done += x.shape[0]
        _say(progress, f"activations: {done}/{n_images} images, {res.seen} rows")
    return res.rows.clone(), {"images": n_images, "rows_seen": res.seen, "rows": res.filled}


# --- fitting on rows -------------------------------------------------------------------------------------------


@torch.no_grad()
def _resample_dead(x: torch.Tensor, params: list[torch.Tensor], opt: torch.optim.Optimizer, dead: torch.Tensor,
                   g: torch.Generator, sample: int = 8192) -> int:
    """Point dead concepts at rows the SAE reconstructs worst (Bricken et al. 2023's resampling): atom = the
    row's residual direction, encoder row = the same direction at 0.2× the mean alive encoder norm, bias 0,
    Adam's moments reset for them. Returns how many were resampled."""
    w_enc, b_enc, w_dec, b_dec = params
    idx_dead = dead.nonzero().flatten()
    if idx_dead.numel() == 0 or bool(dead.all()):
        return 0
    xs = x[torch.randint(x.shape[0], (min(sample, x.shape[0]),), generator=g).to(x.device)]
    act = torch.relu((xs - b_dec) @ w_enc.T + b_enc) * ~dead
    top = torch.topk(act, min(int((act > 0).sum(1).max()), act.shape[1]) or 1, dim=-1)
    z = torch.zeros_like(act).scatter(-1, top.indices, top.values)
    resid = xs - (z @ w_dec.T + b_dec)
    err = resid.pow(2).sum(1)
    pick = torch.multinomial((err + 1e-12).cpu(), idx_dead.numel(), replacement=True, generator=g).to(x.device)
    dirs = torch.nn.functional.normalize(resid[pick], dim=1)
    w_dec[:, idx_dead] = dirs.T
    w_enc[idx_dead] = dirs * 0.2 * w_enc[~dead].norm(dim=1).mean()
    b_enc[idx_dead] = 0
    for p, sl in ((w_enc, idx_dead), (b_enc, idx_dead)):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key][sl] = 0
    st = opt.state.get(w_dec, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in st:
            st[key][:, idx_dead] = 0
    return int(idx_dead.numel())


def _fit_sae(x: torch.Tensor, k: int, top_k: int, batch_top: bool, *, epochs: int, batch_rows: int, lr: float,
             aux_k: int | None, resample: bool, g: torch.Generator,
             progress: Progress) -> tuple[list[torch.Tensor], dict]:
    """A TopK/BatchTopK SAE on normalized rows x: M×D → (Wₑ K×D, bₑ K, W_d D×K, b_d D, threshold) in x's units."""
    m, d = x.shape
    w_dec = torch.randn(d, k, generator=g, dtype=x.dtype)
    w_dec = w_dec / w_dec.norm(dim=0, keepdim=True)
    # Gao et al.'s initialization: the encoder is the decoder's transpose.
    params = [w_dec.T.clone(), torch.zeros(k, dtype=x.dtype), w_dec, torch.zeros(d, dtype=x.dtype)]
    params = [p.to(x.device).requires_grad_(True) for p in params]
    w_enc, b_enc, w_dec, b_dec = params
    opt = torch.optim.Adam(params, lr=lr)
    aux_k = aux_k if aux_k is not None else max(d // 2, 1)
    since_fired = torch.zeros(k, device=x.device)  # rows since each concept last fired
    threshold: torch.Tensor | None = None
    loss_sum = 0.0
    steps_per_epoch = max(math.ceil(m / batch_rows), 1)
    for epoch in range(epochs):
        perm = torch.randperm(m, generator=g).to(x.device)
        loss_sum = 0.0
        for idx in perm.split(batch_rows):
            xb = x[idx]
            pre = (xb - b_dec) @ w_enc.T + b_enc
            act = torch.relu(pre)
            if batch_top:
                n_keep = min(top_k * xb.shape[0], act.numel())
                cut = torch.topk(act.flatten(), n_keep).values[-1].detach()
                z = act * (act >= cut)
                threshold = cut if threshold is None else 0.9 * threshold + 0.1 * cut
            else:
                top = torch.topk(act, top_k, dim=-1)
                z = torch.zeros_like(act).scatter(-1, top.indices, top.values)
            recon = z @ w_dec.T + b_dec
            loss = (xb - recon).pow(2).sum(1).mean()
            fired = (z > 0).any(0)
            since_fired = torch.where(fired, 0.0, since_fired + xb.shape[0])
            dead = since_fired > m  # silent for a whole epoch of rows
            if aux_k and bool(dead.any()):
                # AuxK: the largest pre-activations of dead concepts model the residual, so they get gradients.
                dead_act = torch.relu(pre) * dead
                ka = min(aux_k, int(dead.sum()))
                top = torch.topk(dead_act, ka, dim=-1)
                z_aux = torch.zeros_like(dead_act).scatter(-1, top.indices, top.values)
                resid = (xb - recon).detach()
                loss = loss + AUX_WEIGHT * (resid - z_aux @ w_dec.T).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                w_dec /= w_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)
            loss_sum += float(loss.detach())
        if resample and epoch + 1 < epochs * 0.75 and (epoch + 1) % max(epochs // 8, 1) == 0:
            n_dead = _resample_dead(x, params, opt, since_fired > m, g)
            if n_dead:
                since_fired[since_fired > m] = 0
                _say(progress, f"epoch {epoch + 1}: {n_dead} dead concepts resampled")
        if progress is not None and (epoch + 1) % max(epochs // 10, 1) == 0:
            _say(progress, f"epoch {epoch + 1}/{epochs}: loss {loss_sum / steps_per_epoch:.4g}")
    with torch.no_grad():
        b_enc_eff = b_enc - w_enc @ b_dec  # fold the pre-encoder shift into the encoder bias
    out = [w_enc.detach(), b_enc_eff.detach(), w_dec.detach(), b_dec.detach()]
    return out, {"threshold": None if threshold is None else float(threshold),
                 "loss": loss_sum / steps_per_epoch / d}


def hals_nmf(a: torch.Tensor, k: int, *, iters: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """NMF A ≈ Z·D by hierarchical alternating least squares (overcomplete's default solver).

    a: M×D ≥ 0 → (Z M×K ≥ 0, D K×D ≥ 0), from overcomplete's random initialization |N(0,1)|·sqrt(mean(A)/K).
    """
    m, d = a.shape
    mu = math.sqrt(float(a.mean()) / k) if float(a.mean()) > 0 else 1.0
    z = (torch.randn(m, k, generator=g, dtype=a.dtype).abs() * mu).to(a.device)
    dd = (torch.randn(k, d, generator=g, dtype=a.dtype).abs() * mu).to(a.device)
    for _ in range(iters):
        c, b = a @ dd.T, dd @ dd.T
        for j in range(k):
            z[:, j] = torch.relu((c[:, j] - z @ b[:, j] + z[:, j] * b[j, j]) / (b[j, j] + 1e-10))
        mm, nn_ = z.T @ a, z.T @ z
        for j in range(k):
            dd[j] = torch.relu((mm[j] - nn_[j] @ dd + dd[j] * nn_[j, j]) / (nn_[j, j] + 1e-10))
    return z, dd


#: SAE steps when ``epochs`` is not given: small row sets get more passes, so every fit takes enough steps.
MIN_STEPS = 2000


def fit(rows: torch.Tensor, k: int, *, method: str = "topk", top_k: int | None = None, epochs: int | None = None,
        batch_rows: int = 1024, lr: float = 3e-3, aux_k: int | None = None, resample: bool = True,
        nmf_iters: int = 200, seed: int = 0, device: str | torch.device | None = None,
        progress: Progress = None) -> Dictionary:
    """A dictionary of K concepts fit to activation rows M×D (see the module docstring for the methods).

    top_k: active concepts per row (topk; the mean per row for batchtopk); default max(K // 10, 1), as
    overcomplete. epochs/batch_rows/lr/aux_k/resample: the SAEs' Adam training (epochs default: enough passes for
    ``MIN_STEPS`` steps, at least 10); nmf_iters: HALS iterations. The result
    carries ``figures`` (r2, l0, dead, dead_fraction, rows, seconds, seconds_per_concept) measured on the rows.
    """
    k = check_k(k)
    check_method(method)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise PreimageError(f"activation rows must be a non-empty M×D matrix, got shape {list(rows.shape)}")
    if not bool(torch.isfinite(rows).all()):
        raise PreimageError("the activations contain NaN or infinite values")
    top_k = max(k // 10, 1) if top_k is None else top_k
    if method != "nmf" and not 1 <= top_k <= k:
        raise PreimageError(f"top_k must be between 1 and K={k}, got {top_k}", param="top_k")
    if (epochs is not None and epochs <= 0) or batch_rows <= 0 or nmf_iters <= 0:
        raise PreimageError("epochs, batch_rows and nmf_iters must be positive", param=("epochs", "batch_rows",
                                                                                    "nmf_iters"))
    if epochs is None:
        epochs = max(10, math.ceil(MIN_STEPS / math.ceil(rows.shape[0] / batch_rows)))
    dev = torch.device(device) if device is not None else rows.device
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    x = rows.to(dev, torch.float32)
    extra: dict[str, Any] = {}
    if method == "nmf":
        neg = float(x.clamp_max(0).pow(2).sum() / x.pow(2).sum().clamp_min(1e-30))
        a = x.clamp_min(0)
        z, atoms = hals_nmf(a, k, iters=nmf_iters, g=g)
        norms = atoms.norm(dim=1).clamp_min(1e-12)
        atoms = atoms / norms[:, None]  # unit atoms: the codes carry the scale, comparable across concepts
        w_dec = atoms.T.contiguous()
        dic = Dictionary(torch.linalg.pinv(w_dec), None, w_dec, None, method="nmf")
        extra = {"clipped": neg}
        fit_rows = a
    else:
        mu = x.mean(0)
        scale = float((x - mu).pow(2).mean().sqrt().clamp_min(1e-12))
        (w_enc, b_enc, w_dec, b_dec), info = _fit_sae((x - mu) / scale, k, top_k, method == "batchtopk",
                                                       epochs=epochs, batch_rows=batch_rows, lr=lr, aux_k=aux_k,
                                                       resample=resample, g=g, progress=progress)
        # Undo the normalization: encode raw rows with Wₑ/s and bₑ − Wₑ·μ/s; decode to s·(z·W_dᵀ + b_d) + μ.
        thr = info["threshold"]
        dic = Dictionary(w_enc / scale, b_enc - (w_enc @ mu) / scale, w_dec * scale, b_dec * scale + mu,
                         method=method, top_k=top_k if method == "topk" else None, threshold=thr)
        extra = {"loss": info["loss"]}
        fit_rows = x
    dic = dic.to(dev)
    seconds = time.perf_counter() - t0
    figures = measure(dic, fit_rows)
    figures.update(extra)
    figures.update({"seconds": seconds, "seconds_per_concept": seconds / k})
    dic.figures = figures
    dic.config = {"method": method, "k": k, "top_k": top_k, "epochs": epochs, "batch_rows": batch_rows, "lr": lr,
                  "aux_k": aux_k, "nmf_iters": nmf_iters, "seed": seed}
    if method == "batchtopk":
        dic.config["mean_top_k"] = top_k
    return dic.cpu()


def train(model: ModelLike, layer: str | None, images: str | Sequence[str] | torch.Tensor, k: int, *,
          method: str = "topk", top_k: int | None = None, epochs: int | None = None, batch: int = 8,
          batch_rows: int = 1024, lr: float = 3e-3, rows_per_image: int | None = None, max_rows: int = 65536,
          seed: int = 0, size: int | tuple[int, int] | None = None, device: str | None = None,
          progress: Progress = None) -> Dictionary:
    """Train a dictionary of K concepts on ``layer``'s activations over ``images``.

    model: a name (``efficientnet_lite0``, ``timm:NAME``) or a Representation; layer: a module name (a
    Representation's own when None). images: a folder, a list of specs, ``"samples"``, or an N×C×H×W tensor
    in 0–255; streamed ``batch`` images at a time, rows reservoir-sampled to at most ``max_rows``
    (``collect_rows``). method: topk | batchtopk | nmf; other options: ``fit``. Returns the Dictionary, with
    ``figures`` (r2, l0, dead, seconds, ...) and ``config`` (model, layer, images, rows, options).
    """
    check_k(k)
    check_method(method)
    batch = check_count(batch, "batch")
    max_rows = check_count(max_rows, "max_rows", 1, 100_000_000)
    if rows_per_image is not None:
        rows_per_image = check_count(rows_per_image, "rows_per_image", 1, 100_000_000)
    rep = as_representation(model, layer, device=device)
    t0 = time.perf_counter()
    with borrowed(rep):
        rows, info = collect_rows(rep, images, size=size, batch=batch, rows_per_image=rows_per_image,
                                  max_rows=max_rows, seed=seed, progress=progress)
    seconds_rows = time.perf_counter() - t0
    _say(progress, f"fitting {method} with K={k} on {rows.shape[0]} rows of D={rows.shape[1]}")
    dev = rep.device_dtype()[0]
    dic = fit(rows, k, method=method, top_k=top_k, epochs=epochs, batch_rows=batch_rows, lr=lr, seed=seed,
              device=dev, progress=progress)
    dic.model, dic.layer = rep.name, rep.layer
    dic.figures["seconds_activations"] = seconds_rows
    dic.config.update({"model": rep.name, "layer": rep.layer, "view": rep.view, "batch": batch,
                       "rows_per_image": rows_per_image, "max_rows": max_rows,
                       "size": list(size) if isinstance(size, tuple) else size, **info})
    return dic


def load(path: str, model: ModelLike | None = None, layer: str | None = None, *, method: str | None = None,
         top_k: int | None = None, threshold: float | None = None) -> Dictionary:
    """Read a dictionary file (``representations.dictionary.load_dictionary``: ours, a plain or SAELens state
    dict, an ``overcomplete`` model's state dict). model, layer: check that it fits that layer's channels (one
    line naming both shapes if not) and record them on the dictionary (``layer`` defaults to a Representation's
    own, else to the file's)."""
    from ..representations.dictionary import load_dictionary

    dic = load_dictionary(path, method=method, top_k=top_k, threshold=threshold)
    if model is not None:
        own = layer if layer is not None or isinstance(model, Representation) else dic.layer
        rep = as_representation(model, own)
        with borrowed(rep):
            hw = rep.spec.input_size or (224, 224)
            y = features(rep, torch.zeros(1, rep.channels, *hw, device=rep.device_dtype()[0],
                                          dtype=rep.device_dtype()[1]))
        d = feature_rows(y).shape[-1]
        if d != dic.d:
            raise PreimageError(f"dictionary {path} does not fit layer '{rep.layer}' of {rep.name}: its encoder is "
                                f"K×D = {dic.k}×{dic.d}, the layer has D={d} channels (output {list(y.shape)})",
                                param="load")
        dic.model, dic.layer = rep.name, rep.layer
    return dic
