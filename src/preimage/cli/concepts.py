"""``preimage concepts``: learn or load a dictionary of concepts on a layer, and a page that shows every concept
(natural pre-image, exemplars with heatmaps, statistics), computed by the sweep engine (resumable, ``--ray``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
def concepts(model: ModelOpt = "efficientnet_lite0",
             layer: Annotated[str | None, typer.Option("--layer", "-l", help="the layer whose activations the "
                                                       "dictionary reads (see 'preimage layers')")] = None,
             images: Annotated[str, typer.Option(help="a folder of images (recursive), or 'samples'")] = "samples",
             k: Annotated[int | None, typer.Option("--concepts", min=1, max=1_000_000,
                                                   help="number of concepts K to train")] = None,
             method: Annotated[str, typer.Option(help="topk, batchtopk (sparse autoencoders) or nmf")] = "topk",
             top_k: Annotated[int | None, typer.Option(min=1, max=1_000_000, help="active concepts per position "
                                                       "(topk; the mean for batchtopk); default K/10")] = None,
             load: Annotated[Path | None, typer.Option(help="read a dictionary instead of training one: ours "
                                                       "(.safetensors), an overcomplete model's state dict, or a "
                                                       "plain state dict (encoder.weight K×D, encoder.bias K, "
                                                       "decoder.weight D×K, decoder.bias D)")] = None,
             out: Annotated[Path, typer.Option(help="output folder (rerun to resume)")] = Path("preimage-concepts"),
             max_rows: Annotated[int, typer.Option(min=1, max=100_000_000, help="activation rows kept for "
                                                   "training (a uniform sample of all positions)")] = 65536,
             epochs: Annotated[int | None, typer.Option(min=1, max=1_000_000, help="training passes over the rows "
                                                        "(default: enough for 2000 steps)")] = None,
             size: Annotated[int | None, typer.Option(min=16, max=2048, help="input side (default: the "
                                                      "model's)")] = None,
             iters: Annotated[int | None, typer.Option(min=1, max=100000, help="iterations of each concept's "
                                                       "picture (default: the natural style's)")] = None,
             top: Annotated[int, typer.Option(min=1, max=64, help="exemplar images per concept")] = 6,
             position: Annotated[str, typer.Option(help="where a picture excites its concept: centre (the map's "
                                                   "centre position) or mean (all positions)")] = "centre",
             no_stability: Annotated[bool, typer.Option("--no-stability", help="skip the second-seed dictionary "
                                                        "(the stability measure)")] = False,
             ray: RayOpt = False, address: AddressOpt = None, ray_cpus: RayCpusOpt = None,
             seed: SeedOpt = 0, weights: WeightsOpt = None, random_weights: RandomOpt = False, force: ForceOpt = False,
             device: DeviceOpt = "cpu", threads: ThreadsOpt = None, as_json: JsonOpt = False) -> None:
    """Learn (or --load) a dictionary of concepts on a layer and show each concept as a unit: page + dictionary."""
    from ..errors import PreimageError
    from ..experiments.concepts import run_concepts

    parse_device(device)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if layer is None or not layer.strip():
        raise PreimageError("--layer is needed: the layer whose activations the dictionary reads (see "
                            "'preimage layers')")
    if load is None and k is None:
        raise PreimageError("give --concepts K (the number of concepts to train), or --load FILE")
    run_on = sweep_backend(ray, address, ray_cpus)
    with sweep_bar("concepts") as update:
        info = run_concepts(model, layer, images, k, out=out, method=method, top_k=top_k,
                            load=str(load) if load else None, max_rows=max_rows, epochs=epochs, size=size,
                            iters=iters, top=top, position=position, stability=not no_stability, seed=seed,
                            force=force, device=device, weights=weights, random_weights=random_weights,
                            backend=run_on, progress=update, log=log)

    def human() -> None:
        c = info["jobs"]
        stab = "–" if info["stability"] is None else f"{info['stability']:.3f}"
        out_console.print(f"{info['method']} K={info['k']} on {info['layer']}: r² {info['r2']:.3f}, L0 "
                          f"{info['l0']:.2f}, dead {info['dead']}, stability {stab}; {c['total']} jobs: {c['done']} "
                          f"computed, {c['cached']} cached, {c['failed']} failed; open {info['page']}", markup=False)

    emit(info, as_json, human)
    if info["jobs"]["failed"]:
        raise typer.Exit(1)
