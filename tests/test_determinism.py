"""A picture depends only on what was asked: the same problem gives the same picture, bit for bit on the CPU,
whatever batch it shares and whichever path runs it (Python, the command line alone or in a range, the atlas in
this process or on Ray)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import preimage
from preimage.cli import main
from preimage.experiments.atlas import run_atlas

LAYER, SIZE, ITERS = "blocks.1", 40, 4


def _png(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _cli(capsys, args: list[str]) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_maximize_alone_in_a_batch_and_on_the_command_line(tmp_path, capsys) -> None:
    alone = preimage.maximize("efficientnet_lite0", f"{LAYER}:3", size=SIZE, iters=ITERS, restarts=2)
    batch = preimage.maximize("efficientnet_lite0", f"{LAYER}:2-4", size=SIZE, iters=ITERS, restarts=2)
    assert torch.equal(alone.images, batch.images[2:4])
    base = ["maximize", "--layer", LAYER, "--size", str(SIZE), "--iters", str(ITERS), "--restarts", "2"]
    single = _cli(capsys, [*base, "--unit", "3", "--out", str(tmp_path / "a")])
    ranged = _cli(capsys, [*base, "--unit", "2-4", "--out", str(tmp_path / "b")])
    for r in (0, 1):
        np.testing.assert_array_equal(_png(single["images"][r]), alone.uint8()[r])
        np.testing.assert_array_equal(_png(ranged["images"][2 + r]), alone.uint8()[r])
    assert single["keys"] == ranged["keys"][1:2]  # the same problem, the same record


def test_invert_and_caricature_alone_and_with_another_image(tmp_path, capsys) -> None:
    kw = {"layer": LAYER, "size": SIZE, "iters": ITERS}
    one = preimage.invert("efficientnet_lite0", "sample:chelsea", C=[100.0], restarts=2, **kw)
    two = preimage.invert("efficientnet_lite0", ["sample:coffee", "sample:chelsea"], C=[20.0, 100.0], restarts=2,
                          **kw)
    assert torch.equal(one.images, two.images[6:8])  # chelsea, C=100, restarts 0 and 1
    cli = _cli(capsys, ["invert", "sample:chelsea", "--layer", LAYER, "--size", str(SIZE), "--iters", str(ITERS),
                        "--restarts", "2", "--out", str(tmp_path / "i")])
    for r in (0, 1):
        np.testing.assert_array_equal(_png(cli["images"][r]), one.uint8()[r])
    c1 = preimage.caricature("efficientnet_lite0", "sample:chelsea", **kw)
    c2 = preimage.caricature("efficientnet_lite0", ["sample:coffee", "sample:chelsea"], **kw)
    assert torch.equal(c1.images[0], c2.images[1])
    cli = _cli(capsys, ["caricature", "sample:chelsea", "--layer", LAYER, "--size", str(SIZE), "--iters",
                        str(ITERS), "--out", str(tmp_path / "c")])
    np.testing.assert_array_equal(_png(cli["image"]), c1.uint8()[0])


def test_the_atlas_here_and_on_ray_draws_the_same_pictures_as_python(tmp_path) -> None:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'preimage[ray]')")
    from preimage.sweep import RayBackend

    opts = {"layers": [LAYER], "units": [3], "iters": ITERS, "unit_size": SIZE, "size": SIZE, "inversions": 1,
            "images": ["sample:chelsea", "sample:coffee"], "log": lambda s: None}
    local = run_atlas("efficientnet_lite0", tmp_path / "local", **opts)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
             object_store_memory=200 * 1024 ** 2)
    try:
        remote = run_atlas("efficientnet_lite0", tmp_path / "ray", backend=RayBackend(), **opts)
    finally:
        ray.shutdown()
    assert local["jobs"]["failed"] == remote["jobs"]["failed"] == 0
    unit = json.loads(Path(local["manifest"]).read_text())["layers"][0]
    ray_unit = json.loads(Path(remote["manifest"]).read_text())["layers"][0]
    python = preimage.maximize("efficientnet_lite0", f"{LAYER}:3", size=SIZE, iters=ITERS, restarts=2)
    for r, (a, b) in enumerate(zip(unit["units"][0]["pre_images"], ray_unit["units"][0]["pre_images"], strict=True)):
        np.testing.assert_array_equal(_png(tmp_path / "local" / a), _png(tmp_path / "ray" / b))
        np.testing.assert_array_equal(_png(tmp_path / "local" / a), python.uint8()[r])
    inv = preimage.invert("efficientnet_lite0", "sample:chelsea", layer=LAYER, size=SIZE, iters=ITERS)
    np.testing.assert_array_equal(_png(tmp_path / "local" / unit["inversions"][0]["file"]), inv.uint8()[0])
    car = preimage.caricature("efficientnet_lite0", "sample:chelsea", layer=LAYER, size=SIZE, iters=ITERS)
    np.testing.assert_array_equal(_png(tmp_path / "ray" / ray_unit["caricatures"][0]["file"]), car.uint8()[0])
