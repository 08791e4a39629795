"""``preimage reproduce ...``: the paper's experiments. Other modules add commands to ``reproduce_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import PreimageError
from ..representations import parse_device
from .common import (
    COUNT,
    ITERS,
    SIZE,
    AddressOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    ModelOpt,
    RandomOpt,
    RayCpusOpt,
    RayOpt,
    SeedOpt,
    WeightsOpt,
    app,
    emit,
    log,
    out_console,
    parse_floats,
    sweep_backend,
    sweep_bar,
)

reproduce_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                            help="Reproduce the paper's tables and figures on any folder of images.")
app.add_typer(reproduce_app, name="reproduce")


def _names(s: str | None) -> list[str] | None:
    return [v.strip() for v in s.split(",") if v.strip()] if s else None


@reproduce_app.command("cnn-layers")
def cnn_layers(model: ModelOpt = "efficientnet_lite0",
               images: Annotated[str, typer.Option(help="a folder of images, or 'samples' (scikit-image's colour "
                                                   "samples)")] = "samples",
               layers: Annotated[str | None, typer.Option(help="comma-separated layers (default: all of the "
                                                          "network's main layers)")] = None,
               C: Annotated[str, typer.Option("--C", "-C", help="data-term weights")] = "1,20,100,300",
               restarts: Annotated[int, typer.Option(help="random restarts per image, layer and C",
                                                     **COUNT)] = 1,
               size: Annotated[int | None, typer.Option(help="input size in pixels (default 96; --paper: the "
                                                        "model's)", **SIZE)] = None,
               iters: Annotated[int | None, typer.Option(help="iterations per inversion (default 60; --paper: "
                                                         "300+50)", **ITERS)] = None,
               paper: Annotated[bool, typer.Option("--paper", help="the paper's size and iterations")] = False,
               noreg: Annotated[bool, typer.Option("--noreg", help="add the no-regularizer baseline (C=1)")] = False,
               batch: Annotated[int, typer.Option(help="most problems optimized at once", **COUNT)] = 32,
               eval_scale: Annotated[str, typer.Option(help="how pre-images are evaluated: minmax (the paper's "
                                                       "saved PNG), clip or raw")] = "minmax",
               out: Annotated[Path, typer.Option(help="output folder (rerun to resume)")] = Path(
                   "preimage-cnn-layers"),
               seed: SeedOpt = 0, weights: WeightsOpt = None, random_weights: RandomOpt = False,
               force: ForceOpt = False, device: DeviceOpt = "cpu", ray: RayOpt = False, address: AddressOpt = None,
               ray_cpus: RayCpusOpt = None, as_json: JsonOpt = False) -> None:
    """The IJCV CNN protocol: error, label agreement and naturalness per layer and C (resumable)."""
    from ..experiments.reproduce.cnn_layers import markdown_table, run_cnn_layers
    from ..measures.metrics import EVAL_SCALES

    if eval_scale not in EVAL_SCALES:
        raise PreimageError(f"--eval-scale must be one of {', '.join(EVAL_SCALES)}, got '{eval_scale}'")
    cs = parse_floats(C, "--C")
    parse_device(device)
    run_on = sweep_backend(ray, address, ray_cpus)
    with sweep_bar("cnn-layers") as update:
        info = run_cnn_layers(model, images, out, layers=_names(layers), C=cs, restarts=restarts, size=size,
                              iters=iters, paper=paper, noreg=noreg, seed=seed, batch=batch, eval_scale=eval_scale,
                              force=force, device=device, weights=weights, random_weights=random_weights,
                              backend=run_on, progress=update, log=log)

    def human() -> None:
        out_console.print(markdown_table(info), markup=False)
        u = info["jobs"]
        out_console.print(f"{u['done']} jobs computed, {u['cached']} reused from disk, {u['failed']} failed; "
                          f"{info['seconds']:.0f} s; open {info['files']['page']}", markup=False)

    emit(info, as_json, human)
    if info["jobs"]["failed"]:
        raise typer.Exit(1)


@reproduce_app.command("figures")
def figures(model: ModelOpt = "efficientnet_lite0",
            image: Annotated[str, typer.Option(help="image path or sample:NAME")] = "sample:chelsea",
            layers: Annotated[str | None, typer.Option(help="comma-separated layers (default: the network's main "
                                                       "layers)")] = None,
            sections: Annotated[str | None, typer.Option(help="comma-separated sections (default: all): "
                                                         "all-layers, restarts, neighbourhoods, channel-halves, "
                                                         "jitter-beta, noreg-inversion, maximize, classes, "
                                                         "caricatures, noreg-activation")] = None,
            size: Annotated[int | None, typer.Option(help="input size in pixels (default 96)", **SIZE)] = None,
            iters: Annotated[int | None, typer.Option(help="iterations per optimization (default 60)",
                                                      **ITERS)] = None,
            paper: Annotated[bool, typer.Option("--paper", help="the paper's size, iterations, all layers")] = False,
            out: Annotated[Path, typer.Option(help="output folder")] = Path("preimage-figures"),
            seed: SeedOpt = 0, weights: WeightsOpt = None, random_weights: RandomOpt = False,
            force: ForceOpt = False, device: DeviceOpt = "cpu", ray: RayOpt = False, address: AddressOpt = None,
            ray_cpus: RayCpusOpt = None,
            judge: Annotated[list[str] | None, typer.Option("--judge", help="judge the class pictures with this "
                                                            "classifier (repeatable); adds 'transfer' to the "
                                                            "JSON")] = None,
            as_json: JsonOpt = False) -> None:
    """The paper's qualitative experiments in one HTML report (every optimization a job of one sweep)."""
    from ..experiments.reproduce.figures import run_figures
    from ..measures.judge import judges as load_judges

    parse_device(device)
    judges = load_judges(judge, device) if judge else []  # a bad name fails before any work
    run_on = sweep_backend(ray, address, ray_cpus)
    with sweep_bar("figures") as update:
        info = run_figures(model, out, image=image, layers=_names(layers), sections=_names(sections), size=size,
                           iters=iters, paper=paper, seed=seed, force=force, device=device, weights=weights,
                           random_weights=random_weights, backend=run_on, progress=update, log=log)
    # The class neurons' pictures (classes/UNIT.png), reloaded from the files by each judge.
    pictures = sorted(Path(out).glob("classes/*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    pictures = [p for p in pictures if p.stem.isdigit()]
    if judges and pictures:
        info["transfer"] = {j.name: {"files": [str(p) for p in pictures],
                                     **j.classes(pictures, [int(p.stem) for p in pictures])} for j in judges}

    def human() -> None:
        for name, t in info.get("transfer", {}).items():
            out_console.print(f"judge {name}: class pictures top-1 for {sum(t['top1'])}/{len(t['top1'])}, mean "
                              f"p(class) {t['mean_probability']:.3f}", markup=False)
        for s in info["sections"]:
            note = f" (skipped: {s['skipped']})" if s["skipped"] else ""
            out_console.print(f"{s['name']:>17}: {len(s['figures'])} figures{note}", markup=False)
        c = info["jobs"]
        out_console.print(f"{c['done']} jobs computed, {c['cached']} reused, {c['failed']} failed; "
                          f"{info['seconds']:.0f} s; open {info['page']}", markup=False)

    emit(info, as_json, human)
    if info["jobs"]["failed"]:
        raise typer.Exit(1)
