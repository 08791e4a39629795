"""The paper's qualitative experiments (docs/paper-notes.md §4) for one network, in one HTML report.

Each section is an independent function ``section(ctx) -> (heading, [(png, caption), ...])`` listed in
``SECTIONS``; add one by writing a function and appending it. A section that cannot run (no activation
maximization module, no classifier, no spatial layer) raises ``SectionSkipped`` and the page says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ...engine.optimize import Energy
from ...engine.schedules import Stage, scale_schedule, schedule_record, task_defaults
from ...errors import PreimageError
from ...images import image_name, minmax, save_png, to_uint8
from ...report import check_folder, html_page, save_grid, write_json
from ...report.result import Result
from ...report.store import Store
from ...representations import ModelSpec, Representation, load
from ...representations.layers import main_layers
from ...sweep import Job, LocalBackend, Model, RayBackend, SweepResult, run_sweep
from ...sweep.run import SweepProgress
from ...tasks.activation import unit_image_size
from ...tasks.common import prepare_images
from .cnn_layers import FAST_ITERS, FAST_SIZE, PAPER_ITERS

Figure = tuple[str, str]
Section = tuple[str, list[Figure]]
#: The paper's class neurons (ImageNet indices): black swan, goose, tree frog, cheeseburger, coffee mug,
#: comic book, vending machine (docs/paper-notes.md §1.3).
PAPER_CLASSES = (100, 99, 31, 933, 504, 917, 886)


class SectionSkipped(Exception):
    """A section cannot run with this network or installation; the message says why."""


@dataclass
class FigureContext:
    """What sections share: the network, the image, sizes, an output folder, and a cache of loaded layers."""

    model: str | ModelSpec
    out: Path
    image: str = "sample:chelsea"
    size: int = FAST_SIZE
    iters: int = FAST_ITERS
    seed: int = 0
    paper: bool = False
    device: str = "cpu"
    weights: str | None = None
    random_weights: bool = False
    log: Callable[[str], None] = print
    layer_list: Sequence[str] | None = None  # None: the model's main layers (representations.layers.main_layers)
    planning: bool = False  # True: record the jobs and return stand-ins; False: return the sweep's results
    jobs: list[Job] = field(default_factory=list)
    results: SweepResult | None = None
    store: Store | None = None
    _reps: dict[str | None, Representation] = field(default_factory=dict)
    _model: Model | None = None
    _base: Representation | None = None
    _x0: torch.Tensor | None = None

    # --- the network -------------------------------------------------------------------------------------------
    @property
    def base(self) -> Representation:
        if self._base is None:
            self._base = load(self.model, "output", weights=self.weights, random_weights=self.random_weights,
                              device=self.device)
        return self._base

    def rep(self, layer: str | None) -> Representation:
        """Φ at ``layer`` (cached, so its measured geometry is measured once)."""
        if layer not in self._reps:
            self._reps[layer] = Representation(self.base.spec, layer or "output").to(self.device)
        return self._reps[layer]

    @property
    def layers(self) -> list[str]:
        # A shallow representation (hog, hogb, dsift) has no named layers: it is one layer, its output.
        return list(self.layer_list) if self.layer_list else main_layers(self.base.spec) or ["output"]

    def spatial_layers(self) -> list[str]:
        """Layers whose output is a map (N×D×h×w) at this size."""
        return [ly for ly in self.layers if len(self.feature_shape(ly)) == 3]

    def feature_shape(self, layer: str) -> tuple[int, ...]:
        with torch.no_grad():
            rep = self.rep(layer)
            return tuple(rep(rep.to_paper_units(self.x0[:1]))[0].shape)

    def spread(self, layers: Sequence[str], n: int) -> list[str]:
        """``n`` layers evenly spread over ``layers`` (all of them when paper sizes are asked for)."""
        if self.paper or len(layers) <= n:
            return list(layers)
        return [layers[round(i * (len(layers) - 1) / (n - 1))] for i in range(n)] if n > 1 else [layers[-1]]

    @property
    def x0(self) -> torch.Tensor:
        """The image, 1×C×S×S in 0–255."""
        if self._x0 is None:
            self._x0 = prepare_images(self.base, self.image, (self.size, self.size) if self.size else None)[0]
        return self._x0

    # --- running and saving -----------------------------------------------------------------------------------
    # Sections run twice: first ``planning``, when every computation is recorded as a sweep job and answered
    # with a stand-in of the right length, then, after the sweep ran them all (in this process or on Ray),
    # with the stored results. So sections stay plain code, and their work runs in parallel and resumes.
    @property
    def model_entry(self) -> Model:
        if self._model is None:
            self._model = Model(self.base.spec, self.device)
        return self._model

    def _result(self, task: str, layer: str | None, units: Sequence[int], n: int, options: dict[str, Any]) -> Result:
        images = () if units else (self.image,)
        job = Job(task, self.model_entry.id, layer, tuple(units), images, options | {"arrays": True})
        if self.planning:
            self.jobs.append(job)
            side = options.get("size") or self.size
            return Result(torch.zeros(n, self.base.channels, side, side), [{} for _ in range(n)],
                          _StandIn(n), self.base.name, layer, 0, 0.0, torch.zeros(0, n))
        assert self.results is not None and self.store is not None
        rec = self.results.records.get(job.key)
        if rec is None:
            error = next((f.error for f in self.results.failures if f.key == job.key), "not computed")
            raise SectionSkipped(f"a computation failed: {error}")
        probs = rec["result"]["problems"]
        x = torch.from_numpy(np.load(self.store.file(job.key, "images.npy")))
        metrics = {k: torch.tensor([p[k] for p in probs]) for k, v in probs[0].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return Result(x, probs, metrics, self.base.name, layer, rec["result"]["iterations"], 0.0,
                      torch.zeros(0, len(probs)), rec["result"]["info"])

    def invert(self, layer: str, C: float | Sequence[float] = 100.0, restarts: int = 1, mask: str | None = None,
               schedule: Sequence[Stage] | None = None, iters: int | None = -1, energy: Energy | None = None) -> Result:
        """``preimage.invert`` of the image at ``layer`` with this context's size, iterations and seed."""
        cs = [float(C)] if isinstance(C, (int, float)) else [float(c) for c in C]
        opts: dict[str, Any] = {"C": cs, "restarts": restarts, "size": self.size, "seed": self.seed}
        if iters == -1:
            iters = self.iters
        if iters is not None:
            opts["iters"] = iters
        if mask is not None:
            opts["mask"] = mask
        if schedule is not None:
            opts["schedule"] = schedule_record(schedule)
        if energy is not None:
            opts["energy"] = _energy_options(energy)
        return self._result("invert", layer, (), len(cs) * restarts, opts)

    def maximize(self, layer: str, units: Sequence[int], size: int | None, energy: Energy | None = None) -> Result:
        """Activation maximization of ``units`` (one restart each) with this context's iterations and seed."""
        opts: dict[str, Any] = {"restarts": 1, "iters": self.iters, "seed": self.seed, "style": "paper",
                                "kind": "neuron"}
        if size is not None:
            opts["size"] = size
        if energy is not None:
            opts["energy"] = _energy_options(energy)
        return self._result("maximize", layer, list(units), len(units), opts)

    def caricature(self, layer: str, energy: Energy | None = None) -> Result:
        """The caricature of the image at ``layer``."""
        opts: dict[str, Any] = {"iters": self.iters, "seed": self.seed, "size": self.size}
        if energy is not None:
            opts["energy"] = _energy_options(energy)
        return self._result("caricature", layer, (), 1, opts)

    def save(self, x: torch.Tensor, name: str, scale: str = "minmax") -> str:
        """Save one C×H×W image (0–255 units); returns its path relative to the page."""
        if not self.planning:
            save_png(x, self.out / name, scale)
        return name

    def strip(self, images: Sequence[torch.Tensor], name: str, ncol: int | None = None,
              scale: str = "minmax") -> str:
        """Save images side by side (each min–max rescaled on its own when scale='minmax')."""
        if self.planning:
            return name
        if scale == "minmax":
            images = [minmax(im) for im in images]
        save_grid(list(images), self.out / name, ncol=ncol, scale="clip")
        return name


