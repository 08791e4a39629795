"""What the peers' accentuation runners share (faccent_accentuate.py, horama_accentuate.py): the command line, the
(image, class, weight) jobs, resumable output and one JSON line per picture.

Runs with a peer's own Python (benchmarks/faccent-venv, benchmarks/horama-venv): it imports nothing from preimage,
only the standard library, numpy, PIL and torch.

Output: ``OUT/{image}/c{class}_w{weight}.png`` and one JSON line per picture, printed and appended to
``OUT/log.jsonl``: ``{"method", "image", "class", "weight", "half", "seconds", "steps", "png", "load", ...}``
(load: the machine's 1-minute load average before and after, as the seconds depend on it). A picture
whose PNG exists is skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np


@dataclass(frozen=True)
class Job:
    """One picture: accentuate class ``cls`` in the seed ``image`` (a PNG path) with regularization ``weight``."""

    image: pathlib.Path
    cls: int
    weight: float
    half: str

    @property
    def name(self) -> str:
        return self.image.stem

    def png(self, out: pathlib.Path) -> pathlib.Path:
        return out / self.name / f"c{self.cls}_w{self.weight:g}.png"

    def seed(self, base: int) -> int:
        """A per-picture random seed: the same job always draws the same crops and noise."""
        return (base + zlib.crc32(f"{self.name}:{self.cls}:{self.weight:g}".encode())) % 2**31



def fail(message: str) -> NoReturn:
    """A bad argument: one line on stderr and exit status 2, as every preimage command does."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)

def parser(doc: str, steps: int, weights: str) -> argparse.ArgumentParser:
    """The runners' shared arguments; ``steps`` and ``weights`` are the peer's defaults."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--model-file", required=True, help="torch.save'd module taking [0, 1] RGB (normalizes inside)")
    ap.add_argument("--images", required=True, nargs="+", help="seed PNGs (224 px); a pair's image is a file stem")
    ap.add_argument("--pairs", required=True, help="pairs.json (benchmarks/accentuation_eval.py pairs), or "
                    "'stem:class,stem:class,...'")
    ap.add_argument("--half", default="all", choices=("all", "tuning", "reporting"), help="pairs of this half only")
    ap.add_argument("--per-image", type=int, default=0, help="the first N classes of each image only (0: all)")
    ap.add_argument("--weights", default=weights, help="comma-separated regularization weights to sweep")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-keep-heap", action="store_true", help="leave glibc's malloc thresholds alone")
    ap.add_argument("--dry-run", action="store_true", help="list the jobs still to do, run nothing")
    return ap

def read_json(path: str, option: str) -> Any:
    """A JSON file named by an option, or one error line (exit 2) when it is missing or not JSON."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as e:
        fail(f"{option} {path}: {getattr(e, 'strerror', None) or e}")


def jobs(a: argparse.Namespace) -> list[Job]:
    """Every (image, class, weight) job of the arguments, pair by pair (each image's first class first), each
    pair's weights together."""
    images = {pathlib.Path(p).stem: pathlib.Path(p).resolve() for p in a.images}
    if pathlib.Path(a.pairs).is_file():
        pairs = [(p["image"], int(p["class"]), p.get("half", "")) for p in read_json(a.pairs, "--pairs")
                 ["pairs"]]
    else:
        pairs = [(s.split(":")[0].strip(), int(s.split(":")[1]), "") for s in a.pairs.split(",") if s.strip()]
    pairs = [p for p in pairs if a.half == "all" or p[2] == a.half]
    # Each image's first class, then each image's second, ...: a run cut short covers every image.
    rank = {p: sum(q[0] == p[0] for q in pairs[:i]) for i, p in enumerate(pairs)}
    pairs = sorted((p for p in pairs if not a.per_image or rank[p] < a.per_image), key=lambda p: rank[p])
    missing = sorted({p[0] for p in pairs} - set(images))
    if missing:
        fail(f"no --images file for {', '.join(missing)}")
    try:
        weights = [float(w) for w in a.weights.split(",") if w.strip()]
    except ValueError:
        fail(f"--weights takes numbers separated by commas, got {a.weights!r}")
    return [Job(images[im], c, w, half) for im, c, half in pairs for w in weights]


def keep_heap() -> bool:
    """Raise glibc's malloc trim and mmap thresholds, so that the activation buffers torch frees every step stay
    in the heap instead of being page-faulted back in: the allocator setting preimage's own loop runs with, so
    both sides of the comparison run on the same allocator. Returns whether it took effect (False off glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim = libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    mmap = libc.mallopt(-3, 1 << 30) or libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (older glibc: ≤ 32 MB)
    return bool(trim and mmap)


def save_png(arr: np.ndarray, png: pathlib.Path) -> None:
    """H×W×3 floats in [0, 1] → an 8-bit PNG, written atomically (a partial file never looks done)."""
    from PIL import Image

    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(tmp)
    tmp.replace(png)


def run(a: argparse.Namespace, method: str, info: dict[str, Any],
        accentuate: Callable[[Job], tuple[np.ndarray, dict[str, Any]]]) -> None:
    """Run every job not yet done: ``accentuate(job)`` returns the picture (H×W×3 in [0, 1]) and extra fields."""
    import torch

    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(a.threads)
    info = {**info, "keep_heap": False if a.no_keep_heap else keep_heap()}
    out = pathlib.Path(a.out)
    todo = [j for j in jobs(a) if not j.png(out).is_file()]
    if a.dry_run:
        for j in todo:
            print(json.dumps({"image": j.name, "class": j.cls, "weight": j.weight, "half": j.half}))
        return
    out.mkdir(parents=True, exist_ok=True)
    for j in todo:
        load = os.getloadavg()[0]
        torch.manual_seed(j.seed(a.seed))
        np.random.seed(j.seed(a.seed))
        t = time.perf_counter()
        arr, extra = accentuate(j)
        seconds = time.perf_counter() - t
        save_png(arr, j.png(out))
        rec = {"method": method, "image": j.name, "class": j.cls, "weight": j.weight, "half": j.half,
               "seconds": round(seconds, 2), "steps": a.steps, "png": str(j.png(out)),
               "threads": torch.get_num_threads(), "load": [round(load, 2), round(os.getloadavg()[0], 2)], **info,
               **extra}
        line = json.dumps(rec)
        with open(out / "log.jsonl", "a") as f:
            f.write(line + "\n")
        print(line, flush=True)
