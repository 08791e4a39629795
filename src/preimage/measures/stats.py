"""Neuron statistics: per-layer, per-channel max/mean/std of a network's responses over a reference image set,
cached on disk per model and weights (docs/paper-notes.md §1.3: the normalizer M_c of activation maximization).

The paper used every 1000th ILSVRC-12 training image (~1.28k images). This package ships no ImageNet images:
the default set is scikit-image's colour samples (``images.COLOR_SAMPLES``, 8 images), so M_c is the maximum
over far fewer and less varied images than the paper's. ``preimage stats --images DIR`` computes them on a
folder of your own (a sample of ImageNet, for instance) and replaces the cache.

Two kinds of *points* are measured, in one forward pass per batch with hooks on every module:

* ``("output", name)``: the module's output (``name == ""``: the whole network's output);
* ``("input", name)``: the input of a ReLU-family module, i.e. the **pre-ReLU** response that activation
  maximization targets (docs/paper-notes.md §1.3);
* ``("grid", name)`` and ``("token<k>", name)``: the patch grid and prefix token k of a token output
  (vision transformers, ``representations/tokens.py``); channels-last outputs are measured as N×C×H×W.

Each hook reduces its tensor to per-channel statistics at once, because torchvision and timm networks use
in-place ReLUs that overwrite a stored conv or batch-norm output afterwards. Outputs N×C×h×w and N×C are
measured (channels = axis 1); other shapes are skipped. A module called several times in one forward pass
(a shared ReLU) reports its first call, as ``measure_geometry`` does.

Cache: ``$PREIMAGE_CACHE/stats/<model>-<hash of weights id>.pt`` (default ``~/.cache/preimage``), written
atomically, read with ``weights_only=True`` and validated; a corrupt or mismatched file is rebuilt with one
warning line on stderr, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..engine.memory import check_memory
from ..errors import PreimageError
from ..images import atomic_write_bytes, fingerprint, list_images, load_image, short_error
from ..representations.base import ModelSpec, Representation, model_id
from ..representations.hooks import eval_mode
from ..representations.points import RELUS, Point
from ..representations.tokens import find_layout, prefix_names

FORMAT_VERSION = 2


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of one point over all images and positions (each a C-vector, float32)."""

    max: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def channels(self) -> int:
        return self.max.numel()


@dataclass
class NeuronStats:
    """Statistics of every measured point of a model: ``points[(kind, name)] → ChannelStats``."""

    model: str
    weights_id: str
    points: dict[Point, ChannelStats]
    images: list[str] = field(default_factory=list)  # names of the reference images
    size: tuple[int, int] | None = None  # input size they were resized to (None: their own sizes)
    source: str = "samples"  # "samples" or the folder they came from

    def get(self, point: Point) -> ChannelStats:
        """The statistics of one point, or a clear error if it was not measured."""
        if point not in self.points:
            kind, name = point
            raise PreimageError(f"no neuron statistics for the {kind} of layer '{name or 'output'}' of "
                                f"{self.model}; it does not output N×C×h×w or N×C")
        return self.points[point]


def _key(point: Point) -> str:
    return f"{point[0]}/{point[1]}"


# --- computing -----------------------------------------------------------------------------------------------


class _Accumulator:
    """Running per-channel max, sum and sum of squares (float64) of one point, fed batch by batch."""

    def __init__(self) -> None:
        self.max: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None
        self.count = 0

    def add(self, t: torch.Tensor) -> None:
        if t.ndim not in (2, 4) or t.shape[1] == 0 or not t.is_floating_point():
            return
        c = t.shape[1]
        flat = t.detach().transpose(0, 1).reshape(c, -1)
        if self.max is not None and self.max.numel() != c:
            return  # a reused module called with another width: keep the first
        mx = flat.amax(1).float().cpu()
        f64 = flat.double()
        s, sq = f64.sum(1).cpu(), f64.pow(2).sum(1).cpu()
        if self.max is None:
            self.max, self.sum, self.sq = mx, s, sq
        else:
            torch.maximum(self.max, mx, out=self.max)
            self.sum += s
            self.sq += sq
        self.count += flat.shape[1]

    def result(self) -> ChannelStats | None:
        if self.max is None or self.count == 0:
            return None
        mean = self.sum / self.count
        var = (self.sq / self.count - mean.pow(2)).clamp_min(0)
        return ChannelStats(self.max.clone(), mean.float(), var.sqrt().float())


