"""The sweep engine, in-process: keys, batches, the keyed store, failures, resuming, batch independence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import lite0_spec
from PIL import Image

from preimage.images import load_image, save_png
from preimage.measures.stats import load_stats
from preimage.report.store import Output, Store, code_digest, sources_digest
from preimage.sweep import Job, Model, run_sweep
from preimage.sweep.jobs import make_batches
from preimage.sweep.runners import one_line

# Every random draw is the problem's own (engine.rng), so a job's result does not depend on the batch it ran in.
OPTS = {"kind": "channel", "restarts": 2, "iters": 3, "size": 24, "thumbnail": 16, "style": "paper"}


@pytest.fixture(scope="module")
def model() -> Model:
    spec = lite0_spec()
    return Model(spec, stats=load_stats(spec))


def _png(store: Store, key: str, name: str) -> np.ndarray:
    return np.asarray(Image.open(store.file(key, name)))


def test_keys_follow_the_whole_configuration(tmp_path: Path, model: Model) -> None:
    base = Job("maximize", model.id, "blocks.1", (3,), options=dict(OPTS))
    same = Job("maximize", model.id, "blocks.1", (3,), options=dict(reversed(list(OPTS.items()))))
    assert base.key == same.key and len(base.key) == 32
    others = [Job("maximize", model.id, "blocks.1", (4,), options=OPTS),
              Job("maximize", model.id, "blocks.2", (3,), options=OPTS),
              Job("maximize", model.id, "blocks.1", (3,), options=OPTS | {"seed": 1}),
              Job("maximize", model.id, "blocks.1", (3,), options=OPTS | {"iters": 4}),
              Job("maximize", "efficientnet_lite0@0000000000000000", "blocks.1", (3,), options=OPTS),
              Job("invert", model.id, "blocks.1", (3,), options=OPTS)]
    assert len({base.key, *(j.key for j in others)}) == 7
    # Images are named by their contents: a renamed copy is the same image, an edited one is not.
    a = save_png(load_image("sample:chelsea", 16)[0], tmp_path / "a.png", "clip")
    b = tmp_path / "b.png"
    shutil.copy(a, b)
    c = save_png(load_image("sample:coffee", 16)[0], tmp_path / "c.png", "clip")
    keys = [Job("invert", model.id, "blocks.1", images=(str(p),)).key for p in (a, b, c)]
    assert keys[0] == keys[1] != keys[2]
    config = Job("maximize", model.id, None, (1,)).config()
    assert config["version"] and config["code"] == code_digest() and len(config["code"]) == 16


def test_the_key_changes_with_the_code(tmp_path: Path) -> None:
    # A store made by other code is not served: the sources' digest changes with any byte or file name.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    before = sources_digest(tmp_path)
    (tmp_path / "pkg" / "notes.txt").write_text("still not code")
    assert sources_digest(tmp_path) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    edited = sources_digest(tmp_path)
    (tmp_path / "pkg" / "a.py").rename(tmp_path / "pkg" / "b.py")
    assert len({before, edited, sources_digest(tmp_path)}) == 3


def test_batches_share_a_signature_and_respect_the_size(model: Model) -> None:
    jobs = [Job("maximize", model.id, "blocks.1", (u,), options=OPTS) for u in range(5)]
    jobs += [Job("maximize", model.id, "blocks.2", (u,), options=OPTS) for u in range(2)]
    jobs += [Job("examples", model.id, "blocks.1", images=("sample:chelsea",)) for _ in range(2)]
    batches = make_batches(jobs, problems=4, batchable=("maximize",))
    # 2 restarts per unit: 2 units per batch of 4 problems; other layers and unbatchable tasks apart.
    assert [[j.units[0] if j.units else None for j in b] for b in batches] == [[0, 1], [2, 3], [4], [0, 1], [None],
                                                                               [None]]
    assert all(len({j.layer for j in b}) == 1 for b in batches)


def test_store_trusts_only_complete_results(tmp_path: Path) -> None:
    store = Store(tmp_path)
    job = Job("invert", "m@1", "x", images=("sample:chelsea",))
    rec = store.save(job.config(), Output({"error": 0.5}, {"a.png": b"\x89PNG data", "b.npy": b"numbers"}))
    assert store.load(job.key) == rec and rec["result"] == {"error": 0.5}
    assert json.loads((store.folder(job.key) / "record.json").read_text())["job"]["layer"] == "x"
    (store.folder(job.key) / "a.png").write_bytes(b"\x89PNG dat")  # truncated
    assert store.load(job.key) is None
    store.save(job.config(), Output({"error": 0.5}, {"a.png": b"\x89PNG data"}))
    assert store.load(job.key) is not None and not (store.folder(job.key) / "b.npy").exists()
    (store.folder(job.key) / "record.json").write_text('{"key": "' + job.key + '", "form')  # half-written
    assert store.load(job.key) is None
    (store.folder(job.key) / ".a.png.x1y2.part").write_bytes(b"half")
    assert store.clean() == 1


def test_failures_resume_and_damaged_results(tmp_path: Path, model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    from preimage.sweep import runners

    # This process may have set up models for earlier tests: count from a fresh worker context.
    monkeypatch.setattr(runners, "_CONTEXT", runners.Context({}))
    monkeypatch.setitem(runners.LOADS, "count", 0)
    store = Store(tmp_path / "store")
    jobs = [Job("maximize", model.id, "blocks.1", (u,), options=OPTS) for u in range(3)]
    bad = Job("invert", model.id, "blocks.1", images=("sample:coffee",), options={"size": 32, "iters": 2, "C": [1e39]})
    seen: list[dict[str, int]] = []
    res = run_sweep([*jobs, bad], {model.id: model}, store, batch=4, progress=seen.append)
    assert res.counts == {"total": 4, "done": 3, "cached": 0, "failed": 1}
    (f,) = res.failures
    assert f.key == bad.key and "C must be" in f.error and "\n" not in f.error and f.job == "invert blocks.1 coffee"
    assert seen[0]["done"] == 0 and seen[-1] == res.counts
    rec = res.records[jobs[1].key]["result"]
    assert [p["unit"] for p in rec["problems"]] == [1, 1] and rec["size"] == [24, 24]
    assert {p["png"] for p in rec["problems"]} == {"r0.png", "r1.png"}
    assert _png(store, jobs[1].key, "thumb.png").shape[:2] == (16, 16)
    assert rec["worker"]["models_loaded"] == 1  # the model is set up once per process

    # A rerun computes nothing finished; the failed job is tried again; a damaged file is recomputed.
    mtime = store.file(jobs[0].key, "r0.png").stat().st_mtime_ns
    before = _png(store, jobs[2].key, "r1.png")
    store.file(jobs[2].key, "r1.png").write_bytes(store.file(jobs[2].key, "r1.png").read_bytes()[:50])
    again = run_sweep([*jobs, bad], {model.id: model}, store, batch=4)
    assert again.counts == {"total": 4, "done": 1, "cached": 2, "failed": 1}
    assert store.file(jobs[0].key, "r0.png").stat().st_mtime_ns == mtime
    assert np.array_equal(_png(store, jobs[2].key, "r1.png"), before)

    # A unit's result does not depend on the batch it shared: alone, it is the same image.
    alone = Store(tmp_path / "alone")
    run_sweep(jobs[1:2], {model.id: model}, alone, batch=1)
    for name in ("r0.png", "r1.png"):
        assert np.array_equal(_png(alone, jobs[1].key, name), _png(store, jobs[1].key, name))


def test_one_line_errors() -> None:
    try:
        raise RuntimeError("first\nsecond   line")
    except RuntimeError as e:
        line = one_line(e)
    assert line.startswith("RuntimeError: first second line (test_sweep.py:") and "\n" not in line
