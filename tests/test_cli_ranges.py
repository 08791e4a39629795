"""Every numeric option of every command declares its range, and values outside it end in one line and exit
status 2. The commands are found by walking the command tree, so options added later are checked too."""

from __future__ import annotations

import math

import pytest
import typer

from preimage.cli import _register, main
from preimage.cli.common import app


def _commands(cmd, path: tuple[str, ...] = ()):
    """(path, command) for every leaf command under ``cmd``."""
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


def _numeric_options() -> list[tuple[tuple[str, ...], list[str], object]]:
    """(command path, its required arguments filled in, the option) for every int/float option."""
    _register()
    found = []
    for path, cmd in _commands(typer.main.get_command(app)):
        required = ["sample:chelsea" for p in cmd.params if not getattr(p, "opts", [""])[0].startswith("-")
                    and p.required]
        for p in cmd.params:
            kind = getattr(getattr(p, "type_descriptor", None), "annotation", None)
            if kind in (int, float) and p.opts and p.opts[0].startswith("--"):
                found.append((path, required, p))
    return found


OPTIONS = _numeric_options()


def _bad_values(p) -> list[str]:
    kind = p.type_descriptor.annotation
    lo, hi = p.min, p.max
    values = ["99999999999999999999", "-99999999999999999999", str(hi * 10 + 1)]
    values += [str(lo - 1), "nan"] if kind is int else [str(lo - max(abs(lo), 1.0)), "nan", "inf", "-inf", "1e999"]
    if lo > 0:
        values.append("0")
    # Huge integers are in range for some float options (--C allows up to 1e38): keep only values outside it.
    return [v for v in dict.fromkeys(values) if not lo <= float(v) <= hi]


def test_the_walk_finds_the_numeric_options() -> None:
    names = {(" ".join(path), p.opts[0]) for path, _, p in OPTIONS}
    assert {("invert", "--size"), ("invert", "--seed"), ("maximize", "--relu-leak"), ("bench speed", "--iters"),
            ("bench transfer", "--iters"),
            ("reproduce cnn-layers", "--batch"), ("layers", "--channels")} <= names
    assert len(OPTIONS) >= 30


@pytest.mark.parametrize("path,required,p", OPTIONS, ids=[f"{' '.join(c)} {p.opts[0]}" for c, _, p in OPTIONS])
def test_numeric_option_has_a_range_and_refuses_values_outside(path, required, p, tmp_path, monkeypatch,
                                                                 capsys) -> None:
    assert p.min is not None and p.max is not None, f"{' '.join(path)} {p.opts[0]} declares no range (min=, max=)"
    assert math.isfinite(p.min) and math.isfinite(p.max) and p.min < p.max
    monkeypatch.chdir(tmp_path)
    for value in _bad_values(p):
        code = main([*path, *required, p.opts[0], value])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (p.opts[0], value, err)
        assert len(lines) == 1 and lines[0].startswith("error:") and p.opts[0] in lines[0], (value, err)
        assert "Traceback" not in err and out == ""
        if value == "nan":  # said as such, not as a value too large
            whole = p.type_descriptor.annotation is int  # an integer option says what it takes
            assert f"nan is not {'a whole' if whole else 'a'} number" in lines[0] and "less than" not in lines[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_request_larger_than_the_machine_is_refused_before_it_allocates(tmp_path, capsys) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(["invert", "sample:chelsea", "--size", "8192", "--restarts", "64", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "would need about" in err and "GB" in err and "more than this machine's" in err
    # Refused before the 64 canvases (64×3×8192² floats = 51 GB) or the image were allocated.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2 << 20  # KB: under 2 GB more
    assert list(tmp_path.iterdir()) == []


def test_memory_estimate_follows_the_problem_size(monkeypatch) -> None:
    from conftest import lite0

    import preimage
    from preimage.engine import memory
    from preimage.errors import PreimageError

    rep = lite0("blocks.2")
    one, four = memory.estimate_bytes(rep, 1, (64, 64)), memory.estimate_bytes(rep, 4, (64, 64))
    buffers = (four - one) / 3  # each problem's images and optimizer state
    assert one - buffers > 10 * buffers  # the network's activations: counted once, problems run one by one
    assert memory.estimate_bytes(rep, 1, (128, 128)) == pytest.approx(4 * one, rel=1e-6)
    # Activations of blocks.0–2 and the loop's buffers: tens of kB per pixel of a 224-px image is plausible.
    assert 1e3 < one / (64 * 64) < 1e5
    monkeypatch.setenv("PREIMAGE_BATCHED", "1")  # one batch: its activations grow with it
    assert memory.estimate_bytes(rep, 4, (64, 64)) == pytest.approx(4 * one, rel=1e-6)
    monkeypatch.setattr(memory, "machine_bytes", lambda device="cpu": 3 * one)
    preimage.invert(rep, "sample:chelsea", size=64, restarts=2, iters=1)  # 2 problems fit in 3
    with pytest.raises(PreimageError, match=r"would need about .* GB \(4 problem\(s\) at 64×64"):
        preimage.invert(rep, "sample:chelsea", size=64, restarts=4, iters=1)
