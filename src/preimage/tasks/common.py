"""What every task shares: the model argument, the images it reads, the checks of the options every task has, the
problems' seeds, and the pictures it returns (clipped to 0–255, in the unit of every image the package takes)."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

import torch

from ..engine.rng import problem_seed
from ..errors import PreimageError, is_number
from ..images import fingerprint, image_name, load_image, minmax, resize, rgb_to_grey, tensor_fingerprint
from ..representations import ModelLike, Representation, load
from ..representations.base import model_id
from ..representations.hooks import refusal

#: What an images argument may be: a path, ``sample:NAME``, a list of them, or N×C×H×W (or C×H×W) in 0–255.
Images = str | Sequence[str] | torch.Tensor


def as_representation(model: ModelLike, layer: str | None = None, *, device: str | None = None) -> Representation:
    """Φ at ``layer`` of ``model`` (a name, an nn.Module, a ModelSpec or a Representation). layer None: a
    Representation's own layer, else the model's documented default layer, else an error that asks for one.
    device: where to compute (a user's module is moved there only for the length of each task)."""
    if isinstance(model, Representation) and layer is None:
        return model if device is None else load(model, model.layer or "output", view=model.view, device=device)
    if not isinstance(model, Representation) and layer is None:
        from ..representations import model_spec
        from ..representations.base import resolve_layer

        spec = model_spec(model)
        layer = resolve_layer(spec, None) or "output"  # an error for a model without a default layer
        model = spec
    return load(model, layer, device=device)


def number_list(value: Any) -> list[Any]:
    """A number, a list or tuple of them, or a 1-D numpy array (``np.linspace``) as a list."""
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:
        return value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]


def shown(value: Any) -> str:
    """A value as an error message names it: repr, but an array as its shape (a numpy repr runs over lines)."""
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"an array of shape {tuple(shape)}"
    return repr(value.item() if shape is not None and hasattr(value, "item") else value)


def check_count(value: Any, name: str, low: int = 1, high: int = 100_000) -> int:
    """An integer option within [low, high] (numpy's integers too), or one clear line naming the parameter."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value <= high:
        raise PreimageError(f"{name} must be an integer from {low} to {high}, got {shown(value)}", param=name)
    return int(value)


def check_number(value: Any, name: str, low: float, high: float, *, open_low: bool = False) -> float:
    """A finite number within [low, high] (or (low, high] with ``open_low``), or one clear line."""
    ok = is_number(value) and value == value
    if ok:
        ok = (low < value if open_low else low <= value) and value <= high
    if not ok:
        rng = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise PreimageError(f"{name} must be a number in {rng}, got {shown(value)}", param=name)
    return float(value)


def distinct_numbers(value: Any, name: str, low: float, high: float, noun: str, *,
                     open_low: bool = False) -> list[float]:
    """value (a number or a non-empty list of them) as a list of finite numbers in [low, high] (or (low, high] with
    ``open_low``), each once; one clear line naming ``name`` otherwise."""
    vs = number_list(value)
    if not vs:
        rng = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise PreimageError(f"{name} must be a number in {rng} or a list of them, got an empty list", param=name)
    out = [check_number(v, name, low, high, open_low=open_low) for v in vs]
    if len(set(out)) != len(out):
        raise PreimageError(f"{name} lists a {noun} twice ({vs}): each would give the same picture", param=name)
    return out


def check_size(size: Any) -> tuple[int, int] | None:
    """An input size: None, a side, or (H, W), each 1 to 8192 pixels; one clear line otherwise."""
    if size is None:
        return None
    sides = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size) \
        if isinstance(size, (tuple, list)) else ()
    if len(sides) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in sides):
        raise PreimageError(f"size must be a side or (H, W), each 1 to 8192 pixels, got {size!r}", param="size")
    return sides


def image_specs(images: Images) -> list[str] | None:
    """The specs of an images argument (None for a tensor)."""
    if isinstance(images, torch.Tensor):
        return None
    if isinstance(images, str):
        return [images]
    try:
        specs = [str(s) for s in images]
    except TypeError:
        raise PreimageError(f"images must be a path, sample:NAME, a list of them or an N×C×H×W tensor in 0–255, "
                            f"got {type(images).__name__}", param="images") from None
    if not specs:
        raise PreimageError("give at least one image", param="images")
    return specs


def image_count(images: Images) -> int:
    """How many images a spec, a list of specs or an N×C×H×W tensor holds."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.ndim == 4 else 1
    return len(image_specs(images) or [])


