"""Core commands: layers, invert, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import PreimageError
from .common import (
    COUNT,
    ITERS,
    SIZE,
    AddressOpt,
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
    RayCpusOpt,
    RayOpt,
    SeedOpt,
    ThreadsOpt,
    TransformsOpt,
    WeightsOpt,
    app,
    emit,
    err_console,
    load_rep,
    one_job_sweep,
    out_console,
    parse_floats,
    prior_option,
    style_opt,
    sweep_backend,
    sweep_bar,
)
from .shallow import ExactGradientOpt, gradient_options


@app.command()
def layers(model: ModelOpt = "efficientnet_lite0", weights: WeightsOpt = None, random_weights: RandomOpt = False,
           size: Annotated[int | None, typer.Option(help="input size for shapes (default: the model's)",
                                                    **SIZE)] = None,
           channels: ChannelsOpt = None, as_json: JsonOpt = False) -> None:
    """List a model's layers with output shape (token layout and patch grid for vision transformers), stride and
    receptive field (measured on the model)."""
    from ..engine.memory import check_memory
    from ..representations.layers import layer_rows

    rep = load_rep(model, "output", weights, random_weights, channels=channels)
    hw = (size, size) if size else (rep.spec.input_size or (224, 224))
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
           optimizer: Annotated[str | None, typer.Option(help="paper (momentum+AdaGrad), adam, hybrid (the "
                                                         "pyramid's: adam on its full-size level, paper on the "
                                                         "coarser ones) or lbfgs (stages without jitter), for every "
                                                         "stage; default: the style's (fast: 10 adam, then lbfgs), "
                                                         "else paper for pixels, hybrid for the pyramid, adam for "
                                                         "the others")] = None,
           mask: Annotated[str | None, typer.Option(help="neigh:N or channels:first-half|second-half|A:B")] = None,
           out: Annotated[Path, typer.Option(help="output folder (rerun to reuse its results)")] = Path("preimage-out"),
           png_scale: Annotated[str | None, typer.Option(help="clip (true colours) or minmax (stretched, as the "
                                                         "paper saved its pictures); default: minmax for the paper "
                                                         "style, else clip")] = None,
           coarse_to_fine: Annotated[bool | None, typer.Option(
               "--coarse-to-fine/--one-level", help="spend the first third of the iterations on a half-resolution "
               "image (default: the model's; on for hog)")] = None,
           exact_gradient: ExactGradientOpt = False,
           force: ForceOpt = False, device: DeviceOpt = "cpu", amp: AmpOpt = None, compile: CompileOpt = False,
           threads: ThreadsOpt = None, style: style_opt("paper") = "paper", param: ParamOpt = None,
           transforms: TransformsOpt = None, prior: PriorOpt = None, prior_weight: PriorWeightOpt = None,
           judge: JudgeOpt = None, as_json: JsonOpt = False) -> None:
    """Invert IMAGE's representation at a layer: the image whose features match it."""
    from ..engine.styles import resolve
    from ..images import check_scale, image_name, load_image
    from ..measures.judge import judges as load_judges
    from ..sweep import Job, Model
    from ..tasks.common import call_options, display_scale
    from ..tasks.inversion import invert as run_invert

    cs = parse_floats(C, "--C")
    if cs and len(set(cs)) != len(cs):
        raise PreimageError(f"--C names the same value twice ({C})")
    rep = load_rep(model, layer, weights, random_weights, device, threads, channels,
                   **gradient_options(model, exact_gradient))
    sty, _ = resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                     optimizer=optimizer)
    scale = check_scale(png_scale or display_scale(sty.name))
    if judge:
        load_judges(judge, device)  # an unknown judge fails before any work
    load_image(image, size or rep.spec.input_size, channels=rep.channels)  # an unreadable image fails here
    kwargs = {"C": cs, "restarts": restarts, "size": size, "iters": iters, "seed": seed, "style": style,
              "param": param, "transforms": transforms, "prior": prior_option(sty, prior, prior_weight),
              "optimizer": optimizer,
              "mask": mask, "coarse_to_fine": coarse_to_fine, "judge": judge, "amp": amp, "compile": compile}
    options = call_options(run_invert, kwargs, ("model", "images", "layer", "progress", "device")) | {
        "png_scale": scale}
    m = Model(rep.spec, device)
    jobs = [Job("invert", m.id, rep.layer, images=(image,), options=options)]
    summary = one_job_sweep("invert", m, jobs, [image_name(image)], out, force, label=f"invert {rep.layer or 'output'}")

    def human() -> None:
        for r in summary["results"]:
            out_console.print(f"C={_num(r['C'])} restart {r['restart']}: error {100 * r['error']:.1f}%  → {r['image']}")
        for name, t in summary.get("transfer", {}).items():
            out_console.print(f"judge {name}: same top-1 as the original for {sum(t['agree'])}/{len(t['agree'])}")
        cached = " (cached)" if summary["jobs"]["cached"] else ""
        out_console.print(f"{summary['iterations']} iterations in {summary['seconds']:.1f} s{cached}")

    emit(summary, as_json, human)


