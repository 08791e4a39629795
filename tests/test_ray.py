"""The sweep on a local Ray cluster (2 CPUs): same results as in-process, the model loaded once per worker,
and the faults: a worker killed mid-sweep, an interrupted driver, a damaged result, a job that raises."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import lite0_spec
from PIL import Image

from preimage.measures.stats import load_stats
from preimage.report.store import Store
from preimage.sweep import Job, Model, RayBackend, run_sweep

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'preimage[ray]')")

# Every random draw is the problem's own and each problem runs alone on the CPU, so results compare bit for bit
# across batchings and processes at one thread count (see test_sweep).
OPTS = {"kind": "channel", "restarts": 2, "iters": 40, "size": 40, "style": "paper"}
BATCH = 4  # 2 units × 2 restarts per batch: 3 batches for 6 units


@pytest.fixture(scope="module")
def cluster() -> None:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             object_store_memory=200 * 1024 ** 2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model() -> Model:
    spec = lite0_spec()
    return Model(spec, stats=load_stats(spec))


@pytest.fixture(scope="module")
def jobs(model: Model) -> list[Job]:
    return [Job("maximize", model.id, "blocks.1", (u,), options=OPTS) for u in range(6)]


@pytest.fixture(scope="module")
def reference(cluster: None, model: Model, jobs: list[Job], tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An uninterrupted sweep on the cluster."""
    store = Store(tmp_path_factory.mktemp("ray-ref"))
    res = run_sweep(jobs, {model.id: model}, store, RayBackend(), batch=BATCH)
    assert res.counts == {"total": 6, "done": 6, "cached": 0, "failed": 0}
    return store


def _images(store: Store, jobs: list[Job]) -> list[np.ndarray]:
    return [np.asarray(Image.open(store.file(j.key, f"r{r}.png"))) for j in jobs for r in range(2)]


def _same(a: Store, b: Store, jobs: list[Job]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_images(a, jobs), _images(b, jobs), strict=True))


def test_ray_matches_local_and_loads_each_model_once_per_worker(reference: Store, model: Model, jobs: list[Job],
                                                                tmp_path: Path) -> None:
    records = [reference.load(j.key) for j in jobs]
    workers = {r["result"]["worker"]["pid"] for r in records}
    assert 1 <= len(workers) <= 2 and workers.isdisjoint({os.getpid()})
    assert all(r["result"]["worker"]["models_loaded"] == 1 for r in records)  # 3 batches, ≤ 2 loads in all
    local = Store(tmp_path)
    run_sweep(jobs[:2], {model.id: model}, local, batch=BATCH)  # one batch, in this process
    # Ray's workers run at this process's thread count: the same pictures, bit for bit.
    assert _same(reference, local, jobs[:2])


def _kill_first_worker(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first process that runs a batch (Ray names it ray::run_batch)."""
    while not stop.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::run_batch"):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.02)


def test_a_killed_worker_is_retried(reference: Store, model: Model, jobs: list[Job], tmp_path: Path) -> None:
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_worker, args=(stop, killed), daemon=True)
    killer.start()
    try:
        res = run_sweep(jobs, {model.id: model}, Store(tmp_path), RayBackend(max_retries=3), batch=BATCH)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    assert res.counts == {"total": 6, "done": 6, "cached": 0, "failed": 0}
    pids = {res.records[j.key]["result"]["worker"]["pid"] for j in jobs}
    assert killed[0] not in pids
    assert _same(Store(tmp_path), reference, jobs)


def test_an_interrupted_driver_resumes(reference: Store, model: Model, jobs: list[Job], tmp_path: Path) -> None:
    store = Store(tmp_path)

    def interrupt(counts: dict[str, int]) -> None:
        if counts["done"] >= 2:
            raise KeyboardInterrupt  # as Ctrl-C in the driver, with batches still in flight

    with pytest.raises(KeyboardInterrupt):
        run_sweep(jobs, {model.id: model}, store, RayBackend(), batch=BATCH, progress=interrupt)
    finished = [j for j in jobs if store.load(j.key)]
    assert 2 <= len(finished) < 6
    mtimes = {j.key: store.file(j.key, "r0.png").stat().st_mtime_ns for j in finished}
    res = run_sweep(jobs, {model.id: model}, store, RayBackend(), batch=BATCH)
    assert res.counts == {"total": 6, "done": 6 - len(finished), "cached": len(finished), "failed": 0}
    assert all(store.file(k, "r0.png").stat().st_mtime_ns == t for k, t in mtimes.items())
    assert _same(store, reference, jobs)


def test_damaged_results_and_a_failing_job(reference: Store, model: Model, jobs: list[Job], tmp_path: Path) -> None:
    shutil.copytree(reference.root, tmp_path / "s")
    store = Store(tmp_path / "s")
    png = store.file(jobs[1].key, "r1.png")
    png.write_bytes(png.read_bytes()[:-20])  # truncated image
    store.file(jobs[4].key, "record.json").write_text("{\"key\": ")  # half-written record
    bad = Job("invert", model.id, "blocks.1", images=("sample:coffee",), options={"size": 32, "iters": 2, "C": [1e39]})
    res = run_sweep([*jobs, bad], {model.id: model}, store, RayBackend(), batch=BATCH)
    assert res.counts == {"total": 7, "done": 2, "cached": 4, "failed": 1}
    (f,) = res.failures
    assert f.key == bad.key and f.error.startswith("C must be") and "\n" not in f.error
    assert f.line().startswith(bad.key[:12] + " invert blocks.1 coffee: C must be")
    assert _same(store, reference, jobs)


def test_cli_atlas_on_the_cluster(cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from preimage.cli import main

    address = ray.get_runtime_context().gcs_address
    rc = main(["atlas", "--layers", "conv_stem", "--units", "0-1", "--iters", "2", "--unit-size", "16", "--size",
               "32", "--inversions", "0", "--address", address, "--out", str(tmp_path / "a"), "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    info = json.loads(cap.out)
    assert info["jobs"] == {"total": 3, "done": 3, "cached": 0, "failed": 0}
    man = json.loads((tmp_path / "a/manifest.json").read_text())
    assert {Path(u["page"]).name for u in man["layers"][0]["units"]} == {"0.html", "1.html"}
