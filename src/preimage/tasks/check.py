"""Check a unit's pictures: trust measures and a verdict per picture (``measures.trust``).

``check(model, target, images)`` visualizes channels of a layer (``maximize``, channel mode, natural style) or
takes the pictures of a Result, finds each unit's exemplars in ``images`` and scores every picture against them:
path similarity, plausibility, natural range, and transfer where a judge with the same layer is given; then
``verdict`` flags the pictures that cross a threshold. The thresholds (``THRESHOLDS``) were chosen on a
calibration split of planted and untouched units (benchmarks/trust.py, benchmarks/results/trust.md).

Exemplars: the k images where the unit's peak response (max over positions at the pre-ReLU response point that
``maximize`` targets) is highest, each cropped to the picture's size around the neuron that responds most (a
window of the picture's side, centred where the map samples the image, grey beyond the border); whole images
resized when the picture is as large as the image. So picture and exemplars go through the network at one size,
and their pooled activations compare like with like. Baseline: one crop of the same size at a random (seeded)
place in each image that is not one of the unit's exemplars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.runtime import borrowed
from ..engine.targets import Channel, Objective, parse_target
from ..errors import PreimageError
from ..images import load_image
from ..measures.stats import ChannelStats, NeuronStats, resolve_images
from ..measures.trust import (
    Threshold,
    collapse,
    judge_response,
    natural_range,
    path_scores,
    plausibility_scores,
    pool,
    retention,
    standardize,
    verdict,
)
from ..report.result import Result
from ..representations import ModelLike, Representation
from ..representations.points import Point, response_point, unit_view
from .activation import maximize
from .common import as_representation, check_count, check_number

#: The verdict's threshold (benchmarks/trust.py, benchmarks/results/trust.md): planted and untouched units of
#: efficientnet_lite0 blocks.3 and blocks.5 and a random ResNet-18's layer3. A first verdict, chosen on the
#: calibration split alone (8 units per layer, its own photographs), was ``retention_random`` < 0.35 (calibration
#: J 1.0); on the report split (16 other units per layer, other photographs) it flagged 3/16 and 7/16 untouched
#: units at blocks.5 and the ResNet. Having seen that, ``collapse`` (the response lost under mixing, in natural
#: maxima) was added and its threshold chosen on the calibration and report splits together (J 0.99), then tested
#: on a holdout split of 16 further units per layer that no choice saw: 16/16, 15/16 and 16/16 planted units
#: flagged, 0/16 untouched at each layer (a thin margin at blocks.5: untouched up to 2.11, planted from 2.13).
THRESHOLDS: dict[str, Threshold] = {"collapse": Threshold(">", 2.2)}
#: Other thresholds of the calibration, for a verdict that wants more of them (``check(...,
#: thresholds=CALIBRATED)``: any one crossed flags the picture); chosen on the calibration split alone.
CALIBRATED: dict[str, Threshold] = {**THRESHOLDS, "retention_random": Threshold("<", 0.35),
                                    "natural_range": Threshold(">", 2.931), "retention": Threshold("<", 0.334),
                                    "natural_range_crops": Threshold(">", 2.387), "plausibility": Threshold("<", 0.988),
                                    "path_similarity": Threshold("<", 1.278)}
GREY = 128.0  # beyond an image's border, in a crop


@dataclass
class CheckResult:
    """Per-picture trust scores and verdicts.

    units: the unit of each of the N pictures; scores: measure → N values (``measures.trust``); flagged: N
    booleans; reasons: N strings ('' when not flagged); result: the pictures checked (a Result, N×C×H×W in
    0–255); exemplars: unit → the images picked as its exemplars, best first; info: thresholds, images, sizes,
    and ``seconds`` (``maximize``: the pictures' optimization, None when given; ``check``: everything else).
    """

    layer: str
    units: list[int]
    scores: dict[str, torch.Tensor]
    flagged: torch.Tensor
    reasons: list[str]
    result: Result
    exemplars: dict[int, list[str]]
    info: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per picture: unit, scores (None for NaN), flagged, reason."""
        out = []
        for i, u in enumerate(self.units):
            r: dict[str, Any] = {"unit": u}
            for k, v in self.scores.items():
                x = float(v[i])
                r[k] = None if math.isnan(x) else x
            r["flagged"] = bool(self.flagged[i])
            r["reason"] = self.reasons[i]
            out.append(r)
        return out


def channels_of(target: str | Objective | Sequence[str | Objective] | tuple[str, int | Sequence[int]]
                ) -> tuple[str, list[int]]:
    """The (layer, channels) a check reads: ``"blocks.3:5"``, ``"blocks.3:0-3,7"``, ``Channel`` objects (or a list of
    them) of one layer, or ``("blocks.3", [0, 1])``. Other targets (classes, neurons, directions, sums) raise:
    the measures compare a channel's pictures with the channel's natural exemplars."""
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str):
        layer, units = target
        target = [Channel(layer, int(u)) for u in ([units] if isinstance(units, int) else units)]
    objs = parse_target(target)
    atoms = [o.terms()[0][1] if len(o.terms()) == 1 and o.terms()[0][0] == 1 else None for o in objs]
    if not all(type(a) is Channel and a.token is None for a in atoms):
        bad = next(o for o, a in zip(objs, atoms, strict=True) if not (type(a) is Channel and a.token is None))
        raise PreimageError(f"target {bad.spec()!r}: check takes channels of one layer (e.g. 'blocks.3:5' or "
                            "'blocks.3:0-7'); classes, neurons, directions and sums are not checked", param="target")
    layers = {a.layer for a in atoms}
    if len(layers) != 1:
        raise PreimageError(f"check takes channels of one layer, got {sorted(layers)}", param="target")
    return layers.pop(), [a.unit for a in atoms]