def resolve_images(images: str | Sequence[str] | None) -> tuple[list[str], str]:
    """``None``/``"samples"`` → the bundled colour samples; a folder → its images (``images.list_images``); a list
    → itself. Returns (image specs, source: ``samples``, the folder's path, or ``list``)."""
    if isinstance(images, (list, tuple)) and len(images) == 1 and (images[0] == "samples" or Path(images[0]).is_dir()):
        images = images[0]  # a job's options hold ``images`` as a list (``call_options``): [folder] is the folder
    if images is None or images == "samples":
        return list_images("samples")[0], "samples"
    specs, _ = list_images(images, warn)
    return specs, str(Path(images).resolve()) if isinstance(images, (str, os.PathLike)) else "list"


def images_id(specs: Sequence[str]) -> str:
    """12 hex digits naming an image set by its contents."""
    h = hashlib.sha1()
    for s in specs:
        try:
            h.update(fingerprint(s).encode())
        except PreimageError:  # statistics read from a file name images that need not be here: their names
            h.update(f"name:{s}".encode())
    return h.hexdigest()[:12]


def compute_stats(model: ModelSpec | Representation, images: str | Sequence[str] | None = None, *,
                  size: int | tuple[int, int] | None = None, batch: int = 8,
                  progress: Callable[[int, int], None] | None = None) -> NeuronStats:
    """Per-channel max/mean/std of every module's output (and every ReLU's input) over an image set.

    images: ``None``/``"samples"`` (the bundled colour samples), a folder, or a list of specs. size: the input
    size the images are resized to (default: the model's; its own resolution for models without one, one
    image per batch then). One forward pass of the whole network per batch.
    """
    rep = model if isinstance(model, Representation) else Representation(model, "output")
    spec = rep.spec
    specs, source = resolve_images(images)
    if source == "samples" and rep.channels not in (1, 3):
        raise PreimageError(f"{spec.name} takes {rep.channels}-channel images and the bundled samples are RGB: its "
                            "neuron statistics need reference images of its own (images: a folder of .npy or .tif "
                            "files)", param="images")
    if size is None:
        size = rep.spec.input_size
    hw = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
    if hw is None:
        batch = 1  # images of their own sizes cannot share a batch
    else:
        check_memory(rep, min(batch, len(specs)), hw, "computing the neuron statistics")
    acc: dict[Point, _Accumulator] = {}
    seen: set[Point] = set()
    handles = []
    prefix = prefix_names(rep.net)
    batch_input: list[torch.Tensor] = []

    def record(point: Point, t: object) -> None:
        if point in seen or not isinstance(t, torch.Tensor):
            return
        seen.add(point)
        x = batch_input[0]
        lay = (find_layout(tuple(t.shape[1:]), tuple(x.shape[-2:]), prefix)
               if t.ndim in (3, 4) and t.shape[0] == x.shape[0] else None)
        if lay is None:
            acc.setdefault(point, _Accumulator()).add(t)
        elif lay.kind == "nhwc":
            acc.setdefault(point, _Accumulator()).add(t.permute(0, 3, 1, 2))
        elif point[0] == "output":  # token outputs: the patch grid and each prefix token, as Φ's views see them
            if lay.grid_size(t.shape[1], tuple(x.shape[-2:]))[0]:
                acc.setdefault(("grid", point[1]), _Accumulator()).add(lay.to_map(t, tuple(x.shape[-2:])))
            for k in range(lay.prefix):
                acc.setdefault((f"token{k}", point[1]), _Accumulator()).add(t[:, k])

    net = rep.net
    for name, mod in net.named_modules():
        # The root is registered too (name ""), for the whole network's output.
        handles.append(mod.register_forward_hook(lambda _m, _i, o, name=name: record(("output", name), o)))
        if isinstance(mod, RELUS) and name:
            handles.append(mod.register_forward_pre_hook(
                lambda _m, args, name=name: record(("input", name), args[0] if args else None)))
    device = rep.device_dtype()[0]
    names = []
    try:
        with torch.no_grad(), eval_mode(net):
            for i in range(0, len(specs), batch):
                chunk = specs[i:i + batch]
                x = torch.cat([load_image(s, hw, channels=rep.channels) for s in chunk]).to(device)
                seen.clear()
                batch_input[:] = [x]
                net(rep.to_paper_units(x) * rep.scale)
                names.extend(chunk)
                if progress:
                    progress(min(i + batch, len(specs)), len(specs))
    finally:
        for h in handles:
            h.remove()
    points = {p: r for p, a in acc.items() if (r := a.result()) is not None}
    return NeuronStats(spec.name, model_id(spec), points, names, hw, source)


