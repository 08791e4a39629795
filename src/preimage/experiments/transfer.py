"""Class transfer: class pre-images of one network judged by another that never saw the optimization.

For each variant (a style with optional overrides), ``maximize`` the class logits of ``model`` for every class,
one job per class of one sweep (the engine every command runs on: keyed, stored, resumable), and let the judge
read the PNGs back: its top-1 rate and mean p(class), and the wall time per pre-image. Peers' pictures (Lucent,
Horama) are judged from their folders the same way. This is what ``preimage bench transfer`` and
benchmarks/transfer.py run.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import PreimageError
from ..images import atomic_write_bytes
from ..measures.judge import Judge
from ..report.store import Store
from ..representations import load
from ..sweep import Job, LocalBackend, Model, run_sweep
from .bench import lucent_python
from .heldout import TUNING_CLASSES, parse_classes
from .peers import HERE as PEERS

#: Every 50th ImageNet class from 25: the 20 tuning classes (``heldout.TUNING_CLASSES``; the reporting ones are
#: ``heldout.REPORTING_CLASSES``, ``--classes reporting``).
CLASSES = TUNING_CLASSES


def _natural_transforms(scale: str = "0.9-1.1", crops: str = "4:0.6-1", flip: bool = False) -> str:
    """The natural style's transforms of the earlier rounds with another scale range, crops or a left–right flip
    (the variants)."""
    return f"jitter:17,scale:{scale},rotate:10,{'flip,' if flip else ''}jitter:9,crops:{crops}"


#: What each part of ``natural`` contributes: natural, and natural with one part changed (``natural/PART``).
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"style": "paper"},
    "natural": {"style": "natural"},
    "natural/pixel": {"style": "natural", "param": "pixel", "optimizer": "adam"},
    "natural/maco": {"style": "natural", "param": "maco"},
    "natural/fourier": {"style": "natural", "param": "fourier"},
    "natural/no-transforms": {"style": "natural", "transforms": "none"},
    "natural/no-crops": {"style": "natural", "transforms": "standard"},
    "natural/no-prior": {"style": "natural", "prior": "none"},
    "natural/prior-1e-3": {"style": "natural", "prior": "auto:1e-3"},
    "natural/prior-1e-5": {"style": "natural", "prior": "auto:1e-5"},
    "natural/crops-8": {"style": "natural", "transforms": _natural_transforms(crops="8:0.6-1")},
    "natural/logprob": {"style": "natural"},
    "natural/crops-0.4": {"style": "natural", "transforms": _natural_transforms(crops="4:0.4-1")},
    "natural/crops-8-0.4": {"style": "natural", "transforms": _natural_transforms(crops="8:0.4-1")},
    "natural/crops-8-0.3": {"style": "natural", "transforms": _natural_transforms(crops="8:0.3-1")},
    "natural/crops-8-0.4/scale-0.8": {"style": "natural",
                                      "transforms": _natural_transforms("0.8-1.2", crops="8:0.4-1")},
    "natural/crops-16-0.4": {"style": "natural", "transforms": _natural_transforms(crops="16:0.4-1")},
    "natural/decay-1.5": {"style": "natural", "param": "fourier(decay=1.5)"},
    "natural/crops-8-0.4/decay-0.75": {"style": "natural", "param": "fourier(decay=0.75)",
                                       "transforms": _natural_transforms(crops="8:0.4-1")},
    "natural/crops-8-0.4/no-prior": {"style": "natural", "prior": "none",
                                     "transforms": _natural_transforms(crops="8:0.4-1")},
    "natural/decay-0.75": {"style": "natural", "param": "fourier(decay=0.75)"},
    "natural/flip": {"style": "natural", "transforms": _natural_transforms("0.8-1.2", "8:0.4-1", flip=True)},
    "natural/scale-0.7": {"style": "natural", "transforms": _natural_transforms("0.7-1.3", "8:0.4-1")},
    "natural/lead": {"style": "natural"},
    # round 7: one-part changes of the natural style of round 4 (scale 0.8-1.2, 8 crops of 40-100 %)
    "natural-r4/decay-1.5": {"style": "natural", "param": "fourier(decay=1.5)"},
    "natural-r4/decay-1.25": {"style": "natural", "param": "fourier(decay=1.25)"},
    "natural-r4/prior-3e-4": {"style": "natural", "prior": "auto:3e-4"},
    "natural-r4/rotate-20": {"style": "natural",
                             "transforms": "jitter:17,scale:0.8-1.2,rotate:20,jitter:9,crops:8:0.4-1"},
    "natural-r4/crops-12": {"style": "natural",
                            "transforms": "jitter:17,scale:0.8-1.2,rotate:10,jitter:9,crops:12:0.4-1"},
    "natural-r4/jitter-25": {"style": "natural",
                             "transforms": "jitter:25,scale:0.8-1.2,rotate:10,jitter:13,crops:8:0.4-1"},
    # round 8: the shipped natural style with a backward slope where ReLU6 is flat (what a 32 px image takes)
    "natural/cap-leak-0.05": {"style": "natural", "cap_leak": 0.05},
    # round 9: the natural style with one candidate per class (round 9 keeps the best of 3)
    "natural/candidates-1": {"style": "natural", "candidates": 1},
    # round 11: the skip gradient (half the gradient through residual branches) was adopted, and one candidate again;
    # the style of rounds 4-8 (one candidate, the exact gradient) and of rounds 9-10 (the best of 3)
    "natural/exact-grad": {"style": "natural", "skip_grad": 1.0},
    "natural/best-of-3/exact-grad": {"style": "natural", "candidates": 3, "skip_grad": 1.0},
    "natural/best-of-3": {"style": "natural", "candidates": 3},
}
#: Variants whose targets are not the class logits: ``logprob:C``, the class's log-probability, or a template.
CLASS_TERMS = {"natural/logprob": "logprob", "natural/lead": "class:{c} + logprob:{c}"}
LUCENT_CLASSES = PEERS / "lucent_classes.py"

Say = Callable[[str], None]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean, or None where a value is missing (a sum of terms has no one class probability)."""
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def run_variant(model: str, classes: Sequence[int], settings: dict[str, Any], out: Path, *, iters: int | None,
                batch: int, seed: int = 0, force: bool = False, say: Say = lambda m: None,
                term: str = "class") -> dict[str, Any]:
    """Class pre-images of ``model``'s logits (``term`` "logprob": their log-probabilities) for one variant, one
    sweep job per class (``preimage.sweep``), kept in ``out/store`` and copied to ``out/class{c}.png`` for the
    judge → the model's own p(class), iterations and seconds per picture (each job's share of its batch's time, so
    a table rebuilt from stored results keeps its timing). A rerun computes only the classes the store lacks (all
    of them with ``force``)."""
    rep = load(model, "classifier")
    m = Model(rep.spec)
    options = {**settings, "seed": seed, **({"iters": iters} if iters else {})}
    unit = (lambda c: term.format(c=c)) if "{c}" in term else (lambda c: f"{term}:{c}")
    jobs = [Job("maximize", m.id, "classifier", units=(unit(c),), options=options) for c in classes]
    store = Store(out / "store")
    res = run_sweep(jobs, {m.id: m}, store, LocalBackend(strict=True), batch=batch, recompute=force)
    if res.cached:
        say(f"  {settings}: {len(res.cached)} of {len(classes)} classes from {store.root}")
    files, own, seconds = [], [], 0.0
    for c, job in zip(classes, jobs, strict=True):
        rec = res.records[job.key]
        problem = rec["result"]["problems"][0]
        atomic_write_bytes(out / f"class{c}.png", store.file(job.key, problem["png"]).read_bytes())
        files.append(str(out / f"class{c}.png"))
        own.append(problem.get("probability"))  # None for a sum of terms (no one class to read)
        seconds += rec["result"].get("seconds", 0.0)
    info = rec["result"]["info"]
    return {"files": files, "cached": len(res.cached), "seconds": seconds,
            "per_image_seconds": seconds / max(len(classes), 1),
            "iterations": rec["result"]["iterations"], "model_probability": own, "threads": torch.get_num_threads(),
            "info": {k: info.get(k) for k in ("style", "param", "transforms", "prior", "prior_weight", "optimizer")}}