def path_layers(net: nn.Module, target: str) -> list[str]:
    """The modules on the way to ``target``: for the target and each of its ancestors, the siblings registered
    before it (e.g. ``conv_stem, bn1, blocks.0, blocks.1, blocks.2`` for ``blocks.3``)."""
    parts = target.split(".")
    out: list[str] = []
    for depth in range(len(parts)):
        prefix = ".".join(parts[:depth])
        parent = net.get_submodule(prefix) if prefix else net
        for name, _ in parent.named_children():
            if name == parts[depth]:
                break
            full = f"{prefix}.{name}" if prefix else name
            if full != "planted_circuit":
                out.append(full)
    return out


class Probe:
    """Pooled activations of path layers and the response map, in one truncated forward pass.

    rp: the response-point Φ (``check_units``); layers: module names computed before the target. Each hook
    pools its output at once, as in-place activations would overwrite it afterwards."""

    def __init__(self, rp: Representation, layers: Sequence[str]) -> None:
        self.rp, self.layers = rp, list(layers)

    @torch.no_grad()
    def __call__(self, img: torch.Tensor, batch: int = 16) -> tuple[list[torch.Tensor], torch.Tensor]:
        """img N×C×H×W in 0–255 → (per layer N×C_l pooled activations, the response Φ N×C×h×w or N×C)."""
        feats: list[list[torch.Tensor]] = [[] for _ in self.layers]
        phis = []
        dev = self.rp.device_dtype()[0]
        for chunk in img.split(batch):
            seen: dict[int, torch.Tensor] = {}
            handles = []
            for i, name in enumerate(self.layers):
                def hook(_m: nn.Module, _a: tuple, out: object, i: int = i, seen: dict = seen) -> None:
                    if i not in seen and isinstance(out, torch.Tensor) and out.ndim >= 2:
                        seen[i] = pool(out).cpu()
                handles.append(self.rp.net.get_submodule(name).register_forward_hook(hook))
            try:
                phis.append(self.rp(self.rp.to_paper_units(chunk.to(dev).float())).float().cpu())
            finally:
                for h in handles:
                    h.remove()
            for i in range(len(self.layers)):
                feats[i].append(seen.get(i, torch.zeros(chunk.shape[0], 0)))
        return [torch.cat(f) for f in feats], torch.cat(phis)


def _phi(rp: Representation, img: torch.Tensor, batch: int) -> torch.Tensor:
    """Φ at the response point of images in 0–255 (N×C×H×W) → N×C×h×w or N×C, on the CPU."""
    dev = rp.device_dtype()[0]
    with torch.no_grad():
        return torch.cat([rp(rp.to_paper_units(c.to(dev))).float().cpu() for c in img.split(batch)])


