"""The ``preimage`` command line. Each command module registers itself on ``app``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click
import typer

try:  # typer ≥ 0.26 bundles its own click
    import typer._click as _typer_click
except ImportError:  # pragma: no cover
    _typer_click = click

from ..errors import PreimageError
from .common import app, err_console

# Command modules register on import (keep this list the one place that names them).
_COMMANDS = ("core", "activation", "shallow", "evaluation", "bench", "atlas", "concepts", "accentuate")


def _register() -> None:
    import importlib

    for name in _COMMANDS:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    """Entry point: every bad input ends in one line on stderr and exit status 2."""
    _register()
    command = typer.main.get_command(app)
    twice = _repeated(command, sys.argv[1:] if argv is None else argv)
    try:
        rv = command.main(args=argv, prog_name="preimage", standalone_mode=False)
    except PreimageError as e:
        flags = _flags(command, sys.argv[1:] if argv is None else argv)
        err_console.print(f"error: {e.for_cli(flags.get)}", markup=False, highlight=False, soft_wrap=True)
        return _exit(2, argv)
    except (click.exceptions.UsageError, _typer_click.exceptions.UsageError) as e:
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:  # `preimage`, `preimage bench`: the help
            try:
                print(e.ctx.get_help())
            except BrokenPipeError:
                sys.stdout = None
            return _exit(0, argv)
        message = _nan_message(command, e, sys.argv[1:] if argv is None else argv) or e.format_message()
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        return _exit(2, argv)
    except click.exceptions.Abort:
        err_console.print("aborted", markup=False)
        return _exit(130, argv)
    except BrokenPipeError:  # e.g. piped into `head`: the reader left, nothing more to say
        sys.stdout = None
        return _exit(0, argv)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return _exit(130, argv)
    if twice:  # said after the run, so that a bad input still ends in one line
        err_console.print(f"warning: {twice}", markup=False, highlight=False, soft_wrap=True)
    return _exit(rv if isinstance(rv, int) else 0, argv)


#: The library's parameter names that a command's flags spell differently.
_ALIASES = {"lucent_python_path": "--lucent-python", "target": "--unit",
            "png_scale": "--png-scale", "prior_weight": "--prior-weight"}


def _command_of(command: Any, argv: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command that ``argv`` runs, and the arguments that follow its name."""
    cmd, args = command, list(argv)
    while hasattr(cmd, "commands"):
        name = next((a for a in args if not a.startswith("-")), None)
        sub = cmd.commands.get(name) if name else None
        if sub is None:
            break
        cmd, args = sub, args[args.index(name) + 1:]
    return cmd, args


def _repeated(command: Any, argv: list[str]) -> str | None:
    """A warning for the first option of ``argv`` that takes one value and is given twice (None: none is). Why:
    click keeps the last one silently, so ``--objective A --objective B`` would run B alone without a word; the
    last one still wins, as scripts that append an override to a base command expect."""
    cmd, args = _command_of(command, argv)
    takes = {o: prm for prm in getattr(cmd, "params", []) if getattr(prm, "param_type_name", "") == "option"
             and not getattr(prm, "is_flag", False) and not getattr(prm, "count", False) for o in prm.opts}
    seen: dict[str, tuple[str, str]] = {}
    for prm, flag, value in _option_values(args, takes):
        if prm.multiple:
            continue
        if prm.name in seen:
            first, before = seen[prm.name]
            return f"{first} is given twice: '{value}' is used, '{before}' is not (the last one wins)"
        seen[prm.name] = (flag, value)
    return None


def _option_values(args: list[str], takes: dict[str, Any]) -> Iterator[tuple[Any, str, str]]:
    """(option, the flag as typed, its value) for each use in ``args`` of an option of ``takes`` (flag → option,
    options that take one value), ``--flag value`` and ``--flag=value`` alike, up to ``--``."""
    it = iter(args)
    for arg in it:
        if arg == "--":
            return
        flag, eq, value = arg.partition("=")
        prm = takes.get(flag if flag.startswith("--") else arg)
        if prm is not None:
            yield prm, flag if eq else arg, value if eq else next(it, "")


def _flags(command: Any, argv: list[str]) -> dict[str, str]:
    """Python parameter name → the flag (or argument) of the command that ``argv`` runs, so that a library error
    speaks the command line's language."""
    cmd, args = _command_of(command, argv)
    out = dict(_ALIASES)
    for prm in getattr(cmd, "params", []):
        if getattr(prm, "param_type_name", "") == "argument":
            out[prm.name] = (prm.metavar or prm.name).upper()
        else:
            longs = [o for o in prm.opts if o.startswith("--")]
            if longs:
                out[prm.name] = longs[0]
    if "images" not in out and "image" in out:
        out["images"] = out["image"]
    return out


def _nan_message(command: Any, e: Exception, argv: list[str]) -> str | None:
    """For a ranged number option given NaN, a message that says so: the range check's own reads as if the value
    were too large ("Input should be less than or equal to 1")."""
    param = getattr(e, "param", None)
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is None or hi is None:
        return None
    _, args = _command_of(command, argv)
    for _, _, value in _option_values(args, dict.fromkeys(param.opts, param)):
        if value.strip().lower() in ("nan", "+nan", "-nan"):
            whole = getattr(getattr(param, "type_descriptor", None), "annotation", None) is int
            kind = "a whole number" if whole else "a number"
            return f"Invalid value for '{param.opts[0]}': {value} is not {kind}; give one from {lo} to {hi}"
    return None


def _exit(code: int, argv: list[str] | None) -> int:
    if argv is None:  # called as the console script
        sys.exit(code)
    return code