def judge_folder(judge: Judge, folder: Path, classes: Sequence[int]) -> dict[str, Any]:
    """The judge's verdict on ``folder/class{c}.png`` for the classes whose file exists."""
    have = [c for c in classes if (folder / f"class{c}.png").is_file()]
    if not have:
        return {"classes": [], "top1_rate": None, "mean_probability": None}
    verdict = judge.classes([folder / f"class{c}.png" for c in have], have)
    return {"classes": have, **verdict}


def run_lucent(model_file: Path, classes: Sequence[int], out: Path, *, threads: int, python: Path,
               timeout: float = 7200.0) -> dict[str, Any]:
    """Lucent's render_vis defaults on the classes (benchmarks/lucent_classes.py in Lucent's venv)."""
    cmd = [str(python), str(LUCENT_CLASSES), "--model-file", str(model_file), "--classes",
           ",".join(map(str, classes)), "--out", str(out), "--threads", str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"Lucent timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"skipped": "Lucent failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def class_transfer(model: str = "efficientnet_lite0", judge: str = "efficientnet_lite1",
                   classes: Sequence[int] | str = CLASSES, variants: Sequence[str] = ("paper", "natural"), *,
                   out: Path, iters: int | None = None, batch: int = 5, seed: int = 0, lucent: bool = True,
                   lucent_python_path: str | None = None, threads: int = 1, peers: dict[str, Path] | None = None,
                   force: bool = False, say: Say = lambda m: None) -> dict[str, Any]:
    """The class-transfer table: one row per variant (and per peer), judged by ``judge`` from the PNGs. Our
    pictures are sweep jobs kept in ``out/VARIANT/store``: a rerun judges the stored ones (``force``:
    recomputes). ``classes`` may name a set: ``"tuning"`` or ``"reporting"`` (``heldout.parse_classes``)."""
    if isinstance(classes, str):
        classes = parse_classes(classes, "classes")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise PreimageError(f"unknown variant '{unknown[0]}' (choose from: {', '.join(VARIANTS)})")
    bad = [c for c in classes if not 0 <= c < 1000]
    if bad:
        raise PreimageError(f"class {bad[0]} is out of range (0–999)")
    j = Judge(judge)
    rows = []
    for name in variants:
        say(f"{name}: {len(classes)} classes")
        folder = out / _slug(name)
        run = run_variant(model, classes, VARIANTS[name], folder, iters=iters, batch=batch, seed=seed,
                          term=CLASS_TERMS.get(name, "class"),
                          force=force, say=say)
        verdict = judge_folder(j, folder, classes)
        rows.append({"method": name, "folder": str(folder), "iterations": run["iterations"], "cached": run["cached"],
                     "per_image_seconds": run["per_image_seconds"], **run["info"],
                     "model_mean_probability": _mean(run["model_probability"]), **verdict})
    if lucent:
        py = lucent_python(lucent_python_path)
        if py is None:
            rows.append({"method": "Lucent render_vis", "skipped": "no Lucent environment "
                         "(bash benchmarks/setup_lucent.sh)"})
        else:
            say(f"Lucent: {len(classes)} classes")
            net_file = out / "lucent" / "net.pt"
            net_file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(load(model).net, net_file)
            info = run_lucent(net_file, classes, out / "lucent", threads=threads, python=py)
            net_file.unlink(missing_ok=True)
            rows.append({"method": "Lucent render_vis", "folder": str(out / "lucent"), **info,
                         **({} if "skipped" in info else judge_folder(j, out / "lucent", classes))})
    for name, folder in (peers or {}).items():
        rows.append({"method": name, "folder": str(folder), **judge_folder(j, Path(folder), classes)})
    return {"model": model, "judge": j.name, "classes": list(classes), "threads": torch.get_num_threads(),
            "rows": rows}
