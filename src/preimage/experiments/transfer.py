"""Class transfer: class pre-images of one network judged by another that never saw the optimization.

For each variant (a style with optional overrides), ``maximize`` the class logits of ``model`` for every class,
write the PNGs as the CLI does, and let the judge read them back: its top-1 rate and mean p(class), and the
wall time per pre-image. Peers' pictures (Lucent, Horama) are judged from their folders the same way. This is
what ``preimage bench --transfer`` and benchmarks/transfer.py run.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import PreimageError
from ..images import save_png
from ..measures.judge import Judge
from ..representations import load
from ..tasks.activation import maximize
from .bench import lucent_python
from .peers import HERE as PEERS

#: Every 50th ImageNet class from 25: the issue's 20 classes.
CLASSES = tuple(range(25, 1000, 50))
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
    "natural/prior-1e-3": {"style": "natural", "prior_weight": 1e-3},
    "natural/prior-1e-5": {"style": "natural", "prior_weight": 1e-5},
}
LUCENT_CLASSES = PEERS / "lucent_classes.py"

Say = Callable[[str], None]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def run_variant(model: str, classes: Sequence[int], settings: dict[str, Any], out: Path, *, iters: int | None,
                batch: int, seed: int = 0, say: Say = lambda m: None) -> dict[str, Any]:
    """Class pre-images of ``model``'s logits for one variant, written to ``out/class{c}.png`` → timings and
    the model's own p(class) on the final image. A finished run (``out/run.json`` with the same settings and
    every picture present) is reused, so an interrupted table resumes."""
    done = out / "run.json"
    key = {"model": model, "classes": list(classes), "settings": settings, "iters": iters, "seed": seed}
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("key") == key and all(Path(f).is_file() for f in old["files"]):
            say(f"  {settings}: reusing {done}")
            return old
    rep = load(model, "classifier")
    out.mkdir(parents=True, exist_ok=True)
    files, own, seconds = [], [], 0.0
    for i in range(0, len(classes), batch):
        chunk = list(classes[i:i + batch])
        t = time.perf_counter()
        res = maximize(rep, chunk, iters=iters, seed=seed, **settings)
        seconds += time.perf_counter() - t
        for c, img in zip(chunk, res.images, strict=True):
            files.append(str(save_png(img, out / f"class{c}.png")))
        own += res.metrics["probability"].tolist()
        say(f"  {settings}: classes {chunk} done ({seconds:.0f} s so far)")
    run = {"key": key, "files": files, "seconds": seconds, "per_image_seconds": seconds / max(len(classes), 1),
           "iterations": res.iterations, "model_probability": own, "threads": torch.get_num_threads(), "info": {
               k: res.info.get(k) for k in ("style", "param", "transforms", "prior", "prior_weight", "optimizer")}}
    done.write_text(json.dumps(run, indent=1))
    return run


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
                   classes: Sequence[int] = CLASSES, variants: Sequence[str] = ("paper", "natural"), *,
                   out: Path, iters: int | None = None, batch: int = 5, seed: int = 0, lucent: bool = True,
                   lucent_python_path: str | None = None, threads: int = 1, peers: dict[str, Path] | None = None,
                   say: Say = lambda m: None) -> dict[str, Any]:
    """The class-transfer table: one row per variant (and per peer), judged by ``judge`` from the PNGs."""
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
        run = run_variant(model, classes, VARIANTS[name], folder, iters=iters, batch=batch, seed=seed, say=say)
        verdict = judge_folder(j, folder, classes)
        rows.append({"method": name, "folder": str(folder), "iterations": run["iterations"],
                     "per_image_seconds": run["per_image_seconds"], **run["info"],
                     "model_mean_probability": sum(run["model_probability"]) / len(classes), **verdict})
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
