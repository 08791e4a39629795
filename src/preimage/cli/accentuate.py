"""``preimage accentuate``: feature accentuation of a real image (``tasks.accentuate``), a one-job sweep like the
other commands, with an attribution overlay beside each picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import PreimageError
from .activation import OptimizerOpt, OutOpt, PngScaleOpt
from .common import (
    ITERS,
    SIZE,
    ChannelsOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    JudgeOpt,
    ModelOpt,
    ParamOpt,
    RandomOpt,
    SeedOpt,
    ThreadsOpt,
    TransformsOpt,
    WeightsOpt,
    app,
    emit,
    load_rep,
    one_job_sweep,
    out_console,
)


def parse_numbers(s: str, option: str) -> list[float]:
    """``"0.3,1,3"`` → [0.3, 1.0, 3.0]; one clear line naming ``option`` where a part is not a number."""
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise PreimageError(f"{option} takes numbers separated by commas, got '{s}'") from None


def parse_weights(s: str) -> list[float]:
    """--reg-weight's list (numbers ≥ 0, each once)."""
    from ..tasks.accentuate import check_weights

    return check_weights(parse_numbers(s, "--reg-weight"))


def parse_budgets(s: str) -> list[float] | str:
    """--max-rmse's list (pixel-RMSE budgets in [1, 255], each once), or ``"none"``."""
    from ..tasks.accentuate import NONE, check_budgets

    if s.strip().lower() == NONE:
        return NONE
    return check_budgets(parse_numbers(s, "--max-rmse"))  # type: ignore[return-value]


