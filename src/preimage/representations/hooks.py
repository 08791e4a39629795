"""Running a network only as far as needed, reading what passes through named modules, and swapping modules
for the length of a block: the hooks every representation and measurement is built on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from ..errors import PreimageError


class Stop(Exception):
    """Raised by a capturing hook so that the network stops once everything asked for has been seen."""


def named_layers(net: nn.Module) -> dict[str, nn.Module]:
    """Every named submodule of ``net`` (the root, whose name is empty, left out)."""
    return {name: m for name, m in net.named_modules() if name}


def one_module(net: nn.Module) -> bool:
    """Whether ``net`` has no submodules (HOG, DSIFT): its one layer is its output."""
    return not named_layers(net)


def capture(net: nn.Module, x: torch.Tensor, points: Mapping[str, tuple[nn.Module | None, bool]]
            ) -> dict[str, torch.Tensor]:
    """Run ``net`` on ``x`` and return what passes through several points, stopping once all are seen.

    points: key → (module, at_input): the module's output, or with ``at_input`` its first input (e.g. the
    pre-activation of a ReLU module); a module of None is the whole network's output (the network then runs to
    its end). A module called several times reports its first call."""
    box: dict[str, torch.Tensor] = {}
    wanted = {k for k, (m, _) in points.items() if m is not None}
    handles = []
    for key, (mod, at_input) in points.items():
        if mod is None:
            continue

        def hook(_m: nn.Module, args: tuple, out: object = None, key: str = key, at_input: bool = at_input) -> None:
            if key in box:
                return
            value = args[0] if at_input else out
            if not isinstance(value, torch.Tensor):
                raise PreimageError("the target layer does not output a single tensor; choose another layer")
            box[key] = value
            if wanted <= box.keys() and len(wanted) == len(points):
                raise Stop

        handles.append(mod.register_forward_pre_hook(hook) if at_input else mod.register_forward_hook(hook))
    try:
        final = net(x)
    except Stop:
        final = None
    finally:
        for h in handles:
            h.remove()
    for key, (mod, _) in points.items():
        if mod is None:
            if not isinstance(final, torch.Tensor):
                raise PreimageError("the network does not output a single tensor; choose one of its layers")
            box[key] = final
    missing = [k for k in points if k not in box]
    if missing:
        raise PreimageError(f"layer '{missing[0]}' was never called in the network's forward pass")
    return box


def truncated_forward(net: nn.Module, x: torch.Tensor, target: nn.Module | None,
                      at_input: bool = False) -> torch.Tensor:
    """Run ``net`` on ``x`` only as far as ``target``'s output (or its first input with ``at_input``); the whole
    net if ``target`` is None."""
    if target is None:
        return net(x)
    try:
        return capture(net, x, {"target": (target, at_input)})["target"]
    except PreimageError as e:
        if "never called" in str(e):
            raise PreimageError("the target layer was never called in the network's forward pass") from None
        raise


@contextlib.contextmanager
def swap_modules(net: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> Iterator[int]:
    """Temporarily put ``replace(child)`` in place of every submodule for which it returns a module; yields how
    many were swapped. Restored on exit, also on error."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)


def refusal(error: Exception) -> str:
    """A network's own complaint about an input, on one short line (for error messages)."""
    from ..images import short_error

    return short_error(error)


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    """Every module of ``net`` in evaluation mode inside (BatchNorm reads its running statistics and never
    updates them, dropout is off); each module's own mode is put back on exit."""
    modes = [(m, m.training) for m in net.modules()]
    if not any(t for _, t in modes):
        yield
        return
    for m, _ in modes:
        m.training = False
    try:
        yield
    finally:
        for m, t in modes:
            m.training = t
