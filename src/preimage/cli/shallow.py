"""``preimage reproduce hog-table``: the HOG/HOGb/DSIFT inversion table on a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import PreimageError
from ..representations import parse_device
from .common import (
    ITERS,
    SIZE,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    SeedOpt,
    emit,
    log,
    out_console,
    progress_bar,
)
from .evaluation import reproduce_app

ExactGradientOpt = Annotated[bool, typer.Option("--exact-gradient", help="HOG only: the paper's behaviour, the "
                                                "hard binning's own gradient at one resolution (default: the "
                                                "bilinear binning's gradient and a coarse-to-fine start)")]


def gradient_options(model: str, exact_gradient: bool) -> dict[str, bool]:
    """The builder options for ``--exact-gradient``; an error for models it does not apply to."""
    if not exact_gradient:
        return {}
    if model != "hog":
        raise PreimageError(f"--exact-gradient applies to --model hog only ({model} has no surrogate gradient)")
    return {"exact_gradient": True}


@reproduce_app.command("hog-table")
def hog_table(images: Annotated[str, typer.Option(help="a folder of images, or 'samples' (scikit-image's colour "
                                                  "samples)")] = "samples",
              max_side: Annotated[int | None, typer.Option("--max-side", help="downscale images whose longer side "
                                                           "is larger (default: original resolution, as the "
                                                           "paper)", **SIZE)] = None,
              models: Annotated[str, typer.Option(help="comma-separated, among hog, hogb, dsift")] = "hog,hogb,dsift",
              iters: Annotated[int, typer.Option(help="iterations per inversion (the paper's 300)", **ITERS)] = 300,
              pngs: Annotated[bool, typer.Option("--pngs/--no-pngs", help="save every pre-image and a grid")] = True,
              out: Annotated[Path, typer.Option(help="output folder")] = Path("preimage-hog-table"),
              exact_gradient: ExactGradientOpt = False, seed: SeedOpt = 0, force: ForceOpt = False,
              device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """The IJCV HOG table: mean inversion error ± 95% CI of HOG, HOGb and DSIFT over a folder (grey, C=100)."""

    from ..experiments.reproduce.cnn_layers import check_previous
    from ..experiments.reproduce.hog_table import MODELS, collect_images, run_hog_table
    from ..images import atomic_write_bytes, fingerprint, save_png
    from ..report import check_folder, save_grid, write_json
    from ..report.store import Store

    dev = parse_device(device)
    names = [m.strip() for m in models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or not names:
        raise PreimageError(f"--models takes some of {', '.join(MODELS)}, got '{models}'")
    found, skipped = collect_images(images, max_side=max_side, models=names, log=log)
    outdir = check_folder(out)
    config = {"protocol": "ijcv-hog-table/1", "images": [fingerprint(im.spec) for im in found], "models": names,
              "iters": iters, "seed": seed, "max_side": max_side, "exact_gradient": exact_gradient, "pngs": pngs}
    # A rerun of the same table rewrites its report from the stored results; another table's is refused first.
    check_previous(outdir, config, force, "hog-table.json")
    with progress_bar(f"hog-table: {len(found)} images × {len(names)} models") as update:
        table = run_hog_table(found, models=names, iters=iters, seed=seed, device=dev, skipped=skipped,
                              source=images, max_side=max_side, exact_gradient=exact_gradient,
                              store=Store(outdir / "store"), force=force, progress=update)
    summary = table.to_json() | {"config": config}
    if pngs:
        tiles = []
        for im in found:
            tiles.append(im.image[0])
            for m in names:
                pic = table.pictures[f"{im.name}/{m}"]
                save_png(pic, outdir / f"{im.name}-{m}.png", "minmax")
                tiles.append(pic)
        summary["grid"] = str(save_grid(tiles, outdir / "hog-table.png", ncol=1 + len(names)))
    md = table.markdown()
    atomic_write_bytes(outdir / "hog-table.md", md.encode())
    summary["markdown"] = str(outdir / "hog-table.md")
    summary["json"] = str(write_json(outdir / "hog-table.json", summary))

    emit(summary, as_json, lambda: out_console.print(md, markup=False))
