"""What every command shares: the app, consoles, model options, progress bars, JSON output."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..representations import Representation, load

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Natural pre-images: see what image representations see.")
# Piped or redirected output gets COLUMNS or 160 columns, not rich's 80: tables stay one line per row for grep.
_COLUMNS = os.environ.get("COLUMNS", "")
_PIPE_WIDTH = None if sys.stdout.isatty() else (int(_COLUMNS) if _COLUMNS.isdigit() and int(_COLUMNS) else 160)
# emoji=False: rich would print "channels:A:B" as "channels🅰B" (":a:" is an emoji code).
out_console = Console(highlight=False, soft_wrap=True, width=_PIPE_WIDTH, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="efficientnet_lite0, a torchvision name, "
                                       "timm:NAME, caffenet, vgg-m, hog, hogb, dsift, ...")]
LayerOpt = Annotated[str | None, typer.Option("--layer", "-l", help="module name (see 'preimage layers') or alias; "
                                              "default: the model's")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", help="local weights file")]
RandomOpt = Annotated[bool, typer.Option("--random-weights", help="random initialization (no download)")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
ForceOpt = Annotated[bool, typer.Option("--force", help="overwrite existing output files")]
# Every numeric option declares its range (tests/test_cli_ranges.py walks them all), so that a value out of
# range ends in one line and exit status 2 before any work. The bounds are generous: whether a request fits
# is checked against the machine's memory before anything large is allocated (engine/memory.py).
SIZE = {"min": 16, "max": 8192}  # input sides in pixels
ITERS = {"min": 1, "max": 1_000_000}
COUNT = {"min": 1, "max": 100_000}  # restarts, batches, repeats
SEED = {"min": 0, "max": 2**63 - 1}
THREADS = {"min": 1, "max": 1024}
CHANNELS = {"min": 1, "max": 1024}
INDEX = {"min": 0, "max": 2**31 - 1}  # channel indices
WEIGHT = {"min": 1e-12, "max": 1e38}  # data-term weights C (float32 holds them)
FRACTION = {"min": 0.0, "max": 1.0}

SeedOpt = Annotated[int, typer.Option("--seed", help="random seed (same seed, same output)", **SEED)]


AmpOpt = Annotated[str | None, typer.Option("--amp", help="mixed precision for the network: bf16 or fp16 (GPUs)")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the network (start-up cost; for GPUs)")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's)",
                                                **THREADS)]
ChannelsOpt = Annotated[int | None, typer.Option("--channels", help="input channels of a torchvision or timm "
                                                 "network: its first convolution is built for them (pretrained "
                                                 "RGB weights adapted); default 3", **CHANNELS)]
TokenOpt = Annotated[str | None, typer.Option("--token", help="maximize a channel of a vision transformer's "
                                              "prefix token: cls, dist, reg0, ... or its index (default: the "
                                              "patch grid)")]

ParamOpt = Annotated[str | None, typer.Option("--param", help="parameterization: pixel (the paper's), fourier "
                                              "(1/f spectrum, decorrelated colour), maco (phase only) or "
                                              "pyramid (Laplacian), with options as NAME(KEY=VALUE,...), e.g. "
                                              "'fourier(decay=1.5)'; default: the style's")]
TransformsOpt = Annotated[str | None, typer.Option("--transforms", help="transforms before the network, e.g. "
                                                   "'jitter:9,scale:0.9-1.1,rotate:10,flip,crops:4:0.6-1', "
                                                   "'standard' (Lucid's) or 'none'; default: the style's")]
PriorOpt = Annotated[str | None, typer.Option("--prior", help="feature-statistics prior: bn (BatchNorm statistics, "
                                              "DeepInversion) or none; default: the style's")]
PriorWeightOpt = Annotated[float | None, typer.Option("--prior-weight", min=0.0, max=1e6,
                                                      help="weight of the prior (default: the style's)")]
JudgeOpt = Annotated[list[str] | None, typer.Option("--judge", help="judge the written pictures with this "
                                                    "classifier (repeatable), e.g. efficientnet_lite1; adds "
                                                    "'transfer' to the JSON")]


def style_opt(default: str) -> Any:
    """``--style paper|natural|fast`` with a command's own default."""
    return Annotated[str, typer.Option("--style", help=f"paper (the paper's method), natural (Fourier "
                                       f"parameterization, transforms, BatchNorm prior) or fast (Fourier "
                                       f"spectrum, Adam then L-BFGS, 120 iterations, for inversion); "
                                       f"default: {default}")]


def load_rep(model: str, layer: str | None, weights: str | None, random_weights: bool,
             device: str = "cpu", threads: int | None = None, channels: int | None = None,
             layer_for: Callable[[Any], str | None] | None = None, **kw: Any) -> Representation:
    """Load Φ for a command, on the requested device (and with ``threads`` CPU threads if given). layer None: the
    layer ``layer_for(spec)`` names (an objective's own), else the model's documented default layer, or an error
    for a model without one (``--layer``)."""
    from ..errors import PreimageError
    from ..representations import model_spec
    from ..representations.base import resolve_layer

    if threads is not None:
        import torch

        if threads < 1:
            raise PreimageError("--threads must be at least 1")
        torch.set_num_threads(threads)
    if layer is not None and not layer.strip():
        raise PreimageError("--layer is empty: name a layer (see 'preimage layers'), or leave it out for the "
                            "model's default")
    spec = model_spec(model, weights=weights, random_weights=random_weights, channels=channels, **kw)
    if layer is None:
        layer = (layer_for(spec) if layer_for else None) or resolve_layer(spec, None) or "output"
    return load(spec, layer, device=device)