class _StandIn(dict):
    """Metrics of a planning stand-in: zeros under any name."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def __missing__(self, key: str) -> torch.Tensor:
        return torch.zeros(self.n)


def _energy_options(e: Energy) -> dict[str, Any]:
    return {"alpha": e.alpha, "beta": e.beta, "B": e.B, "B_plus": e.B_plus, "regularize": e.regularize}


def _pct(v: torch.Tensor | float) -> str:
    return f"{100 * float(v):.0f}%"


def _no_jitter(schedule: Sequence[Stage]) -> tuple[Stage, ...]:
    return tuple(Stage(s.iters, s.lr_scale, False) for s in schedule)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


# --- sections -------------------------------------------------------------------------------------------------


def section_all_layers(ctx: FigureContext) -> Section:
    """Inversion at every layer, C = 1 and 100 (docs/paper-notes.md §4 item 3; the paper also runs C = 20, 300)."""
    cs = [1.0, 20.0, 100.0, 300.0] if ctx.paper else [1.0, 100.0]
    figs: list[Figure] = [(ctx.save(ctx.x0[0], "original.png", "clip"), f"original ({image_name(ctx.image)}, "
                                                                           f"{ctx.size} px)")]
    for layer in ctx.layers:
        res = ctx.invert(layer, C=cs)
        errs = " / ".join(_pct(e) for e in res.metrics["error"])
        figs.append((ctx.strip(list(res.images), f"all-layers/{_slug(layer)}.png"),
                     f"{layer}: C = {' / '.join(f'{c:g}' for c in cs)}, error {errs}"))
    return "Inversion across layers", figs


def section_restarts(ctx: FigureContext) -> Section:
    """Several reconstructions from random restarts at the deepest layers, C = 1 (docs/paper-notes.md §4 item 4)."""
    figs: list[Figure] = []
    for layer in ctx.layers[-3:]:
        res = ctx.invert(layer, C=1.0, restarts=4)
        figs.append((ctx.strip(list(res.images), f"restarts/{_slug(layer)}.png"),
                     f"{layer}: 4 restarts, C = 1, errors {' / '.join(_pct(e) for e in res.metrics['error'])}"))
    return "Diversity: reconstructions from random restarts", figs


def neighbourhood_box(ctx: FigureContext, layer: str, n: int = 5) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) covered by the receptive fields of the central n×n neurons of ``layer``.

    The centre follows the map's sampling (neuron i at (i+½)·S/h − ½) and the extent is the measured field plus
    (n−1) strides, clipped to the image; layers with a global field cover the whole image.
    """
    shape = ctx.feature_shape(layer)
    S = ctx.size
    if len(shape) != 3:
        return 0, 0, S - 1, S - 1
    _, h, w = shape
    geo = ctx.rep(layer).geometry()
    if geo.receptive_field is None or geo.stride is None or geo.global_field:
        return 0, 0, S - 1, S - 1
    box = []
    for size_map, rf, st in ((w, geo.receptive_field[1], geo.stride[1]), (h, geo.receptive_field[0], geo.stride[0])):
        k = min(n, size_map)
        first = max(math.ceil((size_map - n + 1) / 2) - 1, 0)  # as objectives.neighbourhood_mask
        centre = (first + (k - 1) / 2 + 0.5) * S / size_map - 0.5
        half = (rf + (k - 1) * st) / 2
        box.append((max(0, round(centre - half)), min(S - 1, round(centre + half))))
    (x0, x1), (y0, y1) = box
    return x0, y0, x1, y1


