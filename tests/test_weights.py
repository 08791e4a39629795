"""--weights PATH for any torchvision and timm name: state dicts in .pth/.pt/.safetensors, checkpoints that wrap
them, and a one-line error naming the keys that do not fit."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from preimage.cli import main
from preimage.errors import PreimageError
from preimage.representations import build


def _source(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {k: v.clone() for k, v in build(name, random_weights=True).module.state_dict().items()}


def _write(kind: str, sd: dict[str, torch.Tensor], folder) -> str:
    if kind == "safetensors":
        path = folder / "w.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        return str(path)
    wrapped = {"pth": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd, "optimizer": {}},
               "module": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
               "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}}}[kind]
    path = folder / ("w.pt" if kind != "pth" else "w.pth")
    torch.save(wrapped, path)
    return str(path)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "timm:test_vit"])
def test_own_weights_load_in_every_format(name: str, tmp_path) -> None:
    sd = _source(name)
    for kind in ("pth", "safetensors", "state_dict", "model", "module", "lightning"):
        torch.manual_seed(2)  # another random init, so that equality means the file was loaded
        spec = build(name, weights=_write(kind, sd, tmp_path))
        got = spec.module.state_dict()
        assert got.keys() == sd.keys(), kind
        assert all(torch.equal(got[k], sd[k]) for k in sd), kind
        assert spec.weights_id.startswith("file:")


def test_mismatched_weights_fail_in_one_line_with_counts_and_names(tmp_path, capsys) -> None:
    sd = _source("timm:test_vit")
    sd.pop("head.weight")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(PreimageError, match=r"1 missing \(head\.weight\); 1 unexpected \(extra\.weight\)"):
        build("timm:test_vit", weights=str(path))
    wrong = _source("resnet18")
    torch.save(wrong, path)
    code = main(["layers", "--model", "resnet34", "--weights", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "do not fit" in err and "missing (layer1.2.conv1.weight" in err and "tensors for" in err


def test_shape_mismatch_and_unreadable_files(tmp_path) -> None:
    sd = _source("timm:test_vit")
    sd["head.weight"] = torch.zeros(3, 3)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(PreimageError, match="'head.weight' has shape \\(3, 3\\)"):
        build("timm:test_vit", weights=str(tmp_path / "w.pth"))
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "meta.pt")
    with pytest.raises(PreimageError, match="does not hold a state dict"):
        build("timm:test_vit", weights=str(tmp_path / "meta.pt"))
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(PreimageError, match="cannot read weights file"):
        build("timm:test_vit", weights=str(tmp_path / "bad.safetensors"))


def test_random_weights_are_the_same_in_every_build_and_leave_the_callers_random_state() -> None:
    from preimage.representations.base import model_id

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = build("mobilenet_v3_small", random_weights=True)
    after = torch.rand(3)
    torch.manual_seed(9)  # another global state: the weights must not follow it
    b = build("mobilenet_v3_small", random_weights=True)
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert float(sa["features.0.0.weight"].std()) > 0  # drawn, not zeros
    assert model_id(a) == model_id(b)
    assert torch.equal(after, expected)  # the caller's random stream went on as if no network had been built