# --- the cache -----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$PREIMAGE_CACHE`` or ``~/.cache/preimage``."""
    return Path(os.environ.get("PREIMAGE_CACHE") or Path.home() / ".cache" / "preimage")


def cache_path(model: str, weights_id: str) -> Path:
    """Where the statistics of a model (its name and ``model_id``: name and weights digest) are cached."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    digest = hashlib.sha1(weights_id.encode()).hexdigest()[:12]
    return cache_dir() / "stats" / f"{safe}-{digest}.pt"


def save_stats(stats: NeuronStats, path: str | Path | None = None) -> Path:
    """Write the statistics atomically (default: their cache path)."""
    path = Path(path) if path is not None else cache_path(stats.model, stats.weights_id)
    obj = {"version": FORMAT_VERSION, "model": stats.model, "weights_id": stats.weights_id,
           "images": list(stats.images), "size": list(stats.size) if stats.size else None, "source": stats.source,
           "points": {_key(p): torch.stack([s.max, s.mean, s.std]) for p, s in stats.points.items()}}
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_stats(path: str | Path, model: str | None = None, weights_id: str | None = None) -> NeuronStats:
    """Read and validate a statistics file; raises ValueError saying what is wrong with it."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is corrupt
        raise ValueError(f"unreadable ({short_error(e)})") from None
    if not isinstance(obj, dict) or obj.get("version") != FORMAT_VERSION:
        raise ValueError("not a statistics file of this version")
    if model is not None and obj.get("model") != model:
        raise ValueError(f"made for model '{obj.get('model')}'")
    if weights_id is not None and obj.get("weights_id") != weights_id:
        raise ValueError("made for other weights")
    pts, size = obj.get("points"), obj.get("size")
    if not isinstance(pts, dict) or not pts:
        raise ValueError("no statistics inside")
    if not isinstance(obj.get("images"), list) or not obj["images"]:
        raise ValueError("no reference images recorded")
    points: dict[Point, ChannelStats] = {}
    for key, t in pts.items():
        kind, sep, name = str(key).partition("/")
        if not sep or not (kind in ("output", "input", "grid") or (kind[:5] == "token" and kind[5:].isdigit())):
            raise ValueError(f"bad entry '{key}'")
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[0] != 3 or t.shape[1] == 0:
            raise ValueError(f"bad entry '{key}'")
        mx, mean, std = t.float()
        if not bool(torch.isfinite(t).all()) or bool((std < 0).any()) or bool((mean > mx + 1e-3 * mx.abs()
                                                                                 + 1e-5).any()):
            raise ValueError(f"inconsistent values for '{key}'")
        points[(kind, name)] = ChannelStats(mx.clone(), mean.clone(), std.clone())
    return NeuronStats(str(obj["model"]), str(obj["weights_id"]), points, [str(s) for s in obj["images"]],
                       tuple(size) if size else None, str(obj.get("source", "")))


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def load_stats(model: ModelSpec | Representation, *, images: str | Sequence[str] | None = None,
               recompute: bool = False, progress: Callable[[int, int], None] | None = None) -> NeuronStats:
    """The neuron statistics of ``model`` over reference images, cached per model and weights (``model_id``).

    images None: the cached ones (whatever image set they were last computed on, ``preimage stats``), else the
    bundled samples; a folder or list: those images (the cache is used when it holds exactly them, else replaced).
    A corrupt cache is rebuilt with one warning line."""
    spec = model.spec if isinstance(model, Representation) else model
    mid = model_id(spec)
    path = cache_path(spec.name, mid)
    wanted = None if images is None else resolve_images(images)[0]
    if not recompute and path.exists():
        try:
            cached = read_stats(path, spec.name, mid)
            if wanted is None or cached.images == [str(s) for s in wanted]:
                return cached
        except ValueError as e:
            warn(f"the neuron statistics cache {path} is corrupt ({e}); rebuilding it")
    stats = compute_stats(model, wanted if wanted is not None else images, progress=progress)
    if images is not None and not isinstance(images, (list, tuple)):
        stats.source = resolve_images(images)[1]
    save_stats(stats, path)
    return stats
