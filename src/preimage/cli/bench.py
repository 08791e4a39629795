"""``preimage bench``: speed against the bare network, batching, memory, and Lucent."""

from __future__ import annotations

from typing import Annotated

import typer

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
          iters: Annotated[int, typer.Option(help="optimizer iterations per timed run", **ITERS)] = 10,
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
          device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """Time one iteration against the bare network, batched against sequential runs, peak memory, and Lucent."""
    from ..experiments.bench import run_bench

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
