"""``preimage bench``: speed against the bare network, batching, memory, and Lucent."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import PreimageError
from .common import (
    COUNT,
    INDEX,
    ITERS,
    SIZE,
    THREADS,
        DeviceOpt,
    JsonOpt,
    LayerOpt,
    ModelOpt,
    RandomOpt,
    WeightsOpt,
    app,
    emit,
    err_console,
    out_console,
)


@app.command()
def bench(model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None, weights: WeightsOpt = None,
          random_weights: RandomOpt = False,
          size: Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)",
                                                   **SIZE)] = None,
          batch: Annotated[int, typer.Option(help="problems in the batched run", **COUNT)] = 8,
          iters: Annotated[int | None, typer.Option(help="optimizer iterations per timed run (default 10); "
                                                    "--transfer: per pre-image (default: each style's)",
                                                    **ITERS)] = None,
          repeats: Annotated[int, typer.Option(help="interleaved repeats per ratio (medians reported)",
                                               **COUNT)] = 5,
          threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's)", **THREADS)] = None,
          amp: Annotated[str | None, typer.Option(help="mixed precision for the network: bf16 or fp16")] = None,
          compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network (start-up cost)")]
          = False,
          channel: Annotated[int, typer.Option(help="channel for the Lucent comparison", **INDEX)] = 0,
          lucent: Annotated[bool, typer.Option("--lucent/--no-lucent", help="compare with Lucent's render_vis "
                                               "when its environment exists")] = True,
          lucent_python: Annotated[str | None, typer.Option(help="Python of an environment with torch-lucent "
                                                            "(default: benchmarks/lucent-venv)")] = None,
          memory: Annotated[bool, typer.Option("--memory/--no-memory", help="measure peak memory")] = True,
          transfer: Annotated[bool, typer.Option("--transfer", help="instead of speed: class transfer, the model's "
                                                 "class pre-images judged by --judge (top-1 rate, mean p(class), "
                                                 "seconds per pre-image), per style and Lucent")] = False,
          classes: Annotated[str, typer.Option(help="--transfer: class indices (the full table: every 50th from "
                                               "25, benchmarks/transfer.py)")] = "25,525",
          styles: Annotated[str, typer.Option(help="--transfer: variants, e.g. paper,natural,natural/no-prior")]
          = "paper,natural",
          judge: Annotated[str, typer.Option(help="--transfer: the judge")] = "efficientnet_lite1",
          out: Annotated[str, typer.Option(help="--transfer: folder for the pictures")] = "preimage-bench-transfer",
          quality: Annotated[bool, typer.Option("--quality", help="instead of speed: inversion time-to-quality, "
                                                "the median error of --style fast against the paper's 350 "
                                                "iterations, per layer (--layer: comma-separated; default for "
                                                "efficientnet_lite0: blocks.1-6)")] = False,
          images: Annotated[int, typer.Option(help="--quality: how many bundled colour samples", **COUNT)] = 8,
          methods: Annotated[str, typer.Option(help="--quality: PARAM:ITERS[:LR_SCALE], comma-separated ('fast' "
                                               "is the style)")] = "pixel:350,fast:120",
          device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """Time one iteration against the bare network, batched against sequential runs, peak memory, and Lucent;
    or, with --transfer, how well another network recognises the class pre-images; or, with --quality, how close
    the fast style's inversions get in 120 iterations to the paper's in 350."""
    from ..experiments.bench import lucent_python as check_lucent
    from ..experiments.bench import run_bench

    if lucent_python is not None:  # a given path that is not a Python ends here, before any measurement
        check_lucent(lucent_python)
    if transfer and quality:
        raise PreimageError("--transfer and --quality are two different benches: give one")
    if transfer:
        return _transfer(model, classes, styles, judge, out, iters, threads, lucent, lucent_python, as_json)
    if quality:
        return _quality(model, layer, weights, random_weights, size, images, methods, iters, threads, as_json)
    iters = iters or 10

    info = run_bench(model, layer, weights=weights, random_weights=random_weights, size=size, batch=batch,
                     iters=iters, repeats=repeats, device=device, amp=amp, compile=compile, n_threads=threads,
                     channel=channel, with_lucent=lucent, lucent_python_path=lucent_python, with_memory=memory,
                     say=lambda msg: err_console.print(msg, markup=False, highlight=False))

    def human() -> None:
        from rich.table import Table

        t = Table(title=f"{info['model']} {info['layer']}, {info['size'][0]} px, {info['device']}, "
                        f"{info['threads']} thread(s)")
        for c in ("measure", "ratio", "ours", "reference"):
            t.add_column(c)
        for r in info["rows"]:
            if "ratio" in r:
                t.add_row(r["measure"], f"{r['ratio']:.2f}×", f"{r['ours_ms']:.1f} ms",
                          f"{r['reference_ms']:.1f} ms ({r['reference']})")
            else:
                parts = [f"{k.split('_')[0]} {r[k]:.0f} MB" for k in ("inversion_mb", "geometry_mb") if r.get(k)]
                t.add_row(r["measure"], "", f"{r['mb']:.0f} MB", ", ".join(parts))
        out_console.print(t)
        if "skipped" in info["lucent"]:
            out_console.print(f"Lucent: {info['lucent']['skipped']}")
        out_console.print("ratios: medians over interleaved repeats in this run; lower is better")

    emit(info, as_json, human)


def _quality(model: str, layer: str | None, weights: str | None, random_weights: bool, size: int | None,
             images: int, methods: str, iters: int | None, threads: int | None, as_json: bool) -> None:
    """``bench --quality``: the time-to-quality rows (benchmarks/time_to_quality.py: the full table)."""
    import torch

    from ..experiments.quality import LITE0_LAYERS, time_to_quality

    if iters is not None:
        raise PreimageError("--quality takes the iterations in --methods (e.g. fast:120,pixel:350), not --iters")
    layers = [s.strip() for s in layer.split(",") if s.strip()] if layer else (
        list(LITE0_LAYERS) if model == "efficientnet_lite0" else [None])
    if threads:
        torch.set_num_threads(threads)
    info = time_to_quality(model, layers, images, [m for m in methods.split(",") if m.strip()], size=size,
                           weights=weights, random_weights=random_weights,
                           say=lambda m: err_console.print(m, markup=False, highlight=False))

    def human() -> None:
        from rich.table import Table

        t = Table(title=f"{info['model']}: median inversion error (%) on {len(info['images'])} bundled sample(s)")
        for c in ("layer", *info["methods"], "fast ≤ paper"):
            t.add_column(c)
        for r in info["rows"]:
            verdict = "" if "fast_le_paper" not in r else ("yes" if r["fast_le_paper"] else "no")
            t.add_row(str(r["layer"] or "output"), *(f"{100 * r[k]['median_error']:.1f} ({r[k]['seconds']:.0f} s)"
                                                     for k in info["methods"]), verdict)
        out_console.print(t)

    emit(info, as_json, human)


def _transfer(model: str, classes: str, styles: str, judge: str, out: str, iters: int | None, threads: int | None,
              lucent: bool, lucent_python: str | None, as_json: bool) -> None:
    """``bench --transfer``: the class-transfer rows for a few classes (benchmarks/transfer.py: all 20)."""
    from pathlib import Path

    import torch

    from ..experiments.transfer import class_transfer

    try:
        cls = [int(c) for c in classes.split(",") if c.strip()]
    except ValueError:
        raise PreimageError(f"--classes takes class indices like 25,525; got '{classes}'") from None
    if not cls:
        raise PreimageError("--classes needs at least one class")
    if threads:
        torch.set_num_threads(threads)
    info = class_transfer(model, judge, cls, [s.strip() for s in styles.split(",") if s.strip()], out=Path(out),
                          iters=iters, lucent=lucent, lucent_python_path=lucent_python, threads=threads or 1,
                          say=lambda m: err_console.print(m, markup=False, highlight=False))

    def human() -> None:
        from rich.table import Table

        t = Table(title=f"{info['model']} class pre-images judged by {info['judge']}, classes {info['classes']}")
        for c in ("method", "iterations", "top-1", "mean p(class)", "s per pre-image"):
            t.add_column(c)
        for r in info["rows"]:
            if "skipped" in r:
                t.add_row(r["method"], "", r["skipped"], "", "")
                continue
            n = len(r.get("classes") or [])
            t.add_row(r["method"], str(r.get("iterations", r.get("steps", ""))), f"{sum(r.get('top1', []))}/{n}",
                      f"{r['mean_probability']:.3f}" if n else "", f"{r.get('per_image_seconds', 0):.1f}")
        out_console.print(t)

    emit(info, as_json, human)
