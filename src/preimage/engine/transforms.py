"""Jitter canvas bookkeeping (paper-notes §1.1, §1.6): the image lives on a canvas J−1 pixels larger than
the network input; each step the network sees a random H×W window of it."""

from __future__ import annotations

import torch


def canvas_size(size: tuple[int, int], jitter: int) -> tuple[int, int]:
    """(H, W) and jitter J → canvas (H+J−1, W+J−1)."""
    return size[0] + jitter - 1, size[1] + jitter - 1


def centre_offset(jitter: int) -> int:
    """Where the image sits on its canvas: floor((J−1)/2) in both directions."""
    return (jitter - 1) // 2


def place_on_canvas(x: torch.Tensor, jitter: int) -> torch.Tensor:
    """N×C×H×W → zero canvas N×C×(H+J−1)×(W+J−1) with x at the centre offset."""
    if jitter == 1:
        return x.clone()
    n, c, h, w = x.shape
    ch, cw = canvas_size((h, w), jitter)
    o = centre_offset(jitter)
    canvas = x.new_zeros(n, c, ch, cw)
    canvas[..., o:o + h, o:o + w] = x
    return canvas


def centre_crop(canvas: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The H×W window at the centre offset of a canvas (the inverse of ``place_on_canvas``)."""
    o = centre_offset(canvas.shape[-2] - size[0] + 1)
    return canvas[..., o:o + size[0], o:o + size[1]]


def random_offset(canvas: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> tuple[int, int]:
    """Top-left (row, col) of a random H×W window of the canvas, each uniform in {0..J−1}.

    Drawn from a CPU generator, so choosing the window never waits for a GPU. (0, 0) without a draw when the
    canvas is the input's size (J = 1).
    """
    jy_max = canvas.shape[-2] - size[0]
    jx_max = canvas.shape[-1] - size[1]
    if jy_max == 0 and jx_max == 0:
        return 0, 0
    jy = int(torch.randint(jy_max + 1, (1,), generator=generator))
    jx = int(torch.randint(jx_max + 1, (1,), generator=generator))
    return jy, jx


def random_crop(canvas: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """A random H×W window of the canvas, offsets drawn uniformly in {0..J−1} (shared across the batch).

    Returns a view, so the loss gradient flows back into that window only.
    """
    jy, jx = random_offset(canvas, size, generator)
    return canvas[..., jy:jy + size[0], jx:jx + size[1]]
