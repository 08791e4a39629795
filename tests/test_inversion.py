"""Inversion end to end: quality, batching, determinism, masks, and the command line with its error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import lite0
from PIL import Image

import preimage
from preimage.cli import main
from preimage.engine.objectives import neighbourhood_mask
from preimage.errors import PreimageError
from preimage.images import load_image


def test_inversion_reduces_the_error_and_batches_C_values() -> None:
    rep = lite0("blocks.1")
    res = preimage.invert(rep, "sample:chelsea", C=[1, 100], size=64, iters=60, seed=0)
    err = res.metrics["error"]
    assert [p["C"] for p in res.problems] == [1.0, 100.0]
    assert res.images.shape == (2, 3, 64, 64)
    # Noise has error ≈ 1 or more; a larger C weighs the data term more and fits the features better.
    assert float(err[1]) < 0.5
    assert float(err[1]) < float(err[0])
    # The reported error is ‖Φ(x)−Φ0‖/‖Φ0‖ on the returned image.
    img = load_image("sample:chelsea", 64)
    with torch.no_grad():
        phi0 = rep(rep.to_paper_units(img))
        phi = rep(rep.to_paper_units(res.images[1:]))
    assert float((phi - phi0).norm() / phi0.norm()) == pytest.approx(float(err[1]), rel=1e-4)
    # The projection keeps every pixel's colour within B+ = 160 of the mean colour.
    assert float(rep.to_paper_units(res.images).norm(dim=1).max()) <= 160.0 + 1e-3


def test_same_seed_same_result_and_restarts_differ() -> None:
    rep = lite0("blocks.0")
    a = preimage.invert(rep, "sample:coffee", size=32, iters=8, seed=3, restarts=2)
    b = preimage.invert(rep, "sample:coffee", size=32, iters=8, seed=3, restarts=2)
    c = preimage.invert(rep, "sample:coffee", size=32, iters=8, seed=4, restarts=2)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images[0], a.images[1])


def test_masks_select_neurons_and_channels() -> None:
    m = neighbourhood_mask((4, 13, 13), 5)
    assert int(m.sum()) == 4 * 25
    assert torch.nonzero(m[0, 0])[0].tolist() == [4, 4]  # MATLAB: (0:4) + ceil(9/2) = 5..9, 1-based
    rep = lite0("blocks.1")
    res = preimage.invert(rep, "sample:chelsea", mask="channels:first-half", size=32, iters=5)
    assert res.info["mask"] == "channels:first-half"
    with pytest.raises(PreimageError, match="bad mask"):
        preimage.invert(rep, "sample:chelsea", mask="nope:3", size=32, iters=2)


def test_bf16_autocast_option_inverts_like_float32() -> None:
    rep = lite0("blocks.1")
    ref = preimage.invert(rep, "sample:chelsea", size=48, iters=30)
    half = preimage.invert(rep, "sample:chelsea", size=48, iters=30, amp="bf16")
    assert abs(float(half.metrics["error"][0]) - float(ref.metrics["error"][0])) < 0.1


def test_adam_option_also_inverts() -> None:
    res = preimage.invert(lite0("blocks.1"), "sample:chelsea", size=48, iters=40, optimizer="adam")
    assert float(res.metrics["error"][0]) < 0.8


def test_divergence_is_detected_not_written() -> None:
    rep = lite0("blocks.0")
    with pytest.raises(PreimageError, match="diverged"):  # a step 10³⁴ times the paper's: pixels overflow
        preimage.invert(rep, "sample:chelsea", size=32, iters=20, energy=preimage.Energy(B=1e19, B_plus=1e37))
    with pytest.raises(PreimageError, match="C must be a number"):  # refused before any work
        preimage.invert(rep, "sample:chelsea", C=1e39, size=32, iters=20)


def _run(args: list[str], capsys) -> tuple[int, dict | None, str]:
    code = main(args)
    out = capsys.readouterr()
    data = json.loads(out.out) if code == 0 and "--json" in args else None
    return code, data, out.err


def test_cli_invert_writes_png_and_json_and_refuses_to_overwrite(tmp_path, capsys) -> None:
    args = ["invert", "sample:chelsea", "--layer", "blocks.1", "--size", "48", "--iters", "12", "--out",
            str(tmp_path), "--json"]
    code, data, _ = _run(args, capsys)
    assert code == 0
    assert {"error", "image", "iterations", "seconds"} <= set(data)
    assert data["iterations"] == 12 and 0 < data["error"] < 2
    png = Image.open(data["image"])
    assert png.size == (48, 48) and png.mode == "RGB"
    record = json.loads(open(data["json"]).read())
    assert record["error"] == data["error"]
    assert record["keys"] == [record["results"][0]["key"]] and record["version"]
    before = open(data["image"], "rb").read()
    code, again, _ = _run(args, capsys)  # the same arguments: read back from the store, the same picture
    assert code == 0 and again["jobs"]["cached"] == 1 and again["error"] == data["error"]
    assert open(data["image"], "rb").read() == before
    code, _, err = _run(args + ["--seed", "1"], capsys)  # another picture under the same name: refused first
    assert code == 2 and "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert open(data["image"], "rb").read() == before
    code, data2, _ = _run(args + ["--force", "--seed", "1"], capsys)
    assert code == 0 and open(data2["image"], "rb").read() != before


def test_cli_layers_lists_measured_geometry(capsys) -> None:
    code, data, _ = _run(["layers", "--model", "efficientnet_lite0", "--json"], capsys)
    assert code == 0 and data["model"] == "efficientnet_lite0"
    rows = {r["name"]: r for r in data["layers"]}
    assert rows["blocks.3"]["stride"] == 16 and rows["blocks.3"]["shape"] == [80, 14, 14]
    assert rows["conv_stem"]["stride"] == 2 and rows["conv_stem"]["receptive_field"] == 3
    assert rows["classifier"]["stride"] is None


def test_cli_layers_lists_the_output_of_a_network_without_submodules(tmp_path, capsys) -> None:
    # HOG is one module: its one layer is its output (listed empty before), a name --layer takes.
    code, data, _ = _run(["layers", "--model", "hog", "--json"], capsys)
    assert code == 0 and [r["name"] for r in data["layers"]] == ["output"]
    (row,) = data["layers"]
    assert row["type"] == "HOG" and row["shape"] == [27, 28, 28] and row["stride"] == 8  # 8-pixel cells at 224
    code, out, _ = _run(["invert", "sample:chelsea", "--model", "hog", "--layer", "output", "--size", "32",
                         "--iters", "2", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0 and out["model"] == "hog" and out["layer"] is None  # None: the whole network's output


def _write(path, arr: np.ndarray, mode: str | None = None) -> str:
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return str(path)


def test_cli_converts_grey_rgba_and_16bit_images(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    grey = _write(tmp_path / "g.png", rng.integers(0, 255, (40, 40), dtype=np.uint8))
    rgba = _write(tmp_path / "a.png", rng.integers(0, 255, (40, 40, 4), dtype=np.uint8))
    deep = tmp_path / "d.png"
    Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16)).save(deep)
    for path in (grey, rgba, str(deep)):
        x = load_image(path)
        assert x.shape == (1, 3, 40, 40) and 0 <= float(x.min()) and float(x.max()) <= 255
        code, data, _ = _run(["invert", path, "--layer", "blocks.0", "--size", "32", "--iters", "3", "--out",
                              str(tmp_path / "o"), "--json"], capsys)
        assert code == 0 and data["size"] == [32, 32]
    assert float(load_image(str(deep)).max()) > 200  # 16-bit scaled to 0–255, not clipped


@pytest.mark.parametrize("args,message", [
    (["invert", "missing.png"], "image not found: missing.png"),
    (["invert", "sample:nope"], "unknown sample 'nope'"),
    (["invert", "sample:chelsea", "--model", "efficientnet_lite"], "close matches: efficientnet_lite"),
    (["invert", "sample:chelsea", "--layer", "blocks.9"], "unknown layer 'blocks.9'"),
    (["invert", "sample:chelsea", "--C", "abc"], "--C takes numbers"),
    (["invert", "sample:chelsea", "--optimizer", "sgd", "--size", "32", "--iters", "2"], "unknown optimizer"),
    (["invert", "sample:chelsea", "--layer", "blocks.0", "--C", "1e39", "--size", "32", "--iters", "20"],
     "--C values must be numbers from"),  # beyond float32; divergence: test_divergence_is_detected_not_written
    (["invert", "sample:chelsea", "--model", "alexnet", "--random-weights", "--layer", "features.12", "--size", "32"],
     "too small for layer 'features.12'"),
    (["invert", "sample:chelsea", "--device", "cuda:7"], "CUDA"),
    (["invert", "sample:chelsea", "--amp", "fp8", "--size", "32", "--iters", "2"], "unknown mixed-precision mode"),
    (["invert", "sample:chelsea", "--threads", "0"], "'--threads'"),
    (["layers", "--model", "nonexistent_net"], "unknown model"),
    (["invert"], "Missing argument"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys) -> None:
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code = main(args + ["--out", str(tmp_path)] if args[0] == "invert" and len(args) > 1 else args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))  # nothing written


def test_cli_unreadable_image(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("this is not a PNG")
    assert main(["invert", str(bad), "--out", str(tmp_path)]) == 2
    assert "cannot read image" in capsys.readouterr().err
