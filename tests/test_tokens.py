"""Vision transformers' token outputs as maps, fixed- and dynamic-size models, and the issue's own commands."""

from __future__ import annotations

import functools
import json

import pytest
import timm
import torch

import preimage
from preimage.cli import main
from preimage.errors import PreimageError
from preimage.representations import Representation, build, load
from preimage.representations.tokens import TokenLayout, find_layout, is_attention


def test_layouts_are_read_off_shapes() -> None:
    assert find_layout((197, 192), (224, 224), ("cls",)) == TokenLayout("tokens", 1, ("cls",))
    assert find_layout((198, 192), (224, 224), ("cls", "dist")).prefix == 2
    assert find_layout((196, 192), (224, 224)) == TokenLayout("tokens", 0, ())
    assert find_layout((197, 192), (224, 224)) == TokenLayout("tokens", 1, ("cls",))  # CoaT: undeclared class token
    assert find_layout((261, 384), (224, 224), ("cls", "reg0", "reg1", "reg2", "reg3")).prefix == 5
    assert find_layout((196, 192), (224, 224), ("cls",)).prefix == 0  # CaiT's patch blocks: no class token yet
    assert find_layout((1, 192), (224, 224), ("cls",)) == TokenLayout("tokens", 1, ("cls",))  # class token only
    assert find_layout((141, 64), (224, 160), ("cls",)).grid_size(141, (224, 160)) == (14, 10)
    assert find_layout((56, 56, 96), (224, 224)) == TokenLayout("nhwc")  # Swin: channels last
    assert find_layout((96, 56, 56), (224, 224)) is None  # a CNN map
    assert find_layout((8, 8), (32, 32)) is None  # no grid of the input's aspect ratio
    assert find_layout((3, 197, 64), (224, 224)) is None  # attention heads × tokens × head width


def test_token_maps_keep_the_row_major_patch_order() -> None:
    lay = TokenLayout("tokens", 2, ("cls", "dist"))
    y = torch.arange(2 * (2 + 3 * 4) * 5, dtype=torch.float32).view(2, 2 + 3 * 4, 5)  # N×T×C, 3×4 grid
    m = lay.to_map(y, (48, 64))
    assert m.shape == (2, 5, 3, 4)
    assert torch.equal(m[1, 4, 2, 1], y[1, 2 + 2 * 4 + 1, 4])
    assert torch.equal(lay.token(y, lay.index("dist")), y[:, 1])
    with pytest.raises(PreimageError, match="unknown token 'reg0'.*cls, dist"):
        lay.index("reg0")
    assert TokenLayout("nhwc").to_map(y.view(2, 2, 7, 5), (8, 28)).shape == (2, 5, 2, 7)


def test_attention_modules_are_recognized_by_their_families_names() -> None:
    from timm.layers import Attention

    assert is_attention(Attention(16)) and is_attention(torch.nn.MultiheadAttention(16, 2))
    assert not is_attention(torch.nn.Conv2d(3, 3, 1)) and not is_attention(torch.nn.LayerNorm(3))


@functools.cache
def _vit_spec():
    torch.manual_seed(0)
    return build("timm:test_vit", random_weights=True)  # 160 px native, patch 16, dynamic size


def test_views_of_a_vit_block() -> None:
    rep = Representation(_vit_spec(), "blocks.1")
    x = torch.randn(2, 3, 64, 64) * 40
    with torch.no_grad():
        raw = rep(x)
        grid = rep.with_view("grid")(x)
        cls = rep.with_view("cls")(x)
    assert raw.shape == (2, 1 + 16, rep.net.embed_dim)  # the whole output, class token included
    assert grid.shape == (2, rep.net.embed_dim, 4, 4)
    torch.testing.assert_close(grid.flatten(2).transpose(1, 2), raw[:, 1:])
    torch.testing.assert_close(cls, raw[:, 0])
    g = rep.geometry()
    assert g.shape == (1 + 100, rep.net.embed_dim) and g.grid == (10, 10)  # measured at 160 px
    assert g.stride == (16, 16) and g.global_field and g.receptive_field is None and g.jitter == 4
    assert rep.with_view("grid").geometry().shape == (rep.net.embed_dim, 10, 10)
    assert rep.with_view("0").geometry().shape == (rep.net.embed_dim,)
    early = Representation(_vit_spec(), "pos_drop").geometry()  # before the first attention block
    assert (early.stride, early.receptive_field, early.global_field) == ((16, 16), (16, 16), False)