@app.command()
def accentuate(image: Annotated[str, typer.Argument(help="the seed image: a path or sample:NAME")],
               target: Annotated[str | None, typer.Option("--target", "-t", help="what to see more of: LAYER:UNIT "
                                                          "(a channel), neuron:LAYER:UNIT, class:C or classifier:C, "
                                                          "logprob:C, "
                                                          "direction:LAYER:FILE.npy, or a weighted sum, e.g. "
                                                          "'class:1 - 0.5*class:2' (required)")] = None,
               reg_layer: Annotated[str, typer.Option("--reg-layer", help="where the distance to the seed is "
                                                      "measured: pixels (Horama's; the default), a layer "
                                                      "(faccent's; auto: the first layer of stride 8) or "
                                                      "none")] = "pixels",
               reg_weight: Annotated[str, typer.Option("--reg-weight", help="weight of the distance to the seed "
                                                       "(≥ 0), or a list '1,3,10': one picture per weight (the "
                                                       "path from the accentuated image to the seed)")] = "0.3",
               max_rmse: Annotated[str, typer.Option("--max-rmse", help="a budget: no picture goes further than "
                                                     "this pixel RMSE (0–255) from the seed, or a list '8,16,24': "
                                                     "one picture per budget; none: no budget")] = "24",
               steps: Annotated[int | None, typer.Option(help="optimizer steps (default: 64, and 96 for a budget of 32 "
                                                         "or more)", **ITERS)] = None,
               model: ModelOpt = "efficientnet_lite0",
               size: Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)",
                                                        **SIZE)] = None,
               param: ParamOpt = None, transforms: TransformsOpt = None, optimizer: OptimizerOpt = None,
               no_attribution: Annotated[bool, typer.Option("--no-attribution", help="skip the attribution map "
                                                            "(one backward pass per step less)")] = False,
               skip_grad: Annotated[float | None, typer.Option(
                   min=0.0, max=1.0, help="factor on the gradient through each residual branch, the forward exact "
                   "(the skip gradient; default: the style's, 1: the exact gradient)")] = None,
               canvas: Annotated[float | None, typer.Option(
                   min=1.0, max=4.0, help="optimize a canvas this many times the picture's side (1–4), seen by "
                   "the network in crops at the picture's size and saved downsampled to it (default: 2 for a budget of "
                   "32 or more, else 1)")
               ] = None,
               candidates: Annotated[int | None, typer.Option(
                   min=1, max=64, help="pictures optimized for each one saved, each from its own draw of the "
                   "transforms, of which the one with the highest target value (the logit for a class) is kept "
                   "(default: accentuate's)")] = None,
               cap_leak: Annotated[float | None, typer.Option(
                   "--cap-leak", min=0.0, max=1.0, help="backward slope where ReLU6 is flat; the forward and the "
                   "scores stay exact (default: accentuate's, 0: the exact gradient)")] = None,
               judge: JudgeOpt = None, seed: SeedOpt = 0, out: OutOpt = Path("preimage-out"),
               png_scale: PngScaleOpt = None, weights: WeightsOpt = None, random_weights: RandomOpt = False,
               channels: ChannelsOpt = None, force: ForceOpt = False, device: DeviceOpt = "cpu",
               threads: ThreadsOpt = None, as_json: JsonOpt = False) -> None:
    """Feature accentuation: change IMAGE just enough for the network to see more of --target, never further than
    --max-rmse from it (one picture per --reg-weight and --max-rmse, each with an attribution overlay beside it).
    The paper's caricature exaggerates everything a layer sees; this exaggerates one chosen feature."""
    from ..engine.styles import resolve
    from ..engine.targets import parse_target
    from ..images import check_scale, image_name, load_image
    from ..sweep import Job, Model
    from ..tasks.accentuate import ACCENTUATE_STYLE, AUTO, NONE, PIXELS
    from ..tasks.accentuate import accentuate as run_accentuate
    from ..tasks.activation import target_layer, target_points
    from ..tasks.common import as_representation, call_options, check_count, check_number, check_size

    if target is None:
        raise PreimageError("--target is required: what the network should see more of (e.g. class:1)")
    ws = parse_weights(reg_weight)
    canvas = None if canvas is None else check_number(canvas, "--canvas", 1.0, 4.0)
    if candidates is not None:
        check_count(candidates, "--candidates", 1, 64)
    if cap_leak is not None:
        check_number(cap_leak, "--cap-leak", 0.0, 0.999999)
    budgets = parse_budgets(max_rmse)
    rep = load_rep(model, "output", weights, random_weights, device, threads, channels)
    try:
        targets = parse_target(target)
    except PreimageError as e:
        raise PreimageError(f"--target '{target}': {e}") from None
    if len({t.spec() for t in targets}) != len(targets):
        raise PreimageError("--target names a target twice: each would give the same picture")
    resolve(rep, ACCENTUATE_STYLE, param=param, transforms=transforms, optimizer=optimizer)
    scale = check_scale(png_scale or "clip")
    x = load_image(image, size or rep.spec.input_size, channels=rep.channels)  # an unreadable image fails here
    hw = check_size(size) or tuple(x.shape[-2:])
    target_points(rep.spec, targets, hw, rep.device_dtype())  # every unit checked against its layer, now
    if reg_layer.strip().lower() not in (AUTO, PIXELS, NONE):
        try:
            as_representation(rep.spec, reg_layer.strip())
        except PreimageError as e:
            raise PreimageError(f"--reg-layer: {e}") from None
    kwargs = {"reg_layer": reg_layer, "reg_weight": ws if len(ws) > 1 else ws[0],
              "max_rmse": budgets if isinstance(budgets, str) or len(budgets) > 1 else budgets[0], "steps": steps,
              "param": param,
              "transforms": transforms, "optimizer": optimizer, "size": size, "seed": seed,
              "attribution": not no_attribution, "judge": judge, "skip_grad": skip_grad,
              "canvas": canvas, "candidates": candidates, "cap_leak": cap_leak}
    options = call_options(run_accentuate, kwargs, ("model", "images", "target", "stats", "progress", "device")) | {
        "png_scale": scale}
    m = Model(rep.spec, device)
    jobs = [Job("accentuate", m.id, target_layer(t, rep.spec), (t.spec(),), images=(image,), options=options)
            for t in targets]
    summary = one_job_sweep("accentuate", m, jobs, [f"{image_name(image)}-{t.label}" for t in targets], out, force,
                            label=f"accentuate {image_name(image)}")

    def human() -> None:
        counts = sorted({r.get("steps", summary["iterations"]) for r in summary["results"]})
        for r in summary["results"]:
            p = (f", p {r['probability_start']:.3f} → {r['probability']:.3f}"
                 f"{' (top-1)' if r.get('top1') == _class(r) else ''}" if r.get("probability") is not None else "")
            err = f", {r['reg_layer']} error {r['layer_error']:.2f}" if r.get("layer_error") is not None else ""
            budget = f" RMSE ≤ {r['max_rmse']:g}" if r.get("max_rmse") is not None else ""
            notes = [f"a canvas {r['canvas']:g}× the side"] if r.get("canvas") else []
            notes += [f"{r['steps']} steps"] if len(counts) > 1 else []
            budget += f" ({', '.join(notes)})" if notes else ""
            best = f" (best of {r['candidates']}: candidate {r['candidate']})" if r.get("candidates") else ""
            out_console.print(f"{r['label']} w={r['reg_weight']:g}{budget}: activation {r['activation_start']:.3g} → "
                              f"{r['activation']:.3g}{p}; RMSE {r['rmse']:.1f}{err}{best}  → {r['image']}",
                              markup=False)
            if r.get("attribution"):
                out_console.print(f"  attribution → {r['attribution']}", markup=False)
        for name, t in summary.get("transfer", {}).items():
            out_console.print(f"judge {name}: p(class) {', '.join(f'{v:.3f}' for v in t['probability'])}; top-1 for "
                              f"{sum(t['top1'])}/{len(t['top1'])}", markup=False)
        span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        out_console.print(f"{span} steps at {summary['size'][0]}×{summary['size'][1]} in "
                          f"{summary['seconds']:.1f} s")

    emit(summary, as_json, human)


def _class(r: dict) -> int | None:
    """The class index of a one-class target's record (``class:C``, ``class:LAYER:C`` or ``logprob:C``), else
    None."""
    t = str(r.get("target", ""))
    if t.startswith(("class:", "logprob:")):
        try:
            return int(t.rsplit(":", 1)[1])
        except ValueError:
            return None
    return None