@app.command()
def demo(out: Annotated[Path, typer.Option(help="output folder")] = Path("preimage-demo"),
         image: Annotated[str, typer.Option(help="image path or sample:NAME")] = "sample:chelsea",
         layers: Annotated[str, typer.Option(help="comma-separated layers to invert at")] = ",".join(
             f"blocks.{i}" for i in range(1, 7)),
         size: Annotated[int, typer.Option(min=16, max=2048, help="input size of the inversions and the "
                                           "caricature, in pixels")] = 160,
         iters: Annotated[int | None, typer.Option(min=1, max=100000, help="iterations of the inversions, class "
                                                   "pre-images and caricature (default: 300+50, 300, 300)")] = None,
         C: Annotated[float, typer.Option("--C", "-C", min=1e-6, max=1e9, help="data-term weight")] = 100.0,
         classes: Annotated[str, typer.Option(help="class units to visualize (ImageNet indices)")] = "100,31,933",
         caricature_layer: Annotated[str, typer.Option(help="layer of the caricature")] = "blocks.4",
         atlas_layer: Annotated[str, typer.Option(help="layer of the small atlas")] = "blocks.1",
         atlas_iters: Annotated[int | None, typer.Option(min=1, max=100000, help="iterations of the atlas's "
                                                         "maximizations (default: the natural style's 64)")] = None,
         seed: SeedOpt = 0, force: ForceOpt = False, device: DeviceOpt = "cpu", amp: AmpOpt = None,
         compile: CompileOpt = False, threads: ThreadsOpt = None, ray: RayOpt = False, address: AddressOpt = None,
         ray_cpus: RayCpusOpt = None,
         judge: Annotated[str, typer.Option(help="network that judges the class pre-images from their PNGs "
                                            "('none': no judge)")] = "efficientnet_lite1",
         as_json: JsonOpt = False) -> None:
    """The tour: inversions through the layers, class pre-images, a caricature and a small atlas, one page."""
    from ..experiments.demo import run_demo
    from ..representations import parse_device
    from .activation import parse_units

    parse_device(device)
    if threads is not None and threads < 1:
        raise PreimageError("--threads must be at least 1")
    layer_list = [s.strip() for s in layers.split(",") if s.strip()]
    class_list = parse_units(classes)
    run_on = sweep_backend(ray, address, ray_cpus)
    with sweep_bar("demo") as update:
        info = run_demo(out, image=image, layers=layer_list, size=size, iters=iters, C=C, seed=seed, force=force,
                        device=device, classes=class_list, caricature_layer=caricature_layer, atlas_layer=atlas_layer,
                        atlas_iters=atlas_iters, backend=run_on, progress=update, amp=amp, compile=compile,
                        threads=threads, judge=None if judge.lower() == "none" else judge,
                        log=lambda s: err_console.print(s, markup=False, highlight=False))

    def human() -> None:
        for r in info["layers"]:
            out_console.print(f"{r['layer']:>10}: error {100 * r['error']:.1f}%")
        for r in info["classes"]:
            out_console.print(f"{r['label']:>20}: p = {r['probability']:.2f}"
                              + (f"; judge {r['judge']}" if r["judge"] else ""), markup=False)
        if info["caricature"]:
            out_console.print(f"caricature at {info['caricature']['layer']}: score ×{info['caricature']['gain']:.2f}")
        out_console.print(f"atlas of {info['atlas']['layer']}: {info['atlas']['units']} units")
        out_console.print(f"open {info['page']}")

    emit(info, as_json, human)
    if not as_json:
        err_console.print(f"done in {info['seconds']:.0f} s", markup=False)
    if info["jobs"]["failed"]:
        raise typer.Exit(1)


def _num(v: float) -> str:
    return f"{v:g}"
