"""``preimage bench``: speed against the bare network, batching, memory, and Lucent."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (
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
          size: Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)")] = None,
          batch: Annotated[int, typer.Option(help="problems in the batched run")] = 8,
          iters: Annotated[int | None, typer.Option(min=1, help="optimizer iterations per timed run (default 10); "
                                                    "--transfer: per pre-image (default: each style's)")] = None,
          repeats: Annotated[int, typer.Option(help="interleaved repeats per ratio (medians reported)")] = 5,
          threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's)")] = None,
          amp: Annotated[str | None, typer.Option(help="mixed precision for the network: bf16 or fp16")] = None,
          compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network (start-up cost)")]
          = False,
          channel: Annotated[int, typer.Option(help="channel for the Lucent comparison")] = 0,
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
          device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """Time one iteration against the bare network, batched against sequential runs, peak memory, and Lucent;
    or, with --transfer, how well another network recognises the class pre-images."""
    from ..experiments.bench import run_bench

    if transfer:
        return _transfer(model, classes, styles, judge, out, iters, threads, lucent, lucent_python, as_json)
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


def _transfer(model: str, classes: str, styles: str, judge: str, out: str, iters: int | None, threads: int | None,
              lucent: bool, lucent_python: str | None, as_json: bool) -> None:
    """``bench --transfer``: the class-transfer rows for a few classes (benchmarks/transfer.py: all 20)."""
    from pathlib import Path

    import torch

    from ..errors import PreimageError
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
