"""Core commands: layers, invert, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..images import safe_name
from ..report import OutputDir, picture_files, save_picture, write_json
from .common import (
    COUNT,
    ITERS,
    SIZE,
    WEIGHT,
    AmpOpt,
    ChannelsOpt,
    CompileOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    JudgeOpt,
    LayerOpt,
    ModelOpt,
    ParamOpt,
    PriorOpt,
    PriorWeightOpt,
    RandomOpt,
    SeedOpt,
    ThreadsOpt,
    TransformsOpt,
    WeightsOpt,
    app,
    emit,
    err_console,
    load_rep,
    out_console,
    parse_floats,
    progress_bar,
    style_opt,
)


@app.command()
def layers(model: ModelOpt = "efficientnet_lite0", weights: WeightsOpt = None, random_weights: RandomOpt = False,
           size: Annotated[int | None, typer.Option(help="input size for shapes (default: the model's)",
                                                    **SIZE)] = None,
           channels: ChannelsOpt = None, as_json: JsonOpt = False) -> None:
    """List a model's layers with output shape (token layout and patch grid for vision transformers), stride and
    receptive field (measured on the model)."""
    from ..engine.memory import check_memory
    from ..representations.base import layer_rows

    rep = load_rep(model, None, weights, random_weights, channels=channels)
    hw = (size, size) if size else (rep.defaults.size or (224, 224))
    check_memory(rep, 1, (2 * hw[0], 2 * hw[1]), "measuring the layers")  # probes at twice the size
    rows = layer_rows(rep.spec, hw)

    def human() -> None:
        from rich.table import Table

        t = Table(title=f"{rep.name} at {hw[0]}×{hw[1]}")
        for c in ("layer", "output", "map", "stride", "field", "type"):
            # On a narrow terminal only the module type (last) wraps: names and numbers stay whole.
            t.add_column(c, no_wrap=c != "type", overflow="fold", min_width=6 if c == "field" else None)
        for r in rows:
            name = r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
            shape, grid = "×".join(map(str, r["shape"])), "-"
            if r["tokens"]:
                p, (h, w) = r["tokens"]["prefix"], r["tokens"]["grid"]
                shape = f"{p}+{r['shape'][0] - p} tokens × {r['shape'][1]}" if p else f"{r['shape'][0]} tokens × " \
                    f"{r['shape'][1]}"
                grid = f"{h}×{w} grid" if h else "no grid"
            elif len(r["shape"]) == 3:
                grid = f"{r['shape'][1]}×{r['shape'][2]}" + (" NHWC" if r["layout"] == "nhwc" else "")
            field = "global" if r["global_field"] and not r["receptive_field"] else \
                ("≥" if r["global_field"] else "") + str(r["receptive_field"] or "-")
            t.add_row(name, shape, grid, str(r["stride"] or "-"), field, r["type"])
        out_console.print(t)
        if any(r["fixed_size"] for r in rows):
            out_console.print(f"{rep.name} takes only {hw[0]}×{hw[1]} inputs: measured at that size")

    emit({"model": rep.name, "input_size": list(hw), "layers": rows}, as_json, human)


@app.command()
def invert(image: Annotated[str, typer.Argument(help="image path or sample:NAME (e.g. sample:chelsea)")],
           model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None, weights: WeightsOpt = None,
           random_weights: RandomOpt = False, channels: ChannelsOpt = None,
           C: Annotated[str | None, typer.Option("--C", "-C", help="data-term weight(s), e.g. 100 or 1,20,100,300 "
                                                 "(default: the model's, 100 for CNNs)")] = None,
           iters: Annotated[int | None, typer.Option(help="total iterations (default: the model's, 300+50 for "
                                                     "CNNs, 300 for HOG/DSIFT)", **ITERS)] = None,
           size: Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)",
                                                    **SIZE)] = None,
           restarts: Annotated[int, typer.Option(help="random restarts per image and C", **COUNT)] = 1,
           seed: SeedOpt = 0,
           optimizer: Annotated[str | None, typer.Option(help="paper (momentum+AdaGrad) or adam (default: paper "
                                                         "for the pixel parameterization, adam otherwise)")] = None,
           mask: Annotated[str | None, typer.Option(help="neigh:5 or channels:first-half|second-half|A:B")] = None,
           out: Annotated[Path, typer.Option(help="output folder")] = Path("preimage-out"),
           png_scale: Annotated[str, typer.Option(help="minmax (the paper's) or clip")] = "minmax",
           force: ForceOpt = False, device: DeviceOpt = "cpu", amp: AmpOpt = None, compile: CompileOpt = False,
           threads: ThreadsOpt = None, style: style_opt("paper") = "paper", param: ParamOpt = None,
           transforms: TransformsOpt = None, prior: PriorOpt = None, prior_weight: PriorWeightOpt = None,
           judge: JudgeOpt = None, as_json: JsonOpt = False) -> None:
    """Invert IMAGE's representation at a layer: the image whose features match it."""
    from ..engine.styles import resolve
    from ..images import image_name
    from ..measures.judge import judges as load_judges
    from ..tasks.inversion import invert as run_invert

    cs = parse_floats(C, "--C")
    rep = load_rep(model, layer, weights, random_weights, device, threads, channels)
    resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
            optimizer=optimizer)
    judges = load_judges(judge, device) if judge else []
    stem = f"{image_name(image)}-{safe_name(rep.name)}-{safe_name(rep.layer or 'output')}"
    n_c = len(cs) if cs else 1
    names = [f"{stem}-C{_num(c)}" + (f"-r{r}" if restarts > 1 else "") for c in (cs or [rep.defaults.C])
             for r in range(restarts)] if n_c * restarts > 1 else [stem]
    outdir = OutputDir(out, force)
    outdir.claim([f for n in names for f in picture_files(n, rep.channels)] + [f"{stem}.json"])
    with progress_bar(f"invert {rep.layer or 'output'}") as update:
        res = run_invert(rep, image, C=cs, restarts=restarts, size=size, iters=iters, seed=seed,
                         optimizer=optimizer, mask=mask, progress=update, amp=amp, compile=compile, style=style,
                         param=param, transforms=transforms, prior=prior, prior_weight=prior_weight)
    records = res.records()
    for rec, name, img in zip(records, names, res.images, strict=True):
        rec["image"] = str(save_picture(img, outdir / f"{name}.png", png_scale))
    summary = {"model": res.model, "layer": res.layer, "input": image, "error": records[0]["error"],
               "image": records[0]["image"], "iterations": res.iterations, "seconds": round(res.seconds, 3),
               "seed": seed, "optimizer": res.info["optimizer"], "size": res.info["size"],
               "stages": res.info["stages"], "style": res.info["style"], "param": res.info["param"],
               "transforms": res.info["transforms"], "prior": res.info["prior"], "results": records}
    if judges:
        # Label agreement: the judge's top-1 on the original (as loaded for the inversion) and on each PNG.
        ref = res.info["reference"].repeat_interleave(len(records) // res.info["reference"].shape[0], 0)
        ref = ref.expand(-1, 3, -1, -1) if ref.shape[1] == 1 else ref
        summary["transfer"] = {j.name: j.agreement([r["image"] for r in records], ref) for j in judges}
    summary["json"] = str(write_json(outdir / f"{stem}.json", summary))

    def human() -> None:
        for r in records:
            out_console.print(f"C={_num(r['C'])} restart {r['restart']}: error {100 * r['error']:.1f}%  → {r['image']}")
        for name, t in summary.get("transfer", {}).items():
            out_console.print(f"judge {name}: same top-1 as the original for {sum(t['agree'])}/{len(t['agree'])}")
        out_console.print(f"{res.iterations} iterations in {res.seconds:.1f} s")

    emit(summary, as_json, human)


@app.command()
def demo(out: Annotated[Path, typer.Option(help="output folder")] = Path("preimage-demo"),
         image: Annotated[str, typer.Option(help="image path or sample:NAME")] = "sample:chelsea",
         layers: Annotated[str, typer.Option(help="comma-separated layers")] = ",".join(
             f"blocks.{i}" for i in range(1, 7)),
         size: Annotated[int, typer.Option(help="input size in pixels", **SIZE)] = 224,
         iters: Annotated[int | None, typer.Option(help="iterations per layer (default: 300+50)", **ITERS)] = None,
         C: Annotated[float, typer.Option("--C", "-C", help="data-term weight", **WEIGHT)] = 100.0,
         seed: SeedOpt = 0, force: ForceOpt = False, device: DeviceOpt = "cpu", amp: AmpOpt = None,
         compile: CompileOpt = False, threads: ThreadsOpt = None, as_json: JsonOpt = False) -> None:
    """The main job: invert a sample through several layers of efficientnet_lite0; write PNGs and an HTML page."""
    from ..tasks.demo import run_demo

    layer_list = [s.strip() for s in layers.split(",") if s.strip()]
    with progress_bar("demo", True) as update:
        info = run_demo(out, image=image, layers=layer_list, size=size, iters=iters, C=C, seed=seed, force=force,
                        device=device, progress=update, amp=amp, compile=compile, threads=threads)

    def human() -> None:
        for r in info["layers"]:
            out_console.print(f"{r['layer']:>10}: error {100 * r['error']:.1f}%")
        out_console.print(f"open {info['page']}")

    emit(info, as_json, human)
    if not as_json:
        err_console.print(f"done in {info['seconds']:.0f} s", markup=False)


def _num(v: float) -> str:
    return f"{v:g}"
