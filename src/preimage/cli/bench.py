"""``preimage bench speed|transfer|quality``: speed against the bare network, batching, memory and Lucent; class
transfer to a judge network; inversion time-to-quality."""

from __future__ import annotations

from pathlib import Path
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
    log,
    out_console,
)

bench_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Measure: speed (ours against the bare network and Lucent), transfer (class pre-images "
                             "judged by another network) or quality (inversion error for the time spent).")
app.add_typer(bench_app, name="bench")

SizeOpt = Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)", **SIZE)]
ThreadsOpt = Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's)", **THREADS)]
LucentPyOpt = Annotated[str | None, typer.Option(help="Python of an environment with torch-lucent "
                                                 "(default: benchmarks/lucent-venv)")]


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _lucent_python(path: str | None) -> None:
    """A --lucent-python that is not an executable file is an error, not a silent skip."""
    if path is not None and not (Path(path).is_file() or Path(path).is_symlink()):
        raise PreimageError(f"--lucent-python {path} is not a file: give the Python of an environment with "
                           "torch-lucent (benchmarks/setup_lucent.sh makes one)")


@bench_app.command()
def speed(model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None, weights: WeightsOpt = None,
          random_weights: RandomOpt = False, size: SizeOpt = None,
          batch: Annotated[int, typer.Option(help="problems in the batched run", **COUNT)] = 8,
          iters: Annotated[int, typer.Option(help="optimizer iterations per timed run", **ITERS)] = 10,
          repeats: Annotated[int, typer.Option(help="interleaved repeats per ratio (medians reported)",
                                               **COUNT)] = 5,
          threads: ThreadsOpt = None,
          amp: Annotated[str | None, typer.Option(help="mixed precision for the network: bf16 or fp16")] = None,
          compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network (start-up cost)")]
          = False,
          channel: Annotated[int, typer.Option(help="channel for the Lucent comparison", **INDEX)] = 0,
          lucent: Annotated[bool, typer.Option("--lucent/--no-lucent", help="compare with Lucent's render_vis "
                                               "when its environment exists")] = True,
          lucent_python: LucentPyOpt = None,
          memory: Annotated[bool, typer.Option("--memory/--no-memory", help="measure peak memory")] = True,
          device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """Time one iteration against the bare network, batched against sequential runs, peak memory, and Lucent."""
    from ..experiments.bench import run_bench

    _lucent_python(lucent_python)
    info = run_bench(model, layer, weights=weights, random_weights=random_weights, size=size, batch=batch,
                     iters=iters, repeats=repeats, device=device, amp=amp, compile=compile, n_threads=threads,
                     channel=channel, with_lucent=lucent, lucent_python_path=lucent_python, with_memory=memory,
                     say=log)

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


@bench_app.command()
def quality(model: ModelOpt = "efficientnet_lite0",
            layer: Annotated[str | None, typer.Option(help="layers, comma-separated (default for efficientnet_lite0: "
                                                      "blocks.1-6)")] = None,
            weights: WeightsOpt = None, random_weights: RandomOpt = False, size: SizeOpt = None,
            images: Annotated[str, typer.Option(help="how many bundled colour samples (the tuning set), 'heldout' "
                                                "or 'heldout:N' (the held-out photographs, the reporting set), "
                                                "'heldout2[:N]' (a second held-out set) or image files, "
                                                "comma-separated")] = "8",
            methods: Annotated[str, typer.Option(help="PARAM:ITERS[:LR_SCALE], comma-separated ('fast' is the "
                                                 "style)")] = "pixel:350,fast:120",
            threads: ThreadsOpt = None, as_json: JsonOpt = False) -> None:
    """Inversion time-to-quality: the median error of --style fast after 120 iterations against the paper's
    350, per layer (benchmarks/time_to_quality.py: the full table)."""
    from ..experiments.quality import LITE0_LAYERS, parse_method, time_to_quality

    wanted = [m for m in methods.split(",") if m.strip()]
    for m in wanted:
        parse_method(m)
    if layer is not None and not layer.strip():
        raise PreimageError("--layer is empty: name layers, comma-separated, or leave it out")
    layers = [s.strip() for s in layer.split(",") if s.strip()] if layer else (
        list(LITE0_LAYERS) if model == "efficientnet_lite0" else [None])
    _threads(threads)
    info = time_to_quality(model, layers, images, wanted, size=size, weights=weights, random_weights=random_weights,
                           say=log)

    def human() -> None:
        from rich.table import Table

        what = "bundled sample(s)" if all(i.startswith("sample:") for i in info["images"]) else "image(s)"
        t = Table(title=f"{info['model']}: median inversion error (%) on {len(info['images'])} {what}")
        for c in ("layer", *info["methods"], "fast ≤ paper"):
            t.add_column(c)
        for r in info["rows"]:
            verdict = "" if "fast_le_paper" not in r else ("yes" if r["fast_le_paper"] else "no")
            t.add_row(str(r["layer"] or "output"), *(f"{100 * r[k]['median_error']:.1f} ({r[k]['seconds']:.0f} s)"
                                                     for k in info["methods"]), verdict)
        out_console.print(t)

    emit(info, as_json, human)


@bench_app.command()
def transfer(model: ModelOpt = "efficientnet_lite0",
             classes: Annotated[str, typer.Option(help="class indices, or 'tuning' (25, 75, …, 975: the 20 "
                                                  "classes styles are chosen on) or 'reporting' (50, 100, …, 950, "
                                                  "999: 20 others, never chosen on)")] = "25,525",
             styles: Annotated[str, typer.Option(help="variants, e.g. paper,natural,natural/no-prior")]
             = "paper,natural",
             judge: Annotated[str, typer.Option(help="the judge network")] = "efficientnet_lite1",
             iters: Annotated[int | None, typer.Option(help="iterations per pre-image (default: each style's)",
                                                       **ITERS)] = None,
             out: Annotated[str, typer.Option(help="folder for the pictures and their store")]
             = "preimage-bench-transfer",
             force: Annotated[bool, typer.Option("--force", help="recompute pictures already in the store")] = False,
             lucent: Annotated[bool, typer.Option("--lucent/--no-lucent", help="also Lucent's render_vis defaults "
                                                  "when its environment exists")] = True,
             lucent_python: LucentPyOpt = None, threads: ThreadsOpt = None, as_json: JsonOpt = False) -> None:
    """Class transfer: the model's class pre-images judged by another network (top-1 rate, mean p(class), seconds
    per pre-image), per style and Lucent. Pictures are sweep jobs kept in --out: a rerun judges the stored ones."""
    from ..experiments.heldout import parse_classes
    from ..experiments.transfer import VARIANTS, class_transfer

    cls = parse_classes(classes)
    variants = [s.strip() for s in styles.split(",") if s.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise PreimageError(f"--styles: unknown variant '{unknown[0] if unknown else styles}' "
                            f"(choose from: {', '.join(VARIANTS)})")
    _lucent_python(lucent_python)
    _threads(threads)
    info = class_transfer(model, judge, cls, variants, out=Path(out), iters=iters, lucent=lucent,
                          lucent_python_path=lucent_python, threads=threads or 1, force=force, say=log)

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