def _draw_box(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    a = to_uint8(x, "clip")
    im = Image.fromarray(a).convert("RGB")
    ImageDraw.Draw(im).rectangle(box, outline=(255, 0, 0), width=max(1, x.shape[-1] // 100))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float()


def section_neighbourhoods(ctx: FigureContext) -> Section:
    """Inversion of the central 5×5 neurons only, with their receptive field drawn on the original
    (docs/paper-notes.md §4 item 5)."""
    layers = ctx.spatial_layers()
    if not layers:
        raise SectionSkipped("the network has no layer with a spatial map")
    figs: list[Figure] = []
    for layer in ctx.spread(layers, 6):
        res = ctx.invert(layer, C=100.0, mask="neigh:5")
        box = neighbourhood_box(ctx, layer)
        pre = _draw_box(minmax(res.images[0]), box)
        orig = _draw_box(ctx.x0[0], box)
        _, h, w = ctx.feature_shape(layer)
        figs.append((ctx.strip([orig, pre], f"neighbourhoods/{_slug(layer)}.png", scale="clip"),
                     f"{layer}: central 5×5 of {h}×{w} neurons; box = their receptive field "
                     f"({box[2] - box[0] + 1}×{box[3] - box[1] + 1} px); error {_pct(res.metrics['error'][0])}"))
    return "Locality: 5×5 neuron neighbourhoods", figs


def section_channel_halves(ctx: FigureContext) -> Section:
    """All channels vs the first and the second half of them (AlexNet's two GPU streams; docs/paper-notes.md §4
    item 6)."""
    figs: list[Figure] = []
    for layer in ctx.spread(ctx.layers, 5):
        # Three problems: all channels, the first half, the second half (each its own mask).
        parts = [ctx.invert(layer, C=100.0, mask=m) for m in (None, "channels:first-half", "channels:second-half")]
        errs = " / ".join(_pct(r.metrics["error"][0]) for r in parts)
        figs.append((ctx.strip([r.images[0] for r in parts], f"channel-halves/{_slug(layer)}.png"),
                     f"{layer}: all / first half / second half of the channels, errors {errs}"))
    return "Channel groups: first and second half", figs


def _jitter_beta_layer(ctx: FigureContext) -> str:
    aliases = ctx.base.spec.layer_aliases
    if "10" in aliases:  # the paper's layer 10 (AlexNet relu3)
        return aliases["10"]
    return ctx.layers[len(ctx.layers) // 2]


def section_jitter_beta(ctx: FigureContext) -> Section:
    """Jitter on/off × β ∈ {1, 1.5, 2} at a middle layer, C = 20 (docs/paper-notes.md §1.7)."""
    layer = _jitter_beta_layer(ctx)
    rep = ctx.rep(layer)
    sched = scale_schedule(task_defaults(rep.spec).schedule, ctx.iters)
    figs: list[Figure] = []
    for jitter in (True, False):
        for beta in (1.0, 1.5, 2.0):
            res = ctx.invert(layer, C=20.0, schedule=sched if jitter else _no_jitter(sched), iters=None,
                             energy=Energy(beta=beta))
            figs.append((ctx.save(res.images[0], f"jitter-beta/{'jitter' if jitter else 'nojitter'}-b{beta:g}.png"),
                         f"{layer}, C = 20, jitter {'on' if jitter else 'off'}, β = {beta:g}: "
                         f"error {_pct(res.metrics['error'][0])}"))
    return f"Effect of jitter and β ({layer})", figs


def section_noreg_inversion(ctx: FigureContext) -> Section:
    """Inversion without regularizers (λ = 0, no bound, no jitter, C = 1; docs/paper-notes.md §1.5) at every layer."""
    figs: list[Figure] = []
    for layer in ctx.layers:
        sched = _no_jitter(scale_schedule(task_defaults(ctx.base.spec).schedule, ctx.iters))
        res = ctx.invert(layer, C=1.0, schedule=sched, iters=None, energy=Energy(regularize=False))
        figs.append((ctx.save(res.images[0], f"noreg/{_slug(layer)}.png"),
                     f"{layer}, no regularizer: error {_pct(res.metrics['error'][0])}"))
    return "Inversion without regularizers (compare with C = 1 above)", figs


# --- activation maximization and caricatures (preimage.tasks.activation) ---------------------------------------------


def _class_names(n: int) -> list[str] | None:
    if n != 1000:
        return None
    try:
        import torchvision

        return list(torchvision.models.AlexNet_Weights.DEFAULT.meta["categories"])
    except Exception:  # noqa: BLE001 - names are a nicety
        return None


def _unit_size(ctx: FigureContext, rep: Representation) -> int | None:
    """The paper's image size for a unit (None: the task's own), capped at ``ctx.size`` unless paper sizes are
    asked for: deep units' fields span several hundred pixels."""
    return None if ctx.paper else min(unit_image_size(rep), ctx.size)


def section_activation_mosaics(ctx: FigureContext) -> Section:
    """Activation maximization of the first 16 (paper: 25) channels of layers across the network
    (docs/paper-notes.md §4 item 8)."""
    k = 25 if ctx.paper else 16
    figs: list[Figure] = []
    for layer in ctx.spread(ctx.spatial_layers(), 5):
        rep = ctx.rep(layer)
        units = list(range(min(k, ctx.feature_shape(layer)[0])))
        res = ctx.maximize(layer, units, _unit_size(ctx, rep))
        figs.append((ctx.strip(list(res.images), f"maximize/{_slug(layer)}.png", ncol=math.ceil(len(units) ** 0.5)),
                     f"{layer}: channels 0–{len(units) - 1}"))
    return "Activation maximization: channel mosaics", figs


def _classifier_layer(ctx: FigureContext) -> str:
    layer = ctx.base.spec.classifier_layer
    if layer is None:
        raise SectionSkipped(f"{ctx.base.name} has no class-logit layer")
    return layer


def _class_units(ctx: FigureContext, layer: str) -> tuple[list[int], list[str]]:
    n = ctx.feature_shape(layer)[0]
    names = _class_names(n)
    units = list(PAPER_CLASSES) if names else list(range(min(7, n)))
    return units, [names[u] if names else f"unit {u}" for u in units]


def section_class_units(ctx: FigureContext) -> Section:
    """Class neurons of the last layer (the paper's seven classes on ImageNet networks; docs/paper-notes.md §4
    item 9)."""
    layer = _classifier_layer(ctx)
    units, labels = _class_units(ctx, layer)
    res = ctx.maximize(layer, units, None if ctx.paper else ctx.size)
    return "Class neurons", [(ctx.save(im, f"classes/{u}.png"), f"{lab} (unit {u})")
                             for im, u, lab in zip(res.images, units, labels, strict=False)]


def _caricature_layers(ctx: FigureContext) -> list[str]:
    spatial = ctx.spatial_layers()
    return ([spatial[-1]] if spatial else []) + [ctx.layers[-1]]


def section_caricatures(ctx: FigureContext) -> Section:
    """Caricatures of the image at the last spatial layer and the last layer (docs/paper-notes.md §4 item 10)."""
    figs: list[Figure] = [(ctx.save(ctx.x0[0], "original.png", "clip"), "original")]
    for layer in dict.fromkeys(_caricature_layers(ctx)):
        res = ctx.caricature(layer)
        figs.append((ctx.save(res.images[0], f"caricatures/{_slug(layer)}.png"), f"{layer}"))
    return "Caricatures", figs


def section_noreg_activation(ctx: FigureContext) -> Section:
    """Class neurons and caricatures without regularizers (docs/paper-notes.md §1.5, §4 item 11)."""
    noreg = Energy(regularize=False)
    figs: list[Figure] = []
    layer = _classifier_layer(ctx)
    units, labels = _class_units(ctx, layer)
    res = ctx.maximize(layer, units[:3], None if ctx.paper else ctx.size, energy=noreg)
    figs += [(ctx.save(im, f"noreg/class-{u}.png"), f"{lab}, no regularizer")
             for im, u, lab in zip(res.images, units, labels, strict=False)]
    for layer in dict.fromkeys(_caricature_layers(ctx)):
        res = ctx.caricature(layer, energy=noreg)
        figs.append((ctx.save(res.images[0], f"noreg/caricature-{_slug(layer)}.png"),
                     f"caricature at {layer}, no regularizer"))
    return "Classes and caricatures without regularizers", figs


#: name → section, in page order.
SECTIONS: dict[str, Callable[[FigureContext], Section]] = {
    "all-layers": section_all_layers,
    "restarts": section_restarts,
    "neighbourhoods": section_neighbourhoods,
    "channel-halves": section_channel_halves,
    "jitter-beta": section_jitter_beta,
    "noreg-inversion": section_noreg_inversion,
    "maximize": section_activation_mosaics,
    "classes": section_class_units,
    "caricatures": section_caricatures,
    "noreg-activation": section_noreg_activation,
}


def run_figures(model: str | ModelSpec = "efficientnet_lite0", out: str | Path = "preimage-figures", *,
                image: str = "sample:chelsea", layers: Sequence[str] | None = None,
                sections: Sequence[str] | None = None, size: int | None = None,
                iters: int | None = None, paper: bool = False, seed: int = 0, force: bool = False,
                device: str = "cpu", weights: str | None = None, random_weights: bool = False,
                backend: LocalBackend | RayBackend | None = None, batch: int = 16,
                progress: SweepProgress | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the qualitative sections and write ``index.html`` + ``figures.json`` (+ PNGs) into ``out``.

    Defaults: 96 px, 60 iterations and a spread of the layers per section (minutes on a CPU); ``paper=True``:
    the model's input size, 300+50 iterations and every layer. layers: the layers to use (default: the
    network's main layers, ``representations.layers.main_layers``). Every optimization is a job of one sweep
    (``preimage.sweep``,
    in this process or on Ray via ``backend``), stored under ``out/store`` so a rerun (with ``force``)
    computes only what is missing. Returns {out, page, sections: [{name, heading, figures: [{image,
    caption}], skipped}], jobs, seconds}.
    """
    t0 = time.perf_counter()
    names = list(sections) if sections else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise PreimageError(f"unknown section '{unknown[0]}' (choose from {', '.join(SECTIONS)})", param="sections")
    outdir = check_folder(out)
    taken = [outdir / n for n in ("index.html", "figures.json") if (outdir / n).exists()]
    if taken and not force:
        raise PreimageError(f"{taken[0]} already exists; pass `force` to redraw the page (the results are reused)",
                            param="force")
    ctx = FigureContext(model, Path(out), image=image, size=FAST_SIZE, iters=iters or FAST_ITERS, seed=seed,
                        paper=paper, device=device, weights=weights, random_weights=random_weights, log=log,
                        layer_list=layers)
    if paper:
        ctx.size = (ctx.base.spec.input_size or (224, 224))[0]
        ctx.iters = iters or PAPER_ITERS
    if size:
        ctx.size = size
    _ = ctx.x0  # a missing image or unknown layer fails before any work
    for layer in ctx.layers:
        ctx.rep(layer)

    def run_sections() -> list[tuple[str, str, list[Figure], str | None]]:
        done = []
        for name in names:
            try:
                heading, figs = SECTIONS[name](ctx)
                done.append((name, heading, figs, None))
            except SectionSkipped as e:
                done.append((name, f"{name}: skipped ({e})", [], str(e)))
        return done

    ctx.planning = True
    run_sections()
    ctx.planning = False
    ctx.store = Store(Path(out) / "store")
    m = ctx.model_entry
    ctx.results = run_sweep(ctx.jobs, {m.id: m}, ctx.store, backend, batch, progress)
    for f in ctx.results.failures:
        log(f"failed: {f.line()}")
    rows, page_sections = [], []
    for name, heading, figs, skipped in run_sections():
        log(f"{name}: {len(figs)} figures" + (f" (skipped: {skipped})" if skipped else ""))
        page_sections.append((heading, figs))
        rows.append({"name": name, "heading": heading, "figures": [{"image": f, "caption": c} for f, c in figs],
                     "skipped": skipped})
    intro = (f"Qualitative experiments of Mahendran & Vedaldi (IJCV 2016) with {ctx.base.name} on {image}: "
             f"{ctx.size} px, {ctx.iters} iterations per optimization"
             + ("" if paper else " and a spread of layers (reduced for speed; --paper for the paper's settings)")
             + ". Pre-images are min–max rescaled for display, as in the paper.")
    page = html_page(Path(out) / "index.html", f"Natural pre-images of {ctx.base.name}", page_sections, intro)
    info = {"out": str(out), "page": str(page), "model": ctx.base.name, "image": image, "size": ctx.size,
            "iters": ctx.iters, "paper": paper, "sections": rows, "jobs": ctx.results.counts,
            "failures": [vars(f) for f in ctx.results.failures], "seconds": round(time.perf_counter() - t0, 1)}
    write_json(Path(out) / "figures.json", info)
    return info