def prepare_images(rep: Representation, images: Images, size: tuple[int, int] | int | None
                   ) -> tuple[torch.Tensor, list[str], list[str]]:
    """Images → (N×C×H×W in 0–255 at the network's input size, names, fingerprints); C is the representation's
    channel count (``load_image``: RGB ↔ grey converted, k-channel arrays as they are). size: None means the
    model's native size (each image's own resolution for HOG/DSIFT)."""
    if size is None:
        size = rep.spec.input_size
    if isinstance(images, torch.Tensor):
        x = images if images.ndim == 4 else images[None]
        if x.ndim != 4 or not x.is_floating_point() and x.dtype != torch.uint8:
            raise PreimageError(f"an images tensor is N×C×H×W (or C×H×W) in 0–255, got shape {tuple(images.shape)}",
                                param="images")
        x = x.float()
        names = [f"image{i}" for i in range(x.shape[0])]
        prints = [tensor_fingerprint(t) for t in x]
        x = resize(x, size) if size is not None else x
        if x.shape[1] == 3 and rep.channels == 1:
            x = rgb_to_grey(x)
        elif x.shape[1] == 1 and rep.channels != 1:
            x = x.expand(-1, rep.channels, -1, -1)
        if x.shape[1] != rep.channels:
            raise PreimageError(f"the images have {x.shape[1]} channels, {rep.name} takes {rep.channels}",
                                param="images")
    else:
        specs = image_specs(images) or []
        loaded = [load_image(s, size, channels=rep.channels) for s in specs]
        if len({tuple(t.shape) for t in loaded}) > 1:
            raise PreimageError("images of different sizes cannot share a batch; give a size", param="size")
        x, names, prints = torch.cat(loaded), [image_name(s) for s in specs], [fingerprint(s) for s in specs]
    return x.to(rep.device_dtype()[0]), names, prints


def features(rep: Representation, x: torch.Tensor) -> torch.Tensor:
    """Φ(x) without gradients, image by image where problems run on their own (the CPU's kernels round differently
    for other batch sizes: a problem's reference and its numbers must not depend on its neighbours)."""
    from ..engine.runtime import per_problem

    with torch.no_grad():
        if x.shape[0] > 1 and per_problem(x.device):
            return torch.cat([rep(x[i:i + 1]) for i in range(x.shape[0])])
        return rep(x)


def reference_features(rep: Representation, x: torch.Tensor) -> torch.Tensor:
    """Φ0 = Φ(x) without gradients (``features``), or a clear error if the network refuses the image (too small for
    the layer, or a size a fixed-size model does not take)."""
    try:
        phi = features(rep, x)
    except PreimageError:
        raise
    except Exception as e:  # noqa: BLE001 - the network's own complaint about this input, in one line
        if isinstance(e, RuntimeError) and any(s in str(e) for s in ("too small", "can't be greater",
                                                                      "Padding size should be", "non-empty")):
            raise PreimageError(_too_small(rep, x), param="size") from None
        if isinstance(e, MemoryError) or "allocate" in str(e):
            raise
        native = tuple(rep.spec.input_size or ())
        multiple = re.search(r"divisible by (?:patch size )?\(?(\d+)\)?", str(e))
        if multiple:  # a ViT that takes any size made of whole patches (timm's dynamic_img_size)
            hint = f"; use a size that is a multiple of {multiple.group(1)}"
        elif native and native != tuple(x.shape[-2:]):
            hint = f"; it was built for {native[0]}×{native[1]}: leave size out"
        else:
            hint = ""
        raise PreimageError(f"{rep.name} does not take a {'×'.join(map(str, x.shape[1:]))} input at layer "
                            f"'{rep.layer or 'output'}' ({refusal(e)}){hint}", param="size") from None
    if phi.numel() == 0 or (phi.ndim == 4 and min(phi.shape[-2:]) == 0):
        raise PreimageError(_too_small(rep, x), param="size")
    return phi


