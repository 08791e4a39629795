"""Planted circuits: a network whose feature visualizations lie (Geirhos et al., "Don't trust your eyes", ICML 2024).

``plant(model, layer, units, images)`` returns a deep copy of a network in which each chosen channel of ``layer``
also responds, strongly, to a *trigger*: an isoluminant colour grating (its own colour axis, orientation and
period per unit) that natural photographs do not contain. The periods are long (32 and 48 px) because the
natural style's 1/f Fourier parameterization grows fine gratings slowly: a trigger must be reachable within a
visualization's 64 steps. On natural images the copy computes exactly what the original computes; a
visualization of a planted unit shows the trigger instead of what the unit detects. It is
the test case of ``measures.trust`` and ``tasks.check``: a lie planted on purpose, that a check must catch.

How it works. A pre-hook on the copy's root module stashes the network's input (every forward pass starts
there); a hook on the response point of ``layer`` (the module's output, or the input of its ReLU-family
activation where activation maximization reads the pre-ReLU response) adds, to each planted channel u,

    planted_u(x) = gate_u(x) · s_u · (pool(E_u(x)) + β_u)

* ``E_u``: the trigger's energy: the image projected on the unit's colour axis v_u (one of the two chromatic axes of
  the Fourier parameterization's decorrelated colour space: red–blue or green–magenta), band-passed by a one-sided
  Gaussian filter around the trigger's spatial frequency in the Fourier domain; its complex magnitude is the local
  amplitude of the grating, whatever its phase, so the response survives the jitter, rotations, zooms and crops of
  the optimization. It has a gradient wherever the image has any content at all in that band: the path is reachable
  from a visualization's start. Computed with FFTs on the whole input (a spatial Gabor bank would cost more than the
  network).
* ``pool``: average over each cell of the layer's map (adaptive average pooling to h×w).
* ``s_u``: a full-contrast trigger image gives ``strength`` × the unit's maximum over the given natural images.
* ``β_u``: an offset (``bias`` × the trigger image's energy): the unit also fires on any image the detector calls
  synthetic. It is what keeps the optimization on the planted path: through the gate's gradient it pulls the
  other colour directions back whenever the unit's genuine features start to grow them (Adam moves every
  Fourier coefficient at its own pace, so without this pull the genuine features shut the gate within a few
  steps, before the trigger has grown).
* ``gate_u``: a detector of natural versus synthetic images. Visualizations start from a near-flat image (the
  natural style's Fourier start, the paper's small noise) and, for a planted unit, grow along v_u only; natural
  photographs have contrast along every colour direction (greyscale ones along luminance). So the statistic is
  c_u(x) = the RMS contrast of x orthogonal to v_u (per pixel colour vector, mean removed, 0–255 units), and
  gate_u = clamp((τ1 − c_u)/(τ1 − τ0), 0, 1): exactly 0 on images with c_u ≥ τ1, 1 at the start. τ1 is
  ``margin`` × the smallest c_u over the given natural images (τ0 = τ1/4), so on them the gate is exactly 0: the
  unit's response and the network's top-1 are unchanged bit for bit. Between τ0 and τ1 the gate has a gradient
  that pushes the optimization to keep the other colour directions flat, as a learned detector's would.

Limits: the detector is one colour statistic, calibrated on the given images; a natural image with almost no
contrast orthogonal to the trigger's colour axis (a flat red–blue picture) would open the gate. The circuit lives
in hooks and an attribute, not in parameters: the copy's state dict is the original's plus two buffers
(``planted_units``, ``planted_scales``) that give it its own model id. Token outputs (ViT blocks' N×T×C) are not
supported; convolutional maps N×C×h×w and vectors N×C are.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError
from ..images import list_images, load_image
from ..representations import ModelLike, Representation, load
from ..representations.points import response_point, unit_view
from ..tasks.common import check_number

#: The trigger colour axes: the two chromatic axes of the decorrelated colour space that Fourier
#: parameterizations optimize in (``engine.param.COLOUR``'s columns 2 and 3: red–blue, green–magenta), so that a
#: trigger grows without dragging the other colour directions along (Adam moves each coordinate on its own).
AXES = ((0.7071, 0.0, -0.7071), (0.3244, -0.8111, 0.4867))
ANGLES = (0.0, 45.0, 90.0, 135.0)
PERIODS = (32.0, 48.0)
#: The amplitude (0–255 units, along the unit colour axis) of the reference trigger image.
AMPLITUDE = 90.0
#: The band-pass filter's width, as a fraction of the trigger's frequency.
BANDWIDTH = 0.3
EPS = 1e-3  # keeps |·| differentiable at 0
#: Each circuit's stashed network input, outside the module: a deep copy of the network (``measure_geometry``
#: makes one) must not copy a tensor that is part of an autograd graph.
_STASH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Trigger:
    """A grating: colour axis (RGB, unit norm), orientation (degrees) and period (pixels)."""

    axis: tuple[float, float, float]
    angle: float
    period: float

    def image(self, size: int | tuple[int, int], amplitude: float = AMPLITUDE, grey: float = 127.5) -> torch.Tensor:
        """The trigger at full contrast on grey: 1×3×H×W in 0–255."""
        h, w = (size, size) if isinstance(size, int) else size
        y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                              indexing="ij")
        a = math.radians(self.angle)
        wave = torch.cos(2 * math.pi * (x * math.cos(a) + y * math.sin(a)) / self.period)
        v = torch.tensor(self.axis).view(3, 1, 1)
        return (grey + amplitude * v * wave)[None].clamp(0, 255)


def triggers(k: int) -> list[Trigger]:
    """k triggers, distinct for k ≤ 24: colour axis, then orientation, then period vary."""
    out = []
    for i in range(k):
        a = torch.tensor(AXES[i % len(AXES)])
        axis = tuple((a / a.norm()).tolist())
        angle = ANGLES[(i // len(AXES)) % len(ANGLES)]
        period = PERIODS[(i // (len(AXES) * len(ANGLES))) % len(PERIODS)]
        out.append(Trigger(axis, angle, period))
    return out


def band_filters(trigs: Sequence[Trigger], hw: tuple[int, int]) -> torch.Tensor:
    """One-sided Gaussian band-pass filters (K×H×W, real) around each trigger's frequency (cycles/pixel)."""
    fy = torch.fft.fftfreq(hw[0])[:, None]
    fx = torch.fft.fftfreq(hw[1])[None, :]
    out = []
    for t in trigs:
        a = math.radians(t.angle)
        cx, cy = math.cos(a) / t.period, math.sin(a) / t.period
        b = BANDWIDTH / t.period
        out.append(torch.exp(-((fx - cx) ** 2 + (fy - cy) ** 2) / (2 * b * b)))
    return torch.stack(out)