def test_inversion_and_maximization_on_tokens() -> None:
    rep = Representation(_vit_spec(), "blocks.1")
    res = preimage.invert(rep, "sample:chelsea", size=64, iters=20)
    assert res.images.shape == (1, 3, 64, 64)
    assert float(res.metrics["error"][0]) < 0.9
    neigh = preimage.invert(rep, "sample:chelsea", size=64, iters=3, mask="neigh:2")  # on the patch grid
    assert torch.isfinite(neigh.metrics["error"]).all()
    from preimage.measures.stats import compute_stats

    stats = compute_stats(rep.spec, ["sample:chelsea"], size=64)
    assert ("grid", "blocks.1") in stats.points and ("token0", "blocks.1") in stats.points
    centre = preimage.maximize(rep, "neuron:blocks.1:3", size=64, iters=20, stats=stats)
    cls = preimage.maximize(rep, preimage.Neuron("blocks.1", 3, token="cls"), size=64, iters=20, stats=stats)
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        start_grid = rep.with_view("grid")(x)[0, 3, 1, 1]
        start_cls = rep.with_view("cls")(x)[0, 3]
    assert centre.info["centre"] == [1, 1] and float(centre.metrics["activation"][0]) > float(start_grid)
    assert float(cls.metrics["activation"][0]) > float(start_cls) and cls.problems[0]["target"].endswith("@cls")
    with pytest.raises(PreimageError, match="unknown token 'dist'"):
        preimage.maximize(rep, "neuron:blocks.1:3@dist", size=64, iters=2, stats=stats)


def test_dynamic_size_vit_runs_at_multiples_of_its_patch_and_explains_others(capsys, tmp_path) -> None:
    rep = Representation(_vit_spec(), "blocks.0")
    assert preimage.invert(rep, "sample:chelsea", size=96, iters=2).images.shape[-1] == 96
    with pytest.raises(PreimageError, match=r"does not take a 3×100×100 input .*divisible by patch size.*"
                       r"use a size that is a multiple of 16$"):
        preimage.invert(rep, "sample:chelsea", size=100, iters=2)


def test_fixed_size_model_is_measured_at_its_size_and_refuses_others() -> None:
    torch.manual_seed(0)
    net = timm.create_model("test_vit", dynamic_img_size=False)  # 160×160 only
    rep = load(net, "blocks.0", input_size=(160, 160))
    g = rep.geometry()
    assert g.fixed_size and g.stride == (16, 16) and g.grid == (10, 10)
    res = preimage.invert(rep, "sample:chelsea", iters=2)  # resized to its size
    assert res.images.shape[-2:] == (160, 160)
    with pytest.raises(PreimageError, match=r"does not take a 3×96×96 input .*built for 160×160: leave size out"):
        preimage.invert(rep, "sample:chelsea", size=96, iters=2)
    top = preimage.maximize(load(net, "patch_embed", input_size=(160, 160)), "neuron:patch_embed:0", iters=2,
                            stats=_stats_for(net))
    assert top.info["size"] == [160, 160]  # a fixed-size model keeps its size


def _stats_for(net):
    from preimage.measures.stats import compute_stats

    return compute_stats(load(net, input_size=(160, 160)), ["sample:chelsea"])


def test_issue_commands_list_token_layouts(capsys, monkeypatch) -> None:
    """The commands of the issue, which ended in tracebacks."""
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["layers", "--model", "timm:vit_tiny_patch16_224", "--random-weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    block = next(line for line in lines if "│ blocks.5 " in line)
    assert "1+196 tokens × 192" in block and "14×14 grid" in block and "global" in block
    assert main(["layers", "--model", "vit_b_16", "--random-weights", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
    enc = rows["encoder.layers.encoder_layer_5"]
    assert enc["shape"] == [197, 768] and enc["tokens"] == {"prefix": 1, "names": ["cls"], "grid": [14, 14]}
    assert enc["stride"] == 16 and enc["global_field"] and enc["fixed_size"]
    assert rows["conv_proj"]["receptive_field"] == 16 and not rows["conv_proj"]["global_field"]
    assert main(["layers", "--model", "timm:swin_tiny_patch4_window7_224", "--random-weights", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
    assert rows["layers.1"]["shape"] == [192, 28, 28] and rows["layers.1"]["layout"] == "nhwc"
    assert rows["layers.1"]["stride"] == 8 and rows["patch_embed"]["receptive_field"] == 4


def test_cli_maximize_a_class_token_channel(tmp_path, capsys) -> None:
    code = main(["maximize", "--model", "timm:test_vit", "--random-weights", "--layer", "blocks.1", "--unit", "3",
                 "--token", "cls", "--size", "32", "--iters", "3", "--out", str(tmp_path), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["targets"] == ["channel:blocks.1:3@cls"] and info["size"] == [32, 32]
    code = main(["maximize", "--model", "timm:test_vit", "--random-weights", "--layer", "blocks.1", "--unit", "3",
                 "--token", "reg7", "--size", "32", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [err] and "unknown token 'reg7'" in err
