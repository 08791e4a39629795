"""``maximize --check``: the trust check of the pictures a command just made (``tasks.check``), as a ``check``
object in its JSON. A helper of ``cli.activation``, not a command of its own."""

from __future__ import annotations

from typing import Any

from ..errors import PreimageError

#: Exemplars per unit for ``--check`` (``tasks.check.check``'s default).
K = 5


def validate(check: bool, images: str | None, mode: str, token: str | None, objective: str) -> None:
    """Before any work: ``--check`` needs ``--images`` (at least K + 2 of them) and plain channel targets."""
    if not check:
        return
    if images is None:
        raise PreimageError("--check needs --images DIR: natural images to find each unit's exemplars and its "
                            "natural maximum in")
    if mode != "channel" or token is not None or objective.strip() != "unit":
        raise PreimageError("--check checks channels: leave --mode, --token and --objective at their defaults")
    from ..images import list_images

    specs, _ = list_images(images)
    if len(specs) < K + 2:
        raise PreimageError(f"--check needs at least {K + 2} images in --images ({K} exemplars per unit and a "
                            f"baseline), found {len(specs)}")


def check_summary(spec: Any, targets: list[Any], images: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The ``check`` object of a ``maximize`` summary: the published pictures (as users see them, the PNGs)
    scored by ``tasks.check.check`` against ``images``; per picture its unit, restart, measures, ``flagged`` and
    ``reason``, and the check's seconds against the maximization's (``cost_ratio``)."""
    import torch

    from ..images import load_image
    from ..report.result import Result
    from ..tasks.check import check

    results = summary["results"]
    pics = torch.cat([load_image(r["image"], channels=spec.channels) for r in results])
    problems = [{"unit": r.get("unit"), "restart": r.get("restart", 0)} for r in results]
    given = Result(pics, problems, {}, spec.name, summary.get("layer"), 0, float(summary.get("seconds") or 0.0),
                   torch.zeros(0))
    c = check(spec, targets, images, given)
    records = c.records()
    for rec, r in zip(records, results, strict=True):
        rec["restart"], rec["image"] = r.get("restart", 0), r["image"]
    seconds = float(summary.get("seconds") or 0.0)
    return {"flagged": int(c.flagged.sum()), "pictures": len(records), "records": records,
            "thresholds": c.info["thresholds"], "images": c.info["images"], "k": c.info["k"],
            "path_layers": c.info["path_layers"], "seconds": round(c.info["seconds"]["check"], 3),
            "cost_ratio": round(c.info["seconds"]["check"] / seconds, 4) if seconds > 0 else None}