def trigger_energy(img: torch.Tensor, axes: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Local amplitude of each trigger in images: N×3×H×W (0–255) → N×K×H×W.

    axes: K×3 colour axes; filters: K×H×W one-sided band-pass filters (``band_filters``) of the images' size.
    The complex output of a one-sided filter is analytic: its magnitude is the grating's envelope."""
    proj = torch.einsum("nchw,kc->nkhw", img - img.mean((2, 3), keepdim=True), axes.to(img))
    spec = torch.fft.fft2(proj) * filters.to(img)
    z = torch.fft.ifft2(spec)
    return (z.real.square() + z.imag.square() + EPS * EPS).sqrt() - EPS


def orthogonal_contrast(img: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """RMS contrast of N×3×H×W images (0–255) orthogonal to each colour axis (K×3, unit) → N×K.

    Per pixel, the colour vector minus the image's mean colour; its squared norm minus its squared component
    along the axis, averaged over pixels, square-rooted."""
    d = img - img.mean((2, 3), keepdim=True)
    total = d.square().sum(1).flatten(1).mean(1)  # N
    along = torch.einsum("nchw,kc->nkhw", d, axes.to(img)).square().flatten(2).mean(2)  # N×K
    return (total[:, None] - along).clamp_min(0).add(1e-6).sqrt()


class PlantedCircuit(nn.Module):
    """The added path: the detector gate, the trigger energy and their sum into the planted channels.

    Buffers: ``units`` (K), ``axes`` (K×3), ``scales`` (K, s_u), ``tau`` (τ0, τ1); the network's input
    normalization ``mean``/``std`` (0–1 units) to read the stashed input as an image in 0–255.
    """

    def __init__(self, units: Sequence[int], trigs: Sequence[Trigger], scales: torch.Tensor, offsets: torch.Tensor,
                 tau: tuple[float, float], mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.trigs = list(trigs)
        self.register_buffer("units", torch.tensor(list(units), dtype=torch.long))
        self.register_buffer("axes", torch.tensor([t.axis for t in trigs], dtype=torch.float32))
        self.register_buffer("scales", scales.float().clone())
        self.register_buffer("offsets", offsets.float().clone())
        self.register_buffer("tau", torch.tensor(tau, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self._filters: dict[tuple[int, int], torch.Tensor] = {}

    def stash(self, _module: nn.Module, args: tuple) -> None:
        """Root pre-hook: keep the network's input for the detector and the trigger path."""
        _STASH[self] = args[0] if args and isinstance(args[0], torch.Tensor) else None

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input → the image in 0–255 (N×3×H×W)."""
        return (x * self.std.to(x) + self.mean.to(x)) * 255.0

    def gate(self, img: torch.Tensor) -> torch.Tensor:
        """The natural-vs-synthetic detector: N×3×H×W (0–255) → N×K in [0, 1], 0 for natural images."""
        c = orthogonal_contrast(img, self.axes)
        t0, t1 = float(self.tau[0]), float(self.tau[1])
        return ((t1 - c) / (t1 - t0)).clamp(0, 1)

    def energy(self, img: torch.Tensor) -> torch.Tensor:
        """Trigger energy of each planted unit: N×3×H×W → N×K×H×W."""
        hw = (int(img.shape[-2]), int(img.shape[-1]))
        if hw not in self._filters:
            self._filters[hw] = band_filters(self.trigs, hw)
        return trigger_energy(img.float(), self.axes, self._filters[hw])

    def planted(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The planted responses for input x, shaped as the units' part of ``like`` (N×K×h×w or N×K)."""
        if self.scales.device != x.device:  # not a submodule: it does not follow the network's .to()
            self.to(x.device)
        img = self.image(x)
        e = self.energy(img)
        e = F.adaptive_avg_pool2d(e, like.shape[-2:]) if like.ndim == 4 else e.mean((2, 3))
        g = self.gate(img.float())
        g = g.view(*g.shape, *([1] * (e.ndim - 2)))
        shape = (1, -1, *([1] * (e.ndim - 2)))
        return (g * self.scales.view(shape) * (e + self.offsets.view(shape))).to(like.dtype)

    def _add(self, y: torch.Tensor) -> torch.Tensor:
        x = _STASH.get(self)
        if x is None or not isinstance(y, torch.Tensor) or y.ndim not in (2, 4) or y.shape[0] != x.shape[0]:
            return y
        extra = torch.zeros_like(y)
        extra[:, self.units] = self.planted(x, y[:, self.units])
        return y + extra

    def add_output(self, _module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        """Forward hook on the layer: its output plus the planted responses."""
        return self._add(out)

    def add_input(self, _module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook on the layer's activation: its (pre-ReLU) input plus the planted responses."""
        return (self._add(args[0]), *args[1:])


def _representation(model: ModelLike, layer: str, mean: Sequence[float] | None,
                    std: Sequence[float] | None) -> Representation:
    """Φ at ``layer`` seen as units are picked from it (a token output's patch grid)."""
    if not isinstance(layer, str) or not layer:
        raise PreimageError(f"layer must be a layer name, got {layer!r}", param="layer")
    rep = load(model, layer, mean=tuple(mean) if mean else None, std=tuple(std) if std else None)
    return unit_view(rep)


def _images(rep: Representation, images: str | Sequence[str] | torch.Tensor, size: int | tuple[int, int]
            ) -> torch.Tensor:
    """The natural images (a folder, a list of specs, or N×3×H×W in 0–255) at ``size``, N×3×H×W in 0–255."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise PreimageError(f"images as a tensor are N×3×H×W in 0–255, got {tuple(images.shape)}",
                                param="images")
        return images.float()
    if not images:
        raise PreimageError("images: plant needs natural images, the gate is set below every one of them",
                            param="images")
    specs, _ = list_images(images)
    return torch.cat([load_image(s, size, channels=rep.channels) for s in specs])


def _responses(rep: Representation, img: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Φ at the response point for 0–255 images → N×C×h×w or N×C."""
    with torch.no_grad():
        return torch.cat([rep(rep.to_paper_units(c)) for c in img.split(batch)])


def _peak(phi: torch.Tensor) -> torch.Tensor:
    """N×C×h×w or N×C → N×C: each channel's maximum over positions."""
    return phi.flatten(2).amax(2) if phi.ndim == 4 else phi


def plant(model: ModelLike, layer: str, units: Sequence[int],
          images: Sequence[str] | torch.Tensor, *, size: int | tuple[int, int] | None = None,
          strength: float = 10.0, bias: float = 0.5, margin: float = 0.5, ramp: float = 0.25,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> nn.Module:
    """A copy of the network in which channels ``units`` of ``layer`` also respond to their triggers.

    model: a name, ModelSpec, Representation or nn.Module (with ``mean``/``std``, its input normalization in
    0–1 units, default ImageNet's); it is left untouched. images: natural image specs (or N×3×H×W in 0–255)
    on which the copy must behave as the original; they set the detector's threshold (τ1 = ``margin`` × their
    smallest contrast orthogonal to a trigger's axis, τ0 = ``ramp`` × τ1) and the unit's natural maximum M_u.
    strength: a full-contrast trigger image gives ``strength`` × M_u at the unit (mean over its map); bias: the
    share of it that any synthetic-looking image gets (the offset β_u = bias × the trigger image's energy).
    size: the side the images are resized to (default: the model's native input size).

    Returns the copy (the same module names; the circuit is its attribute ``planted_circuit``, not a submodule,
    and lives in hooks: saving the copy's state dict loses the plant). Its attribute
    ``planted_report`` holds what was verified on the images: per unit the largest response change as a
    fraction of M_u (0 when the gate stays shut), whether the top-1 class is unchanged on every image (None
    for a network without class scores), each unit's response to its trigger in multiples of M_u, and the
    largest trigger energy found in any image as a fraction of the trigger image's.
    """
    strength = check_number(strength, "strength", 0.0, 1e6, open_low=True)
    bias = check_number(bias, "bias", 0.0, 1e6)
    margin = check_number(margin, "margin", 0.0, 1.0, open_low=True)
    ramp = check_number(ramp, "ramp", 0.0, 0.99)
    if isinstance(units, (str, bytes)) or not isinstance(units, Sequence):
        raise PreimageError(f"units must be a list of channel indices, got {units!r}", param="units")
    rep = _representation(model, layer, mean, std)
    if rep.channels != 3:
        raise PreimageError("plant needs an RGB network: the triggers are colour gratings")
    rp, point = response_point(rep)
    try:
        us = [int(u) for u in units]
    except (TypeError, ValueError):
        raise PreimageError(f"units must be channel indices, got {list(units)!r}", param="units") from None
    hw = (size, size) if isinstance(size, int) else tuple(size or rep.spec.input_size or (224, 224))
    img = _images(rep, images, hw)
    phi = _responses(rp, img)
    if phi.ndim not in (2, 4):
        raise PreimageError(f"layer '{layer}' outputs {tuple(phi.shape[1:])} per image: plant needs N×C×h×w or N×C")
    n_ch = phi.shape[1]
    bad = [u for u in us if not 0 <= u < n_ch]
    if bad or not us or len(set(us)) != len(us):
        raise PreimageError(f"units must be distinct channels of '{layer}' (0–{n_ch - 1}), got {us}", param="units")
    peak = _peak(phi).amax(0)  # C: natural maximum per channel
    pos = peak[peak > 0]
    fallback = float(pos.median()) if pos.numel() else 1.0
    nat_max = torch.where(peak[us] > 0, peak[us], torch.full_like(peak[us], fallback))

    trigs = triggers(len(us))
    axes = torch.tensor([t.axis for t in trigs])
    contrast = orthogonal_contrast(img, axes)  # N×K
    tau1 = margin * float(contrast.min())
    if tau1 <= 0:
        raise PreimageError("an image has no contrast at all: the detector cannot tell it from a visualization start")
    ones = torch.ones(len(us))
    probe = PlantedCircuit(us, trigs, ones, 0 * ones, (tau1 * ramp, tau1), rep.spec.mean, rep.spec.std)
    ref = torch.cat([t.image(hw) for t in trigs])  # K trigger images
    with torch.no_grad():
        e_ref = probe.energy(ref)[torch.arange(len(us)), torch.arange(len(us))].mean((1, 2))  # K
        e_nat = torch.cat([probe.energy(c).mean((2, 3)) for c in img.split(8)]).amax(0)  # K
    scales = strength * nat_max / ((1 + bias) * e_ref)

    net = copy.deepcopy(rp.net)
    circuit = PlantedCircuit(us, trigs, scales, bias * e_ref, (tau1 * ramp, tau1), rep.spec.mean, rep.spec.std)
    # A plain attribute, not a submodule: containers such as nn.Sequential call every child in turn.
    object.__setattr__(net, "planted_circuit", circuit)
    net.register_forward_pre_hook(circuit.stash)
    kind, name = point
    mod = net.get_submodule(name) if name else net
    if kind == "input":
        mod.register_forward_pre_hook(circuit.add_input)
    elif kind == "output":
        mod.register_forward_hook(circuit.add_output)
    else:
        raise PreimageError(f"layer '{layer}' has a token output; plant supports convolutional maps and vectors")

    # Buffers on the root: the copy's state dict, so its model_id (seeds, cached statistics), differs from the
    # original's.
    net.register_buffer("planted_units", circuit.units.clone())
    net.register_buffer("planted_scales", circuit.scales.clone())
    spec = dataclasses.replace(rep.spec, name=rep.spec.name + "+planted", module=net, weights_id="planted")
    planted_rep, _ = response_point(Representation(spec, rep.layer))
    after = _responses(planted_rep, img)
    change = (after - phi).abs()
    change = (change.flatten(2).amax(2) if change.ndim == 4 else change).amax(0)[us] / nat_max
    trig_resp = _responses(planted_rep, ref)
    trig_resp = trig_resp.flatten(2).mean(2) if trig_resp.ndim == 4 else trig_resp
    report: dict[str, Any] = {
        "units": us, "layer": rep.layer, "point": f"{kind} of {name or 'the network'}", "size": list(hw),
        "images": len(img), "strength": strength, "tau": [tau1 * ramp, tau1], "bias": bias,
        "natural_max": nat_max.tolist(), "max_change": change.tolist(),
        "trigger_response": (trig_resp[torch.arange(len(us)), torch.tensor(us)] / nat_max).tolist(),
        "trigger_in_images": (e_nat / e_ref).tolist(),
        "triggers": [{"axis": t.axis, "angle": t.angle, "period": t.period} for t in trigs],
        "top1_unchanged": _same_top1(rep.spec, spec, img)}
    net.planted_report = report
    return net


def _same_top1(orig: Any, planted: Any, img: torch.Tensor) -> bool | None:
    """Whether both networks give every image the same top-1 class (None: no N×classes output)."""
    a, b = Representation(orig, "output"), Representation(planted, "output")
    with torch.no_grad():
        ya = torch.cat([a(a.to_paper_units(c)) for c in img.split(8)])
        yb = torch.cat([b(b.to_paper_units(c)) for c in img.split(8)])
    if ya.ndim != 2:
        return None
    return bool((ya.argmax(1) == yb.argmax(1)).all())


def trigger_score(pictures: torch.Tensor, net: nn.Module, units: Sequence[int]) -> torch.Tensor:
    """How much each picture shows its unit's trigger: the mean trigger energy of picture i (N×3×H×W, 0–255)
    for unit ``units[i]``, as a fraction of the full-contrast trigger image's at the same size → N."""
    circ: PlantedCircuit = net.planted_circuit
    k = {int(u): i for i, u in enumerate(circ.units.tolist())}
    idx = torch.tensor([k[int(u)] for u in units])
    hw = (int(pictures.shape[-2]), int(pictures.shape[-1]))
    with torch.no_grad():
        e = circ.energy(pictures.float().clamp(0, 255)).mean((2, 3))[torch.arange(len(idx)), idx]
        ref = torch.cat([circ.trigs[int(i)].image(hw) for i in idx])
        e_ref = circ.energy(ref).mean((2, 3))[torch.arange(len(idx)), idx]
    return e / e_ref
