"""Which score of a candidate picks the class picture that transfers? Best of k by the optimized network's own
reading of each candidate, scored three ways, each kept picture judged by a network that never saw the
optimization (transfer.md, round 10).

Scorers (all read only the optimized network, efficientnet_lite0):
  clean  the class's log-odds log p/(1−p) on the picture itself (what ``tasks/candidates.py`` does);
  views  the mean log-odds over 16 fixed random views (resized crops of 50–100 % of the area, aspect 3/4–4/3,
         half of them flipped), the same views for every picture;
  blur   the log-odds on the picture brought down to half its size and back up.

Candidates come from either
  --draws DIR DIR DIR   runs of transfer.py with one candidate and different seeds (DIR/natural/class{c}.png),
                        each class's pictures taken as its candidates (the simulation of candidates_sim.py); or
  --stash DIR           every candidate of a run with k candidates (DIR/cands_*.pt, written by stash_candidates.py).

    PYTHONPATH=src .venv/bin/python benchmarks/candidate_scorers.py --stash RUN/cands --out scorers.json
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

VIEWS = 16


def views(x: torch.Tensor, n: int = VIEWS, seed: int = 0) -> list[torch.Tensor]:
    """x: (N, 3, H, W) → n tensors (N, 3, H, W): fixed random resized crops (area 0.5–1, aspect 3/4–4/3), half of
    them flipped; the same n views for every picture."""
    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    out = []
    for _ in range(n):
        area = 0.5 + 0.5 * torch.rand((), generator=g).item()
        aspect = math.exp(math.log(3 / 4) + math.log(16 / 9) * torch.rand((), generator=g).item())
        ch, cw = min(h, round(h * math.sqrt(area / aspect))), min(w, round(w * math.sqrt(area * aspect)))
        top = int(torch.randint(0, h - ch + 1, (), generator=g))
        left = int(torch.randint(0, w - cw + 1, (), generator=g))
        v = TF.resized_crop(x, top, left, ch, cw, [h, w], antialias=True)
        out.append(TF.horizontal_flip(v) if torch.rand((), generator=g).item() < 0.5 else v)
    return out


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@torch.no_grad()
def scores(rep, x: torch.Tensor, c: int) -> dict[str, torch.Tensor]:
    """x: (N, 3, 224, 224) candidates of class c in 0–255 → each scorer's (N,) scores on ``rep`` (class logits)."""
    from preimage.measures.metrics import log_odds

    def lo(img: torch.Tensor) -> torch.Tensor:
        return log_odds(torch.cat([rep(rep.to_paper_units(b)) for b in img.split(16)]).float(), c)

    half = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return {"clean": lo(x), "views": torch.stack([lo(v) for v in views(x)]).mean(0),
            "blur": lo(F.interpolate(half, size=x.shape[-2:], mode="bilinear", align_corners=False))}


def load_draws(dirs: list[pathlib.Path], variant: str) -> list[tuple[int, torch.Tensor, int]]:
    """(class, (k, 3, 224, 224) candidates, −1) from one-candidate runs: each run's picture of the class."""
    from candidates_sim import variant_folder

    from preimage.images import load_image

    folders = [variant_folder(d, variant) for d in dirs]
    files = sorted(folders[0].glob("class*.png"), key=lambda f: int(f.stem[5:]))
    return [(int(f.stem[5:]), torch.cat([load_image(str(d / f.name), (224, 224)) for d in folders]), -1)
            for f in files]


def load_stash(folder: pathlib.Path) -> list[tuple[int, torch.Tensor, int]]:
    """(class, (k, 3, H, W) candidates, the candidate the run kept) from a run's stashed candidates."""
    from preimage.errors import PreimageError

    out = []
    for f in sorted(folder.glob("cands_*.pt"), key=lambda f: int(f.stem[6:])):
        try:
            d = torch.load(f)
            k, pics = d["k"], d["pictures"].float()
            targets = [int(t.split(":")[1]) for t in d["targets"]]  # one per picture; its k candidates adjacent
        except Exception as e:  # noqa: BLE001 (any unreadable file: say which)
            raise PreimageError(f"{f}: not a stash_candidates.py file ({type(e).__name__})") from None
        for i, c in enumerate(targets):
            out.append((c, pics[i * k:(i + 1) * k], int(d["rows"][i]) % k))
    return sorted(out, key=lambda t: t[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--draws", nargs="+", type=pathlib.Path)
    src.add_argument("--stash", type=pathlib.Path)
    ap.add_argument("--variant", default="natural/candidates-1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=pathlib.Path)
    a = ap.parse_args()
    if a.threads < 1:
        fail(f"--threads is at least 1, got {a.threads}")
    torch.set_num_threads(a.threads)
    from preimage.errors import PreimageError
    from preimage.measures.judge import Judge

    try:
        sets = load_draws(a.draws, a.variant) if a.draws else load_stash(a.stash)
    except PreimageError as e:
        fail(f"{e}")
    if a.out and not a.out.parent.is_dir():
        fail(f"--out {a.out}: no folder {a.out.parent}")
    if not sets:
        fail(f"no candidates in {a.stash or a.draws[0]}")
    own, judge = Judge("efficientnet_lite0"), Judge("efficientnet_lite1")
    rows = []
    for c, cand, kept in sets:
        s = scores(own.rep, own.read(cand), c)
        p = judge.probabilities(judge.read(cand))
        rows.append({"class": c, "kept": kept, "judge_p": p[:, c].tolist(),
                     "judge_top1": (p.argmax(1) == c).tolist(), **{n: v.tolist() for n, v in s.items()}})
    summary = {}
    for name in ("clean", "views", "blur", "candidate 0"):
        pick = [0 if name == "candidate 0" else max(range(len(r["clean"])), key=lambda j: r[name][j]) for r in rows]
        summary[name] = {"top1": sum(r["judge_top1"][j] for r, j in zip(rows, pick, strict=True)),
                         "mean_p": sum(r["judge_p"][j] for r, j in zip(rows, pick, strict=True)) / len(rows),
                         "picks": pick}
    summary["bound"] = {"top1": sum(any(r["judge_top1"]) for r in rows),
                        "mean_p": sum(max(r["judge_p"]) for r in rows) / len(rows)}
    if a.stash:  # the run's own pick, from its in-run scores, against the clean scorer's from the saved pictures
        summary["run"] = {"top1": sum(r["judge_top1"][r["kept"]] for r in rows),
                          "mean_p": sum(r["judge_p"][r["kept"]] for r in rows) / len(rows),
                          "agrees_with_clean": sum(r["kept"] == j for r, j in zip(rows, summary["clean"]["picks"],
                                                                                   strict=True))}
    for name, v in summary.items():
        print(f"{name:12s} {v['top1']}/{len(rows)}  mean p {v['mean_p']:.3f}")
    if a.out:
        try:
            a.out.write_text(json.dumps({"classes": [r["class"] for r in rows], "rows": rows, "summary": summary},
                                        indent=1))
        except OSError as e:
            fail(f"--out {a.out}: {e.strerror}")


if __name__ == "__main__":
    main()
