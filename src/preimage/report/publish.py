"""The one writer of a run's results for people: each stored picture under a readable name, a mosaic of several,
and a JSON summary that lists, for every picture, its key, its configuration, the package version and the SHA-256
of its file. The command line (a one-job sweep) and ``Result.save`` both write through here.

Nothing is overwritten silently: a readable name may be written again only with the very bytes it holds (a rerun
of the same configuration), a summary only by the same results; anything else needs ``force`` (``--force``), and
the check (``claim``) runs before any work.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import PreimageError
from ..images import atomic_write_bytes, safe_name
from .store import Store, config_key, version
from .writers import check_folder, save_grid, write_json

#: The short prefix of each task's readable names.
PREFIX = {"maximize": "max", "caricature": "car", "accentuate": "acc", "invert": "inv"}


def path_names(weights: Sequence[float], budgets: Sequence[float | None] = (None,)) -> list[str]:
    """The names that tell an accentuation's pictures apart, weight-major: ``w3`` per weight, ``w3-rmse24`` per
    weight and distance budget where there are several budgets."""
    return [f"w{w:g}" + ("" if b is None or len(budgets) == 1 else f"-rmse{b:g}") for w in weights for b in budgets]


def picture_names(task: str, config: dict[str, Any], subject: str) -> list[str]:
    """Readable file names (no suffix) for a job's pictures: task, subject (the target, or the input image's name),
    model, layer, then what tells its problems apart (C, restart), in the order the task makes them."""
    opts = config.get("options", {})
    model = safe_name(str(config.get("model", "model")).split("@")[0])
    base = [PREFIX.get(task, task), safe_name(subject), model, safe_name(config.get("layer") or "output")]
    cs = opts.get("C") if isinstance(opts.get("C"), list) else [None]
    restarts = int(opts.get("restarts", 1) or 1)
    ws, bs = opts.get("reg_weight"), opts.get("max_rmse")
    if isinstance(ws, list) and len(ws) > 1 or isinstance(bs, list) and len(bs) > 1:  # accentuate: one per pair
        names = path_names(ws if isinstance(ws, list) else [ws], bs if isinstance(bs, list) else [bs])
        return ["-".join([*base, n]) for n in names]
    return ["-".join(base + ([f"C{c:g}"] if len(cs) > 1 else []) + ([f"r{r}"] if restarts > 1 else []))
            for c in cs for r in range(restarts)]


def _stem(task: str, names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    common = names[0]
    for n in names[1:]:
        while not n.startswith(common):
            common = common[:-1]
    common = common.rstrip("-_") or PREFIX.get(task, task)
    return f"{common}-{len(names)}pictures"


def plan(task: str, jobs: Sequence[tuple[dict[str, Any], str]]) -> tuple[list[list[str]], str]:
    """Readable names for the pictures of several jobs (their configurations and subjects), made unique, and the
    summary's stem."""
    names = [picture_names(task, c, subject) for c, subject in jobs]
    seen: dict[str, int] = {}
    for group in names:
        for i, n in enumerate(group):
            k = seen.get(n, 0)
            seen[n] = k + 1
            if k:
                group[i] = f"{n}-{k + 1}"
    return names, _stem(task, [n for g in names for n in g])


def claim(folder: str | Path, task: str, jobs: Sequence[tuple[dict[str, Any], str]], store: Store,
          force: bool) -> None:
    """Refuse, before any work, to overwrite what another result wrote into ``folder``: a readable picture may be
    written again only if it is one of its key's stored files (a rerun of the same configuration), the summary
    only if it lists the same results. ``force`` allows everything."""
    out = check_folder(folder)
    if force:
        return
    names, stem = plan(task, jobs)
    keys = [config_key(c) for c, _ in jobs]
    taken = []
    for key, group in zip(keys, names, strict=True):
        rec = store.load(key, verify=False)
        digests = {m.get("sha256") for m in rec["files"].values()} if rec else set()
        for n in group:
            path = out / f"{n}.png"
            if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() not in digests:
                taken.append(path)
    s = out / f"{stem}.json"
    if s.exists():
        try:
            same = json.loads(s.read_text()).get("keys") == keys
        except (OSError, ValueError):
            same = False
        if not same:
            taken.append(s)
    if taken:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise PreimageError(f"{taken[0]}{more} already exists from another run; pass force=True to overwrite it, "
                            "or write into another folder", param="force")