def _too_small(rep: Representation, x: torch.Tensor) -> str:
    return (f"image {x.shape[-2]}×{x.shape[-1]} is too small for layer '{rep.layer}' of {rep.name}: "
            "its output map would be empty; use a larger size")


def pictures(rep: Representation, x: torch.Tensor) -> torch.Tensor:
    """The optimization's images (paper units) as the pictures users get, in 0–255. CNN pictures are clipped (the
    pixel parameterization lets a colour reach B+ = 160 from the mean, past 0 or 255: the paper's bound, not the
    display's). HOG, HOGb and DSIFT see the grey image without centring and do not change with its brightness
    or contrast, so their optimum may sit below 0: their pictures are min–max scaled into 0–255, as the paper
    shows them (their features, and so their errors, are unchanged). → N×C×H×W."""
    img = rep.to_image(x)
    if rep.spec.family in ("shallow", "hog"):
        return torch.stack([minmax(t) for t in img])
    return img.clamp(0, 255)


def display_scale(style_name: str) -> str:
    """How a style's pictures are shown and saved: min–max for the paper's (as its authors saved them), true
    colours otherwise."""
    return "minmax" if style_name == "paper" else "clip"


def seeds(task: str, rep: Representation, problems: Sequence[dict[str, Any]], options: dict[str, Any],
          seed: int) -> list[int]:
    """Each problem's seed: a digest of the task, the model (name and weights), the layer, the problem's own
    parameters (its target or image, C, restart), the run's options (as resolved) and the user's seed; never of
    the batch it shares."""
    mid = model_id(rep.spec)
    return [problem_seed(task, mid, rep.layer, p, options, seed) for p in problems]


def call_options(fn: Any, args: dict[str, Any], exclude: Sequence[str]) -> dict[str, Any]:
    """A task call's options as JSON (the shorthand the command line passes): every parameter of ``fn`` but
    ``exclude``, objects as their specs, None left out. The command line's jobs carry these options and a sweep
    runner passes them back to the task, so a picture's record names the same configuration whichever path made
    it (``Result.jobs``)."""
    import inspect

    from ..engine.optimize import Energy
    from ..engine.param import Parameterization
    from ..engine.priors import BNPrior
    from ..engine.schedules import Stage, schedule_record
    from ..engine.styles import Style, style_record
    from ..engine.transforms import parse_transforms, transforms_spec

    out: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in exclude or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        v = args.get(name, p.default)
        if v is None or v is inspect.Parameter.empty:
            continue
        v = plain(v)
        if isinstance(v, Style):
            v = style_record(v)
        elif isinstance(v, (Parameterization, BNPrior)):
            v = v.spec()
        elif name == "transforms":
            v = transforms_spec(parse_transforms(v))
        elif isinstance(v, Energy):
            v = vars(v)
        elif name == "schedule":
            v = schedule_record([s if isinstance(s, Stage) else Stage(**s) for s in v])
        elif isinstance(v, torch.Tensor):
            v = tensor_fingerprint(v)
        elif name in ("C", "judge", "images") and not isinstance(v, (list, tuple)):
            v = [v]
        elif name == "size" and isinstance(v, int):
            v = [v, v]
        out[name] = v
    return out


def plain(v: Any) -> Any:
    """v with numpy's scalars and arrays as Python numbers and lists, tuples as lists (what JSON writes)."""
    if isinstance(v, (list, tuple)):
        return [plain(a) for a in v]
    if type(v).__module__ == "numpy" and hasattr(v, "tolist"):
        return v.tolist()
    return v
