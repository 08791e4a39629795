"""HOG/HOGb/DSIFT: inversion with the IJCV defaults, template pictures, the HOG table and its command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from preimage.cli import main
from preimage.errors import PreimageError
from preimage.images import load_image, save_png
from preimage.representations import load
from preimage.representations.hog import HOG
from preimage.tasks.inversion import invert
from preimage.tasks.templates import input_size_for, load_template, template_as_dhw, template_picture


@pytest.fixture(scope="module")
def pair() -> torch.Tensor:
    """Two 64×64 grey samples, 2×1×64×64 in 0–255."""
    return torch.cat([load_image("sample:camera", 64, grey=True), load_image("sample:coins", 64, grey=True)])


# Errors measured at 64 px (camera, coins), 300 steps: hog 0.42/0.30, hogb 0.12/0.07, dsift 0.04/0.04;
# at 60 steps: hogb 0.21/0.08, dsift 0.14/0.04.
def test_invert_uses_the_ijcv_shallow_defaults(pair: torch.Tensor) -> None:
    res = invert("hogb", pair)
    assert res.info["stages"] == [{"iters": 300, "lr": 1.0, "jitter": 1}]  # 300 steps at lr0, no jitter
    assert res.info["size"] == [64, 64] and res.images.shape == (2, 1, 64, 64)  # own resolution, grey
    assert all(p["C"] == 100.0 for p in res.problems)
    err = res.metrics["error"]
    assert err[0] < 0.16 and err[1] < 0.10, err
    res = invert("dsift", pair, iters=60)
    assert torch.all(res.metrics["error"] < torch.tensor([0.2, 0.06])), res.metrics["error"]


def test_invert_command_refuses_small_images(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(np.full((12, 40), 128, np.uint8)).save(tmp_path / "tiny.png")
    for model in ("hog", "hogb", "dsift"):
        assert main(["invert", str(tmp_path / "tiny.png"), "--model", model, "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _vertical_edge_template(h: int = 4, w: int = 4) -> np.ndarray:
    """DPM layout h×w×31: weight on directed bin 0 only (gradient along +x: a vertical edge, dark to bright)."""
    t = np.zeros((h, w, 31))
    t[..., 0] = 1.0
    return t


@pytest.mark.parametrize("model", ["hog", "hogb"])
def test_template_picture_excites_the_template(model: str) -> None:
    res = template_picture(model, _vertical_edge_template(), iters=60)
    assert res.images.shape == (1, 1, 48, 48)  # (4+2)·8 pixels
    assert res.info["cells"] == [4, 4] and res.info["dims"] == 27
    act, act0 = float(res.metrics["activation"][0]), float(res.metrics["activation_start"][0])
    # Measured 5.8 from 2.7; the maximum is 16 cells × 0.4 (four blocks, each clamped at 0.2, halved).
    assert act > 2 * act0 and act > 5.0, (act, act0)
    net = HOG(8, "hog")
    f = net(res.images)[0, :, 1:-1, 1:-1].mean((1, 2))
    assert int(f[:18].argmax()) == 0 and int(f[18:].argmax()) == 0, f
    # The clamp at 0.2 flattens the features; the gradient energy shows the peak plainly (measured: bin 0 holds
    # 0.18 (hog) / 0.19 (hogb) of it, the next bin 0.11 / 0.07; uniform would be 0.056).
    energy = net.cell_histograms(res.images)[0, :, 1:-1, 1:-1].sum((1, 2))
    share = energy / energy.sum()
    assert share[0] > 2.5 / 18 and share[0] > 1.4 * share[1:].max(), share


def test_template_layouts_and_bad_templates() -> None:
    t = np.random.default_rng(0).normal(size=(3, 5, 32))  # DPM voc-release5: 32 dims per cell
    dhw = template_as_dhw(t, 27)
    assert dhw.shape == (27, 3, 5) and torch.equal(dhw, torch.from_numpy(t).permute(2, 0, 1)[:27])
    assert torch.equal(template_as_dhw(torch.from_numpy(t).permute(2, 0, 1), 27), dhw)  # D×h×w is recognized
    a = template_picture("hogb", t, iters=3)
    b = template_picture("hogb", torch.from_numpy(t).permute(2, 0, 1), iters=3)
    assert torch.equal(a.images, b.images) and a.images.shape == (1, 1, 40, 56)
    with pytest.raises(PreimageError, match="dims"):
        template_as_dhw(np.ones((3, 5, 9)), 27, layout="hwd")
    with pytest.raises(PreimageError, match=r"shape \(6, 5, 13\) has no axis of 27 or more dims per cell"):
        template_as_dhw(np.ones((6, 5, 13)), 27)  # read as 6 dims per cell before
    with pytest.raises(PreimageError, match="zeros"):
        template_as_dhw(np.zeros((3, 5, 31)), 27)
    with pytest.raises(PreimageError, match="3-d"):
        template_as_dhw(np.ones((5, 31)), 27)


def test_load_template_from_npy_npz_and_dpm_mat(tmp_path) -> None:
    import scipy.io

    w = np.random.default_rng(1).normal(size=(5, 3, 32))
    np.save(tmp_path / "w.npy", w)
    np.savez(tmp_path / "w.npz", root=w)
    scipy.io.savemat(tmp_path / "dpm.mat", {"model": {"sbin": 8, "filters": np.array(
        [{"w": w}, {"w": np.ones((6, 6, 32))}], dtype=object)}})  # DPM: root filter first, then parts
    for name in ("w.npy", "w.npz", "dpm.mat"):
        assert np.allclose(load_template(tmp_path / name), w)
    (tmp_path / "w.txt").write_text("1 2 3")
    for bad in ("w.txt", "missing.npy"):
        with pytest.raises(PreimageError):
            load_template(tmp_path / bad)
    res = template_picture("hog", tmp_path / "w.npy", iters=2)
    assert res.images.shape == (1, 1, 56, 40) and res.info["cells"] == [5, 3]


def test_input_size_for_any_spatial_representation() -> None:
    assert input_size_for(load("hog"), (6, 4)) == (48, 32)
    dsift = load("dsift")
    h, w = input_size_for(dsift, (2, 3))
    assert dsift(torch.zeros(1, 1, h, w)).shape[-2:] == (2, 3)
    assert dsift(torch.zeros(1, 1, h - 1, w)).shape[-2] == 1  # the smallest such size


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    """Two 48×64 images, one 56×56, a text file (not listed), a PNG that does not decode and a 12×40 image: 3
    usable, 2 skipped."""
    d = tmp_path_factory.mktemp("hogtable")
    save_png(load_image("sample:camera", (48, 64))[0], d / "a.png", "clip")
    save_png(load_image("sample:coins", (48, 64))[0], d / "b.png", "clip")
    save_png(load_image("sample:chelsea", (56, 56))[0], d / "c.png", "clip")
    (d / "notes.txt").write_text("not an image")
    (d / "broken.png").write_bytes(b"not a png")
    save_png(torch.full((1, 12, 40), 100.0), d / "tiny.png", "clip")
    return d


def test_hog_table_rows_are_mean_and_ci_of_the_per_image_errors(folder, tmp_path) -> None:
    from preimage.experiments.reproduce import hog_table as ht
    from preimage.report.store import Store

    logged: list[str] = []
    store = Store(tmp_path / "store")
    tab = ht.hog_table(str(folder), iters=20, log=logged.append, store=store)
    assert len(list(store.root.glob("*/*/record.json"))) == 9  # one stored job per image and model
    js = tab.to_json()
    assert js["n"] == 3 and js["skipped"] == 2 and len(logged) == 2
    assert {s["file"].rsplit("/", 1)[-1] for s in js["skipped_files"]} == {"broken.png", "tiny.png"}
    assert [p["image"] for p in js["per_image"]] == ["a", "b", "c"]
    by = {r["row"]: r for r in js["rows"]}
    for key in ("hog", "hogb", "dsift") + (("hog-vlfeat",) if js["vlfeat"] else ()):
        e = np.array([p[key] for p in js["per_image"]])
        assert np.all((e > 0) & (e < 1))
        assert by[key]["n"] == 3
        assert math.isclose(by[key]["mean"], 100 * e.mean(), rel_tol=1e-9)
        assert math.isclose(by[key]["ci95"], 100 * 1.96 * e.std(ddof=1) / math.sqrt(3), rel_tol=1e-9)
    # The errors are the inversions' own: the same problem run alone (not as a sweep job) gives the same error.
    alone = invert("dsift", tab.images[2].spec, size=tuple(tab.images[2].image.shape[-2:]), iters=20)
    assert math.isclose(float(alone.metrics["error"][0]), js["per_image"][2]["dsift"], rel_tol=1e-5)
    md = tab.markdown()
    assert "| error (%) | HOGgle | HOG | HOGb | DSIFT |" in md and f"{by['hogb']['mean']:.1f}" in md
    json.dumps(js, allow_nan=False)


def test_vlfeat_error_is_zero_on_the_original_and_matches_our_hog() -> None:
    pytest.importorskip("cyvlfeat.hog")
    from preimage.experiments.reproduce.hog_table import vlfeat_hog_error

    x0 = load_image("sample:camera", 64, grey=True)
    noisy = x0 + 20 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    assert float(vlfeat_hog_error(x0, x0)[0]) == 0.0
    ours = float((HOG(8, texture=True)(noisy) - HOG(8, texture=True)(x0)).norm() / HOG(8, texture=True)(x0).norm())
    assert abs(float(vlfeat_hog_error(noisy, x0)[0]) - ours) < 0.05 * ours


def test_hog_table_command(folder, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    args = ["reproduce", "hog-table", "--images", str(folder), "--iters", "3", "--models", "hogb,dsift",
            "--out", str(out), "--json"]
    assert main(args) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["skipped"] == 2 and js["n"] == 3 and [r["row"] for r in js["rows"]] == ["hogb", "dsift"]
    assert (out / "hog-table.md").is_file() and (out / "hog-table.png").is_file() and (out / "c-dsift.png").is_file()
    assert json.loads((out / "hog-table.json").read_text())["rows"] == js["rows"]
    assert main(args) == 0  # the same table again: from the store, the same report
    assert json.loads(capsys.readouterr().out)["rows"] == js["rows"]
    assert main([*args[:-3], "--iters", "4", "--out", str(out)]) == 2  # another table: never over this one
    assert "already exists" in capsys.readouterr().err
    assert main(["reproduce", "hog-table", "--images", str(folder), "--models", "hog,sift", "--out",
                 str(tmp_path / "p")]) == 2


def test_maximize_template_command(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    w = rng.random((4, 4, 31)).astype(np.float32)  # DPM layout h×w×D, with texture dims that are dropped
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "out"
    args = ["template", str(tmp_path / "w.npy"), "--model", "hog", "--iters", "15", "--out", str(out), "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["size"] == [48, 48]  # (4 cells + 2 border cells) × 8 px
    assert data["activation"][0] > data["activation_start"][0]
    assert (out / "template-w-hog.png").exists()
    assert main(args) == 2  # no overwrite without --force
    assert main(["template", str(tmp_path / "missing.npy"), "--model", "hog"]) == 2
    assert "template file not found" in capsys.readouterr().err


def test_hog_surrogate_and_coarse_to_fine_beat_the_exact_gradient(pair: torch.Tensor) -> None:
    # Measured at 100 steps (camera, coins): exact gradient 0.48/0.29; surrogate 0.27/0.18, with c2f 0.29/0.17.
    exact = invert(load("hog", exact_gradient=True), pair, iters=100)
    ours = invert("hog", pair, iters=100)
    assert exact.info["coarse_to_fine"] is False and ours.info["coarse_to_fine"] is True
    assert [s["level"] for s in ours.info["stages"]] == ["coarse", "fine"]
    assert [s["iters"] for s in ours.info["stages"]] == [33, 67] and ours.info["stages"][0]["size"] == [32, 32]
    assert torch.all(ours.metrics["error"] < 0.75 * exact.metrics["error"]), (ours.metrics, exact.metrics)
    assert ours.energy.shape == (100, 2)


def test_invert_command_exact_gradient_and_levels(tmp_path, capsys) -> None:
    img = tmp_path / "c.png"
    save_png(load_image("sample:camera", 32, grey=True)[0], img)
    base = ["invert", str(img), "--model", "hog", "--iters", "6", "--json"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["coarse_to_fine"] is True and [s["level"] for s in info["stages"]] == ["coarse", "fine"]
    assert main([*base, "--exact-gradient", "--out", str(tmp_path / "b")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["coarse_to_fine"] is False and len(info["stages"]) == 1
    assert main([*base, "--one-level", "--out", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["coarse_to_fine"] is False
    assert main(["invert", str(img), "--model", "hogb", "--exact-gradient", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --exact-gradient applies to --model hog only (hogb has no surrogate gradient)"]