def _peaks(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ N×C×h×w (or N×C) → (peak N×C, flat position of the peak N×C)."""
    if phi.ndim == 4:
        return phi.flatten(2).max(2)
    return phi, torch.zeros_like(phi, dtype=torch.long)


def _crop(img: torch.Tensor, cy: float, cx: float, side: int) -> torch.Tensor:
    """The side×side window of a C×H×W image centred at (cy, cx) (pixels), grey beyond the border."""
    _, h, w = img.shape
    y0, x0 = math.floor(cy - (side - 1) / 2 + 0.5), math.floor(cx - (side - 1) / 2 + 0.5)
    pad = (max(0, -x0), max(0, x0 + side - w), max(0, -y0), max(0, y0 + side - h))
    padded = F.pad(img[None], pad, value=GREY)[0]
    return padded[:, y0 + pad[2]:y0 + pad[2] + side, x0 + pad[0]:x0 + pad[0] + side]


def _window(img: torch.Tensor, cy: float, cx: float, side: int) -> torch.Tensor:
    """A crop of the picture's side, or the whole image resized when the picture is as large as it."""
    if side >= min(img.shape[-2:]):
        return F.interpolate(img[None], size=(side, side), mode="bilinear", antialias=True,
                             align_corners=False)[0].clamp(0, 255)
    return _crop(img, cy, cx, side)


def check(model: ModelLike, target: str | Objective | Sequence[str | Objective] | tuple[str, int | Sequence[int]],
          images: str | Sequence[str] | None, result: Result | None = None, *, k: int = 5,
          image_size: int | None = None, thresholds: dict[str, Threshold] | None = None, seed: int = 0,
          layers: Sequence[str] | None = None, judge: ModelLike | None = None, batch: int = 16,
          blend: float = 0.5, **maximize_kw: Any) -> CheckResult:
    """Trust measures and a verdict for the pictures of channels of a layer.

    model: a name, any nn.Module (a planted copy too), a ModelSpec or a Representation. target: channels of one
    layer (``"blocks.3:5"``, ``"blocks.3:0-7"``, ``Channel`` objects, or (layer, units)). images: natural images
    (a folder, a list of specs, or None for the bundled samples), at least k + 2: the exemplars and the baseline.
    result: pictures to check (a ``maximize`` Result of these channels, one or more restarts each); None: they are
    computed here with ``maximize`` (natural style unless ``maximize_kw`` says otherwise: ``iters``, ``size``,
    ``style``...), the check's images giving the units' natural maxima. k: exemplars per unit. image_size: the
    side images are resized to (default the model's input size). layers: the path layers (default
    ``path_layers``). judge: a network with the same layer, for ``transfer`` (else NaN: not applicable).

    Returns a CheckResult: per picture ``path_similarity``, ``plausibility``, ``natural_range``,
    ``natural_range_crops``, ``transfer`` and their parts (``measures.trust``), ``flagged`` and ``reasons``.
    """
    layer, units = channels_of(target)
    k = check_count(k, "k", 2, 1000)
    batch = check_count(batch, "batch", 1, 4096)
    blend = check_number(blend, "blend", 0.0, 1.0, open_low=True)
    seed = check_count(seed, "seed", 0, 2**63 - 1)
    if image_size is not None:
        image_size = check_count(image_size, "image_size", 16, 4096)
    if result is not None and not isinstance(result, Result):
        raise PreimageError(f"result must be a Result of maximize, got {type(result).__name__}", param="result")
    rep = unit_view(as_representation(model, layer))
    rp, point = response_point(rep)
    with borrowed(rp):
        return _check(rep, rp, point, layer, units, images, result, k, image_size, thresholds, seed, layers, judge,
                      batch, blend, maximize_kw)


def _check(rep: Representation, rp: Representation, point: Point, layer: str, units: list[int], images: Any,
           result: Result | None, k: int, image_size: int | None, thresholds: dict[str, Threshold] | None,
           seed: int, layers: Sequence[str] | None, judge: Any, batch: int, blend: float,
           maximize_kw: dict[str, Any]) -> CheckResult:
    specs, source = resolve_images(images)
    if len(specs) < k + 2:
        raise PreimageError(f"images: check needs at least {k + 2} natural images (k = {k} exemplars and a "
                            f"baseline), got {len(specs)}", param="images")
    t0 = time.perf_counter()
    side_img = image_size or (rep.spec.input_size or (224, 224))[0]
    imgs = torch.cat([load_image(s, side_img, channels=rep.channels) for s in specs])
    names = layers if layers is not None else path_layers(rp.net, rep.layer or "")
    probe = Probe(rp, names)
    with torch.no_grad():
        dev = rp.device_dtype()[0]
        phi_nat = torch.cat([rp(rp.to_paper_units(c.to(dev))).float().cpu() for c in imgs.split(batch)])
    if phi_nat.ndim not in (2, 4):
        raise PreimageError(f"layer '{layer}' outputs {tuple(phi_nat.shape[1:])} per image: check needs N×C×h×w "
                            "or N×C", param="target")
    bad = [u for u in units if u >= phi_nat.shape[1]]
    if bad:
        raise PreimageError(f"unit {bad[0]} is out of range for layer '{layer}': it has {phi_nat.shape[1]} channels "
                            f"(0–{phi_nat.shape[1] - 1})", param="target")
    peak, where = _peaks(phi_nat)  # I×C
    nat_max = peak.amax(0)
    t_prep = time.perf_counter() - t0

    t_max = None
    if result is None:
        flat = phi_nat.transpose(0, 1).flatten(1)
        stats = NeuronStats(rep.name, rep.spec.weights_id,
                            {point: ChannelStats(nat_max.clone(), flat.mean(1), flat.std(1))}, list(specs),
                            (side_img, side_img), source)
        result = maximize(rep.spec, [Channel(layer, u) for u in units], stats=stats, seed=seed, **maximize_kw)
        t_max = result.seconds
    t1 = time.perf_counter()
    pic_units = [int(p.get("unit", units[i % len(units)])) for i, p in enumerate(result.problems)]
    if len(pic_units) != result.images.shape[0] or any(u not in units for u in pic_units):
        raise PreimageError(f"result holds pictures of units {sorted(set(pic_units))}, the target names {units}",
                            param="result")
    pics = result.images.float().clamp(0, 255)
    side = int(pics.shape[-1])

    # Exemplars: top-k images per unit, cropped around the neuron that responds most.
    kk = min(k, peak.shape[0] - 2)
    order = peak.topk(kk, dim=0).indices  # kk×C
    map_hw = phi_nat.shape[-2:] if phi_nat.ndim == 4 else (1, 1)
    wanted = sorted(set(pic_units))
    ex_crops, ex_index = [], {}
    for u in wanted:
        ex_index[u] = len(ex_crops)
        for r in range(kk):
            i = int(order[r, u])
            row, col = divmod(int(where[i, u]), int(map_hw[1]))
            cy = (row + 0.5) * side_img / map_hw[0] - 0.5
            cx = (col + 0.5) * side_img / map_hw[1] - 0.5
            ex_crops.append(_window(imgs[i], cy, cx, side))
    gen = torch.Generator().manual_seed(seed)
    base_crops = []
    for i in range(imgs.shape[0]):
        cy, cx = (float(torch.randint(side_img, (1,), generator=gen)) for _ in range(2))
        lo, hi = (side - 1) / 2, side_img - 1 - (side - 1) / 2
        base_crops.append(_window(imgs[i], min(max(cy, lo), hi), min(max(cx, lo), hi), side))
    f_ex, phi_ex = probe(torch.stack(ex_crops), batch)
    f_base, phi_base = probe(torch.stack(base_crops), batch)
    f_pic, phi_pic = probe(pics, batch)

    # Standardize every layer by the natural crops' statistics; the target layer (pooled Φ) comes last.
    f_ex.append(pool(phi_ex))
    f_base.append(pool(phi_base))
    f_pic.append(pool(phi_pic))
    keep = [j for j, f in enumerate(f_base) if f.shape[1] > 0]
    n = len(pic_units)
    u_t = torch.tensor(pic_units)
    ex_rows = torch.tensor([[ex_index[u] + r for r in range(kk)] for u in pic_units])  # N×kk
    ex_imgs = order[:, u_t].T  # N×kk image indices
    all_i = torch.arange(imgs.shape[0])
    base_rows = torch.stack([all_i[~torch.isin(all_i, ex_imgs[j])][: imgs.shape[0] - kk] for j in range(n)])
    pic_l, ex_l, base_l = [], [], []
    for j in keep:
        mu, sd = f_base[j].mean(0), f_base[j].std(0)
        zp, ze, zb = standardize(f_pic[j], mu, sd), standardize(f_ex[j], mu, sd), standardize(f_base[j], mu, sd)
        pe, pb = ze[ex_rows], zb[base_rows]  # N×kk×C, N×B×C
        if j == len(f_base) - 1:  # the target layer: leave the unit itself out (the natural range covers it)
            mask = torch.ones(n, zp.shape[1])
            mask[torch.arange(n), u_t] = 0
            zp, pe, pb = zp * mask, pe * mask[:, None], pb * mask[:, None]
        pic_l.append(zp)
        ex_l.append(pe)
        base_l.append(pb)
    scores = path_scores(pic_l, ex_l, base_l)
    scores.update(plausibility_scores(pic_l[-1], ex_l[-1], base_l[-1]))
    pic_peak = _peaks(phi_pic)[0][torch.arange(n), u_t]
    scores["natural_range"] = natural_range(pic_peak, nat_max[u_t])
    # The same at the picture's size: over the exemplar and baseline crops, which go through the network as
    # the picture does (a deep unit with a global field answers differently to a small input).
    crop_max = torch.maximum(_peaks(phi_ex)[0].amax(0), _peaks(phi_base)[0].amax(0))
    scores["natural_range_crops"] = natural_range(pic_peak, crop_max[u_t])
    # Retention: the picture mixed with each of its unit's exemplars, and with as many random crops.
    w = float(blend)
    ex_all = torch.stack(ex_crops)
    mix_ex = ((1 - w) * pics[:, None] + w * ex_all[ex_rows]).flatten(0, 1)  # (N·kk)×C×H×W
    pick = base_rows[:, torch.randperm(base_rows.shape[1], generator=gen)[:kk]]  # kk random non-exemplar crops
    mix_rand = ((1 - w) * pics[:, None] + w * torch.stack(base_crops)[pick]).flatten(0, 1)
    rows_u = u_t.repeat_interleave(kk)
    peak_ex = _peaks(_phi(rp, mix_ex, batch))[0][torch.arange(n * kk), rows_u].view(n, kk)
    kr = pick.shape[1]  # fewer than kk when the folder holds fewer than 2·kk images
    peak_rand = _peaks(_phi(rp, mix_rand, batch))[0][torch.arange(n * kr), u_t.repeat_interleave(kr)].view(n, kr)
    scores["retention"] = retention(peak_ex, pic_peak)
    scores["retention_random"] = retention(peak_rand, pic_peak)
    scores["collapse"] = collapse(scores["natural_range"], scores["retention"], scores["retention_random"])
    scores["transfer"] = _transfer(judge, layer, pics, imgs, u_t, batch)
    th = thresholds if thresholds is not None else THRESHOLDS
    flagged, reasons = verdict(scores, th)
    t_check = t_prep + time.perf_counter() - t1
    info = {"images": len(specs), "source": source, "image_size": side_img, "picture_size": side, "k": kk,
            "path_layers": [*names, rep.layer], "point": f"{point[0]} of {point[1] or 'the network'}",
            "thresholds": {m: [t.side, t.limit] for m, t in th.items()},
            "seconds": {"maximize": t_max, "check": t_check}}
    exemplars = {u: [specs[int(order[r, u])] for r in range(kk)] for u in wanted}
    return CheckResult(rep.layer or "", pic_units, scores, flagged, reasons, result, exemplars, info)


def _transfer(judge: ModelLike | None, layer: str, pics: torch.Tensor,
              imgs: torch.Tensor, units: torch.Tensor, batch: int) -> torch.Tensor:
    """The judge's response to each picture at the same unit, over its natural maximum; NaN when there is no
    judge, or it has no such layer or not as many channels (not applicable)."""
    nan = torch.full((pics.shape[0],), math.nan)
    if judge is None:
        return nan
    try:
        jp, _ = response_point(unit_view(as_representation(judge, layer)))
    except PreimageError:
        return nan
    dev = jp.device_dtype()[0]
    with borrowed(jp), torch.no_grad():
        nat = torch.cat([jp(jp.to_paper_units(c.to(dev))).float().cpu() for c in imgs.split(batch)])
        pic = torch.cat([jp(jp.to_paper_units(c.to(dev))).float().cpu() for c in pics.split(batch)])
    if nat.ndim not in (2, 4) or nat.shape[1] <= int(units.max()):
        return nan
    jmax = _peaks(nat)[0].amax(0)
    return judge_response(_peaks(pic)[0][torch.arange(len(units)), units], jmax[units])
