"""Plots of metrics against layers (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..images import atomic_write_bytes


def metric_vs_layer(path: str | Path, layers: Sequence[str],
                    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], ylabel: str, title: str = "",
                    ylim: tuple[float, float] | None = None) -> Path:
    """One line per series over the layers, with error bars (e.g. the 95% CI half-widths).

    series: label → (means, half-widths), each one value per layer (NaN: no point / no bar).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # An Agg canvas without pyplot: no global backend switch, no display needed, safe in threads.
    fig = Figure(figsize=(max(6.0, 0.45 * len(layers) + 2), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(layers)))
    for label, (means, cis) in series.items():
        err = [0.0 if (c is None or math.isnan(c)) else c for c in cis]
        ys = [math.nan if m is None else m for m in means]
        ax.errorbar(xs, ys, yerr=err, marker="o", markersize=4, capsize=3, label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
