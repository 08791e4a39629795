"""``preimage atlas``: every unit of every layer as a static site, computed by the sweep engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import PreimageError
from ..representations import parse_device
from .common import (
    AddressOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    ModelOpt,
    RandomOpt,
    RayCpusOpt,
    RayOpt,
    SeedOpt,
    ThreadsOpt,
    WeightsOpt,
    app,
    emit,
    log,
    out_console,
    sweep_backend,
    sweep_bar,
)


@app.command()
def atlas(model: ModelOpt = "efficientnet_lite0",
          layers: Annotated[str, typer.Option(help="comma-separated layers, or 'all' (the network's main layers "
                                              "with channels)")] = "all",
          units: Annotated[str, typer.Option(help="'all', or unit indices like 0-63 or 3,5,7 (per layer, those it "
                                             "has)")] = "all",
          images: Annotated[str, typer.Option(help="a folder of images for the dataset examples and inversions, or "
                                              "'samples' (scikit-image's colour samples)")] = "samples",
          out: Annotated[Path, typer.Option(help="output folder (rerun to resume)")] = Path("preimage-atlas"),
          iters: Annotated[int | None, typer.Option(min=1, max=100000, help="iterations per optimization "
                                                    "(default: 64 for maximization's natural style, 300+50 for "
                                                    "inversion)")] = None,
          restarts: Annotated[int, typer.Option(min=1, max=64, help="pre-images per unit")] = 2,
          mode: Annotated[str, typer.Option(help="channel (the channel's mean, default) or neuron (its centre)")]
          = "channel",
          unit_size: Annotated[int | None, typer.Option(min=8, max=2048, help="input side of the maximization "
                                                        "(default: from the receptive field)")] = None,
          size: Annotated[int | None, typer.Option(min=16, max=2048, help="input side of the examples, inversions "
                                                   "and caricatures (default: the model's)")] = None,
          inversions: Annotated[int, typer.Option(min=0, max=100, help="images inverted and caricatured per "
                                                  "layer")] = 3,
          batch: Annotated[int, typer.Option(min=1, max=4096, help="most problems optimized at once")] = 16,
          ray: RayOpt = False, address: AddressOpt = None, ray_cpus: RayCpusOpt = None,
          seed: SeedOpt = 0, weights: WeightsOpt = None, random_weights: RandomOpt = False, force: ForceOpt = False,
          device: DeviceOpt = "cpu", threads: ThreadsOpt = None,
          check: Annotated[bool, typer.Option("--check", help="run the trust check on every unit's pictures against "
                                              "--images (channel mode, at least 7 images): unit pages show the "
                                              "verdict and the numbers, layer pages mark flagged units")] = False,
          as_json: JsonOpt = False) -> None:
    """Every unit of every layer: pre-images, dataset examples and statistics, as a static site (resumable)."""
    from ..experiments.atlas import run_atlas
    from .activation import parse_units

    parse_device(device)
    if threads is not None:  # torch threads of the in-process backend (Ray workers use one per CPU they ask for)
        import torch

        if threads < 1:
            raise PreimageError("--threads must be at least 1")
        torch.set_num_threads(threads)
    if not layers.strip() or any(not s.strip() for s in layers.split(",")):  # "" is not "all": say so
        raise PreimageError(f"--layers has an empty name ({layers!r}): give comma-separated layers (see "
                            "'preimage layers') or 'all'")
    layer_list = None if layers.strip() == "all" else [s.strip() for s in layers.split(",")]
    unit_list = None if units.strip() == "all" else parse_units(units)
    run_on = sweep_backend(ray, address, ray_cpus)
    with sweep_bar("atlas") as update:
        info = run_atlas(model, out, layers=layer_list, units=unit_list, images=images, iters=iters,
                         restarts=restarts, mode=mode, unit_size=unit_size, size=size, inversions=inversions,
                         batch=batch, seed=seed, force=force, device=device, weights=weights,
                         random_weights=random_weights, backend=run_on, progress=update, check=check, log=log)

    def human() -> None:
        c = info["jobs"]
        out_console.print(f"{c['total']} jobs: {c['done']} computed, {c['cached']} cached, {c['failed']} failed; "
                          f"{info['seconds']:.0f} s; open {info['page']}", markup=False)

    emit(info, as_json, human)
    if info["jobs"]["failed"]:
        raise typer.Exit(1)
