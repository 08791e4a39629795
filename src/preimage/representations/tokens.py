"""Token outputs as maps: vision transformers' N×T×C and channels-last N×H×W×C outputs seen as N×C×h×w.

Two layouts besides the CNN's N×C×H×W:

* ``tokens`` (ViT, DeiT, BEiT, EVA, CaiT, CoaT, PVT and LeViT blocks): N×T×C with T = P + h·w: P *prefix*
  tokens (class, distillation, register tokens) followed by the patch grid, row by row;
* ``nhwc`` (Swin stages, MaxViT's attention blocks): N×H×W×C, channels last.

A layout is read off one output's shape, knowing the input size and the prefix tokens the model declares
(timm's ``num_prefix_tokens``, torchvision's class token; else none or one class token, as CoaT's blocks): the
patch grid must have the input's aspect ratio.
Pure functions on tensors; the grid's size is recomputed for every input size (dynamic-size models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PreimageError


@dataclass(frozen=True)
class TokenLayout:
    """How a layer's output holds its map: ``kind`` "tokens" (N×T×C, ``prefix`` tokens then the h×w grid)
    or "nhwc" (N×H×W×C). ``names``: the prefix tokens' names ("cls", "dist", "reg0", ...)."""

    kind: str
    prefix: int = 0
    names: tuple[str, ...] = ()

    def grid_size(self, tokens: int, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the patch grid of ``tokens`` tokens for an input of ``size`` (H, W); (0, 0) if none."""
        hw = _grid(tokens - self.prefix, size)
        if hw is None:
            raise PreimageError(f"{tokens} tokens after {self.prefix} prefix tokens do not form a grid with the "
                                f"aspect ratio of a {size[0]}×{size[1]} input")
        return hw

    def to_map(self, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The layer's map, N×C×h×w: the patch grid of N×T×C tokens (prefix tokens dropped), or N×H×W×C
        permuted. A view: no copy. size: the network input's (H, W)."""
        if self.kind == "nhwc":
            return y.permute(0, 3, 1, 2)
        h, w = self.grid_size(y.shape[1], size)
        if h == 0:
            raise PreimageError("this layer outputs prefix tokens only: it has no patch grid (use --token)")
        return y[:, self.prefix:].transpose(1, 2).unflatten(2, (h, w))

    def token(self, y: torch.Tensor, index: int) -> torch.Tensor:
        """Prefix token ``index`` of N×T×C tokens: N×C."""
        return y[:, index]

    def index(self, name: str | int) -> int:
        """The position of a prefix token given by name ("cls", "dist", "reg0", ...) or index; a clear error."""
        if self.kind != "tokens" or self.prefix == 0:
            raise PreimageError("this layer has no prefix tokens (class, distillation or register tokens)")
        if isinstance(name, int) or str(name).isdigit():
            k = int(name)
            if 0 <= k < self.prefix:
                return k
        elif name in self.names:
            return self.names.index(name)
        raise PreimageError(f"unknown token '{name}': this layer has {self.prefix} prefix token(s): "
                            f"{', '.join(self.names) or ''} (or an index 0–{self.prefix - 1})")


def _grid(n: int, size: tuple[int, int]) -> tuple[int, int] | None:
    """(h, w) with h·w = n and h/w the input's aspect ratio H/W (within rounding); (0, 0) for n = 0."""
    if n == 0:
        return 0, 0
    if n < 0:
        return None
    H, W = size
    h = max(round(math.sqrt(n * H / W)), 1)
    for hh in (h, h - 1, h + 1):
        if hh >= 1 and n % hh == 0 and _fits(hh, n // hh, size):
            return hh, n // hh
    return None


def _fits(h: int, w: int, size: tuple[int, int]) -> bool:
    """Can an h×w map come from an H×W input by one stride for both axes? A square input makes a square map;
    otherwise the aspect ratios agree up to one cell of rounding."""
    H, W = size
    if not (1 <= h <= H and 1 <= w <= W):
        return False
    return h == w if H == W else abs(h * W - w * H) < max(H, W)


def prefix_names(net: nn.Module) -> tuple[str, ...]:
    """The prefix tokens a model declares, in order: timm's class/distillation/register tokens
    (``num_prefix_tokens``), torchvision's class token; () when it declares none."""
    n = getattr(net, "num_prefix_tokens", None)
    if isinstance(n, int) and n > 0:
        names = (["cls"] if getattr(net, "cls_token", None) is not None else [])
        names += ["dist"] if getattr(net, "dist_token", None) is not None else []
        names += [f"reg{i}" for i in range(n - len(names))]
        return tuple(names)
    if isinstance(getattr(net, "class_token", None), torch.Tensor):  # torchvision VisionTransformer
        return ("cls",)
    return ()


def find_layout(shape: tuple[int, ...], size: tuple[int, int], names: tuple[str, ...] = ()) -> TokenLayout | None:
    """The token layout of one sample's output ``shape`` for an input of ``size`` (H, W), or None for an
    N×C×H×W map (or an output that holds no map). names: the model's prefix tokens (``prefix_names``)."""
    if len(shape) == 3:  # N×C×H×W unless only channels-last fits the input's aspect ratio
        c, h, w = shape
        if not _fits(h, w, size) and _fits(c, h, size):
            return TokenLayout("nhwc")
        return None
    if len(shape) != 2:
        return None
    t = shape[0]
    for p in dict.fromkeys((len(names), 0, 1)):  # the model's own prefix count, else none or a class token
        if p > t or (p == t and not (names and p == len(names))):
            continue  # prefix tokens only: only when the model declares exactly these
        if _grid(t - p, size) is not None:
            own = names if p == len(names) else ("cls",) if p == 1 else ()
            return TokenLayout("tokens", p, own)
    return None


def is_attention(module: nn.Module) -> bool:
    """Does this module mix information across all positions it sees (self-attention, linear attention)?

    By class name, as the families name them: ``Attention``, ``WindowAttention``, ``ClassAttn``,
    ``MultiheadAttention``, EfficientViT's ``LiteMLA``. Spatial gates (CBAM's ``SpatialAttn``) are local.
    """
    name = type(module).__name__.lower()
    if name.startswith("spatial") or "spatialattn" in name:
        return False
    return "attention" in name or "attn" in name or name == "litemla"