def one_job_sweep(task: str, model: Any, jobs: list[Any], subjects: list[str], out: Path, force: bool, *,
                  label: str, mosaic: bool = False) -> dict[str, Any]:
    """Run a command's pictures as a sweep of its jobs (``preimage.sweep``): claim the output folder before any
    work, compute what the store in ``out/store`` lacks (all of it with ``force``), and publish the pictures and
    their summary (``report.publish``). A rerun with the same arguments is a cache hit. Returns the summary, with
    ``jobs{done, cached, failed}``."""
    from ..report.publish import claim, publish
    from ..report.store import Store
    from ..sweep import LocalBackend, run_sweep

    store = Store(Path(out) / "store")
    existed = Path(out).exists()
    claim(out, task, [(j.config(), s) for j, s in zip(jobs, subjects, strict=True)], store, force)
    problems = sum(j.problems() for j in jobs)
    try:
        with progress_bar(label) as update:
            result = run_sweep(jobs, {model.id: model}, store, LocalBackend(update, strict=True), max(problems, 1),
                               recompute=force)
    except BaseException:
        if not existed and not any(f.is_file() for f in Path(out).rglob("*")):
            shutil.rmtree(out, ignore_errors=True)  # a command that failed leaves no empty folder behind
        raise
    saved = [(j.config(), result.records[j.key], s) for j, s in zip(jobs, subjects, strict=True)]
    summary = publish(out, task, saved, store, force=True, mosaic=mosaic)
    summary["jobs"] = {k: result.counts[k] for k in ("total", "done", "cached", "failed")}
    return summary


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``.

    The bar appears at the first report, so an error raised while preparing stays the only line on stderr.
    """
    if not enabled:
        yield lambda done, total: None
        return
    with ExitStack() as stack:
        bar: list[tuple[Progress, TaskID]] = []

        def update(done: int, total: int) -> None:
            if not bar:
                prog = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(),
                                                    MofNCompleteColumn(), TimeElapsedColumn(), console=err_console))
                bar.append((prog, prog.add_task(description, total=total)))
            prog, task = bar[0]
            prog.update(task, completed=done, total=total)

        yield update


def log(msg: str) -> None:
    """A progress line on stderr, printed as it is (no rich markup: paths and unit names may hold brackets)."""
    err_console.print(msg, markup=False, highlight=False, soft_wrap=True)


def emit(obj: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    """Print the result: one JSON object on stdout, or the human summary."""
    if as_json:
        print(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    else:
        human()


def parse_floats(s: str | None, opt: str) -> list[float] | None:
    """``"1,20,100"`` → [1.0, 20.0, 100.0] (positive numbers), None for None; a clear error otherwise."""
    from ..errors import PreimageError

    if s is None:
        return None
    try:
        vals = [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise PreimageError(f"{opt} takes numbers separated by commas, got '{s}'") from None
    if not vals or any(not WEIGHT["min"] <= v <= WEIGHT["max"] for v in vals):
        raise PreimageError(f"{opt} values must be numbers from {WEIGHT['min']:g} to {WEIGHT['max']:g}, got '{s}'")
    return vals


RayOpt = Annotated[bool, typer.Option("--ray", help="run the jobs on a Ray cluster (a local one unless --address)")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="join the Ray cluster at HOST:PORT, ray://HOST:PORT "
                                                "or auto (implies --ray)")]
RayCpusOpt = Annotated[int | None, typer.Option("--ray-cpus", min=1, max=4096,
                                                help="CPUs of the local Ray cluster (default: all)")]


@contextmanager
def sweep_bar(description: str, enabled: bool = True) -> Iterator[Callable[[dict[str, int]], None]]:
    """One progress bar for a whole sweep (jobs done, cached and failed), on stderr; yields ``update(counts)``.

    Like ``progress_bar``, it appears at the first report, so an error raised while planning stays alone."""
    if not enabled:
        yield lambda counts: None
        return
    with ExitStack() as stack:
        bar: list[tuple[Progress, TaskID]] = []

        def update(c: dict[str, int]) -> None:
            if not bar:
                prog = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                                    TextColumn("{task.fields[tally]}"), TimeElapsedColumn(),
                                                    console=err_console))
                bar.append((prog, prog.add_task(description, total=c["total"], tally="")))
            prog, task = bar[0]
            prog.update(task, completed=c["done"] + c["cached"] + c["failed"], total=c["total"],
                        tally=f"{c['done']} done · {c['cached']} cached · {c['failed']} failed")

        yield update


def sweep_backend(ray: bool, address: str | None, ray_cpus: int | None) -> Any:
    """The sweep backend of ``--ray``/``--address``; an address that does not answer fails here, in one line,
    before any work."""
    from ..sweep import backend
    from ..sweep.backends import connect

    if address:
        connect(address)  # joined now, so that a cluster that does not answer fails before the plan and the bar
    return backend(ray, address, num_cpus=ray_cpus)


def prior_option(style: Any, prior: str | None, weight: float | None) -> str | None:
    """``--prior`` and ``--prior-weight`` as the one prior shorthand a task takes: None when neither is given (the
    style's own), else the resolved style's prior (``bn:W``, ``auto:W``) or ``none``."""
    if prior is None and weight is None:
        return None
    return style.prior.spec() if style.prior is not None else "none"