def publish(folder: str | Path, task: str, saved: Sequence[tuple[dict[str, Any], dict[str, Any], str]],
            store: Store, *, force: bool = False, mosaic: bool = False, columns: int | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write each stored picture of ``saved`` ((configuration, store record, subject) per job) under its readable
    name into ``folder``, a mosaic of them (``mosaic``), and the summary JSON; return the summary (``extra``
    merged in).

    The summary: task, model, layer, ``results`` (one per picture: its problem, metrics, file, key, SHA-256),
    ``keys``, ``configs``, ``images``, ``image`` (the mosaic or the only picture), the run's settings (``info`` of
    the first record), iterations, seconds, the package version, and the headline numbers of the task."""
    out = Path(folder)
    jobs = [(c, subject) for c, _, subject in saved]
    claim(out, task, jobs, store, force)
    names, stem = plan(task, jobs)
    results, images = [], []
    for (_, rec, _), group in zip(saved, names, strict=True):
        for name, p in zip(group, rec["result"]["problems"], strict=True):
            data = store.file(rec["key"], p["png"]).read_bytes()
            atomic_write_bytes(out / f"{name}.png", data)
            npy = p["png"].removesuffix(".png") + ".npy"
            if npy in rec["files"]:
                atomic_write_bytes(out / f"{name}.npy", store.file(rec["key"], npy).read_bytes())
            attr = p["png"].removesuffix(".png") + "-attribution.png"
            more = {}
            if attr in rec["files"]:  # the attribution overlay, beside its picture
                atomic_write_bytes(out / f"{name}-attribution.png", store.file(rec["key"], attr).read_bytes())
                more["attribution"] = str(out / f"{name}-attribution.png")
            images.append(str(out / f"{name}.png"))
            results.append({**{k: v for k, v in p.items() if k != "png"}, "image": images[-1], "key": rec["key"],
                            "sha256": hashlib.sha256(data).hexdigest(), **more})
    first = saved[0][1]["result"] if saved else {}
    keys = [r["key"] for _, r, _ in saved]
    summary: dict[str, Any] = {
        "task": task, "model": saved[0][0].get("model", "").split("@")[0] if saved else None,
        "model_id": saved[0][0].get("model") if saved else None, "layer": saved[0][0].get("layer") if saved else None,
        "version": version(), "keys": keys, "configs": [c for c, _, _ in saved],
        "iterations": first.get("iterations"),
        "seconds": round(sum(r["result"].get("seconds", 0.0) for _, r, _ in saved), 3),
        **{k: v for k, v in (first.get("info") or {}).items() if k != "task"},
        **notes([r["result"].get("info") or {} for _, r, _ in saved]),
        **headline(task, results), "images": images, "results": results}
    summary["image"] = images[0] if images else None
    if mosaic and len(images) > 1:
        from ..images import load_image

        restarts = max((r.get("restarts", 1) for r in results), default=1)
        ncol = columns or (restarts if restarts > 1 else math.ceil(math.sqrt(len(images))))
        pics = [load_image(f)[0] for f in images]
        summary["image"] = str(save_grid(pics, out / f"{stem}-mosaic.png", ncol=ncol, scale="clip"))
    summary.update(extra or {})
    summary["json"] = str(write_json(out / f"{stem}.json", summary))
    return summary




#: The ``info`` notes a task leaves for the reader (how the style adapted, what was continued, what was missed),
#: printed by the console, merged over a sweep's records (``notes``) and shown under the inline grid.
NOTES = ("adapted", "finished", "missed")


def notes(infos: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The reader's notes (``NOTES``) of every record, each distinct one once, in order: records
    computed in different batches or runs (some found in the store) each carry only their own targets' notes."""
    out = {}
    for k in NOTES:
        said = list(dict.fromkeys(i[k] for i in infos if i.get(k)))
        if said:
            out[k] = "; ".join(said)
    return out


def headline(task: str, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The numbers a reader looks for first (the README's JSON keys): the first picture's for one picture, lists
    (the best restart per target) for several targets."""
    if not results:
        return {}
    first = results[0]
    if task == "invert":
        return {"error": first.get("error"), "input": first.get("input")}
    if task in ("caricature",):
        s0, s1 = first.get("score_start"), first.get("score_end")
        return {"input": first.get("input"), "score_start": s0, "score_end": s1, "gain": s1 / s0 if s0 else None,
                **{k: first[k] for k in ("score_limit", "share_of_limit") if k in first}}
    if task == "maximize":
        targets = list(dict.fromkeys(r["target"] for r in results))
        best = {t: max((r for r in results if r["target"] == t),
                       key=lambda r: -math.inf if r.get("activation") is None else r["activation"]) for t in targets}
        out = {"targets": targets, **{k: [best[t].get(k) for t in targets]
                                      for k in ("activation", "reference_max", "ratio", "probability")
                                      if any(k in r for r in results)}}
        units = [best[t].get("unit") for t in targets]
        if all(u is not None for u in units):
            out["units"] = units
        return out
    return {}
