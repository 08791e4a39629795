"""Is activation maximization's objective met at every size? Issue 28's criterion, probed with today's API.

Ported from the pre-refactor ``heldout`` branch: targets are now ``class:C`` / ``neuron:LAYER:U`` strings.

    PYTHONPATH=src nice -n 19 .venv/bin/python benchmarks/objective_sizes.py                 # the small net
    ... benchmarks/objective_sizes.py --model efficientnet_lite0 --sizes 32,64,128 \\
        --classes 25,275,525,775 --units 0,10,20,30                                         # a few lite0 units
    ... --out benchmarks/results/work/objective_sizes.json                                   # keep the numbers

For each style and input side: ``maximize`` of the classes (the logits) and of the units (``--layer``, the
centre neuron), on the network they are optimized for. A class is met when it is the pre-image's top-1 there;
a unit when its activation reaches its natural maximum (the channel's largest response over the reference
images, ``measures.stats``; ``ratio`` ≥ 1 where that maximum is positive). The small net
(``preimage.experiments.smallnet``: 10 digit classes, grey, its own normalization) uses its shipped statistics
over 100 of its training digits; ``shapesnet`` (``benchmarks/shapesnet.py``, the reporting network: six drawn
shapes) its statistics over 100 training shapes; ``colournet`` (``benchmarks/colournet.py``: eight colour
shapes and patterns) its statistics over 96 training images; efficientnet_lite0 its cached statistics over
the bundled samples.
``--class-term`` takes ``class``, ``logprob`` or a template such as ``"class:{c} + logprob:{c}"`` (top-1 and p
are then read from the logits here); ``--param`` and ``--transforms`` replace the style's own (no adaptation). Prints a
table per model (met/total per task, style and size, and the seconds each call took); ``--out`` writes every
number as JSON. One CPU thread by default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

SIZES = (32, 64, 128, 224)
#: Defaults per model: classes, unit layer, units.
DEFAULTS = {
    "smallnet": (tuple(range(10)), "conv3", (0, 2, 3, 4, 5, 6, 7, 8, 9, 10)),  # channel 1 of conv3 never fires
    "efficientnet_lite0": ((25, 275, 525, 775), "blocks.4", (0, 10, 20, 30)),
    "shapesnet": (tuple(range(6)), "conv3", tuple(range(10))),  # benchmarks/shapesnet.py: the reporting net
    "colournet": (tuple(range(8)), "conv3", tuple(range(10))),  # benchmarks/colournet.py: reports round 9's rule
}


def ints(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.split(",") if v.strip())


def representation(model: str, layer: str | None, size: int, device: str):
    """Φ of ``model`` at ``layer`` (None: the logits) with ``size`` as its native input side."""
    from preimage.representations import load

    if model == "smallnet":
        from preimage.experiments.smallnet import INPUT_SIZE, MEAN, STD, load_smallnet

        # Its native side stays 32 (what it was trained at); the probe's side is maximize's ``size``.
        return load(load_smallnet(), layer, channels=1, mean=MEAN, std=STD, input_size=(INPUT_SIZE, INPUT_SIZE),
                    device=device)
    if model == "shapesnet":
        from shapesnet import shapesnet_rep

        return shapesnet_rep(layer)
    if model == "colournet":
        from colournet import colournet_rep

        return colournet_rep(layer)
    if layer is None:  # a named model's None is its default layer: its logits are its classifier layer
        layer = load(model).spec.classifier_layer
    return load(model, layer, device=device)


def run(model: str, task: str, style: str, size: int, targets: tuple[int, ...], layer: str | None, iters: int | None,
        device: str, transforms: str | None = None, class_term: str = "class", param: str | None = None,
        prior: str | None = None, cap_leak: float | None = None) -> dict:
    """One ``maximize`` call; the row of the table (met, per-target numbers, seconds)."""
    from preimage.tasks.activation import maximize

    stats = None
    if model == "smallnet":
        from preimage.experiments.smallnet import smallnet_stats

        stats = smallnet_stats()
    elif model == "shapesnet":
        from shapesnet import shapesnet_stats

        stats = shapesnet_stats()
    elif model == "colournet":
        from colournet import colournet_stats

        stats = colournet_stats()
    rep = representation(model, layer, size, device)
    # Targets as today's API spells them: class logits, or the centre neuron of a channel of ``layer``.
    specs = ([class_term.format(c=c) if "{c}" in class_term else f"{class_term}:{c}" for c in targets]
             if task == "classes"
             else [f"neuron:{layer}:{u}" for u in targets])
    t = time.perf_counter()
    r = maximize(rep, specs, style=style, size=size, iters=iters, stats=stats, transforms=transforms,
                 param=param, prior=prior, **({} if cap_leak is None else {"cap_leak": cap_leak}))
    secs = time.perf_counter() - t
    m = {k: v.tolist() for k, v in r.metrics.items() if isinstance(v, torch.Tensor)}
    if task == "classes" and "top1" not in m:  # a sum of terms has no one unit: read the logits here
        with torch.no_grad():
            p = rep(rep.to_paper_units(r.images.float().to(device))).flatten(1).float().softmax(1).cpu()
        m["top1"] = p.argmax(1).tolist()
        m["probability"] = [float(p[i, c]) for i, c in enumerate(targets)]
    met = ([int(p) == c for p, c in zip(m["top1"], targets, strict=True)] if task == "classes"
           else [a >= ref for a, ref in zip(m["activation"], m["reference_max"], strict=True)])
    return {"task": task, "style": style, "class_term": class_term, "size": size, "layer": layer,
            "targets": list(targets), "met": met, "seconds": secs, "finished": r.info.get("finished"),
            **{k: m[k] for k in ("activation", "reference_max", "ratio", "probability", "top1") if k in m}}


def table(model: str, rows: list[dict]) -> str:
    sizes = sorted({r["size"] for r in rows})
    lines = [f"{model}: met / total (seconds per call)", "",
             "| task | style | " + " | ".join(f"{s} px" for s in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for task in dict.fromkeys(r["task"] for r in rows):
        for style in dict.fromkeys(r["style"] for r in rows):
            cells = []
            for s in sizes:
                hit = [r for r in rows if (r["task"], r["style"], r["size"]) == (task, style, s)]
                cells.append(f"{sum(hit[0]['met'])}/{len(hit[0]['met'])} ({hit[0]['seconds']:.0f} s)" if hit else "")
            lines.append(f"| {task} | {style} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smallnet", help="smallnet (the shipped digits net) or a model name")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--styles", default="natural,paper")
    ap.add_argument("--classes", default=None, help="comma-separated class indices (default: per model)")
    ap.add_argument("--layer", default=None, help="the units' layer (default: per model)")
    ap.add_argument("--units", default=None, help="comma-separated channels of --layer; '' for none")
    ap.add_argument("--iters", type=int, default=None, help="default: each style's own")
    ap.add_argument("--transforms", default=None, help="a --transforms spec replacing each style's own")
    ap.add_argument("--class-term", default="class",
                    help="class (logits, class:C), logprob (logprob:C), or a template such as "
                         "'class:{c} + 3*logprob:{c}'")
    ap.add_argument("--param", default=None, help="a parameterization replacing each style's own (pixel, fourier)")
    ap.add_argument("--prior", default=None, help="a feature prior replacing each style's own (none, auto:1e-5)")
    ap.add_argument("--cap-leak", type=float, default=None, help="the backward slope where ReLU6 is flat "
                    "(default: the style's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.class_term not in ("class", "logprob") and "{c}" not in a.class_term:
        ap.error(f"--class-term is class, logprob or a template with {{c}}, got {a.class_term!r}")
    torch.set_num_threads(a.threads)
    classes, layer, units = DEFAULTS.get(a.model, ((25, 275, 525, 775), None, ()))
    try:
        classes = ints(a.classes) if a.classes is not None else classes
        units = ints(a.units) if a.units is not None else units
        sizes = ints(a.sizes)
    except ValueError:
        ap.error("--classes, --units and --sizes take comma-separated integers")
    layer = a.layer or layer
    if units and not layer:
        sys.exit(f"error: no default unit layer for {a.model}: give --layer")
    rows = []
    for size in sizes:
        for style in a.styles.split(","):
            for task, targets, lay in (("classes", classes, None), ("units", units, layer)):
                if targets:
                    rows.append(run(a.model, task, style, size, targets, lay, a.iters, a.device, a.transforms,
                                    a.class_term, a.param, a.prior, a.cap_leak))
                    r = rows[-1]
                    print(f"{task} {style} {size}px: {sum(r['met'])}/{len(r['met'])} in {r['seconds']:.1f} s",
                          file=sys.stderr, flush=True)
    print(table(a.model, rows))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"model": a.model, "threads": a.threads, "device": a.device, "iters": a.iters,
                                     "transforms": a.transforms, "class_term": a.class_term, "param": a.param,
                                     "prior": a.prior, "cap_leak": a.cap_leak,
                                     "classes": list(classes), "layer": layer, "units": list(units), "rows": rows},
                                    indent=1))


if __name__ == "__main__":
    from preimage.errors import PreimageError

    try:
        main()
    except PreimageError as e:  # a bad model, layer, target or option: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
