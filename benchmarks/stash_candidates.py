"""Run benchmarks/transfer.py and keep every candidate picture, not only the one best of k keeps, so that other
ways of picking among them can be judged later (benchmarks/candidate_scorers.py; transfer.md, round 10).

    STASH=DIR/cands PYTHONPATH=src python benchmarks/stash_candidates.py --classes tuning --no-lucent \
        --variants natural --seed 0 --out DIR

Each k-candidate maximization writes STASH/cands_N.pt: its targets, k, the candidates' pictures (N·k×3×H×W,
uint8), their scores and metrics, and the rows kept. It wraps ``preimage.tasks.activation``'s candidate steps
without changing what they compute: the run's pictures and table are the plain transfer.py run's.
"""

from __future__ import annotations

import os
import pathlib
import runpy
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parent


def main() -> None:
    import preimage.tasks.activation as act

    if not os.environ.get("STASH"):
        print("error: set STASH to the folder for the candidates (see the docstring)", file=sys.stderr)
        sys.exit(2)
    stash = pathlib.Path(os.environ["STASH"])
    try:
        stash.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: STASH={stash}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    seen: dict = {}
    problems_of, pictures_of, keep_rows_of, scores_of = (act.candidate_problems, act.pictures, act.keep_rows,
                                                         act.candidate_scores)

    def candidate_problems(problems: list[dict], k: int) -> list[dict]:
        seen.update(targets=[p["target"] for p in problems], k=k)
        return problems_of(problems, k)

    def pictures(rep, x: torch.Tensor) -> torch.Tensor:
        seen["pictures"] = out = pictures_of(rep, x)
        return out

    def candidate_scores(metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.update(score=(s := scores_of(metrics)), metrics={n: v.detach().clone() for n, v in metrics.items()})
        return s

    def keep_rows(trace, rows: torch.Tensor):
        n = len(list(stash.glob("cands_*.pt")))
        torch.save({"targets": seen["targets"], "k": seen["k"], "rows": rows.clone(), "score": seen["score"],
                    "metrics": seen["metrics"], "pictures": seen["pictures"].clamp(0, 255).round().to(torch.uint8)},
                   stash / f"cands_{n}.pt")
        return keep_rows_of(trace, rows)

    act.candidate_problems, act.pictures, act.keep_rows, act.candidate_scores = (candidate_problems, pictures,
                                                                                 keep_rows, candidate_scores)
    sys.argv = [str(ROOT / "transfer.py"), *sys.argv[1:]]
    runpy.run_path(str(ROOT / "transfer.py"), run_name="__main__")


if __name__ == "__main__":
    main()
