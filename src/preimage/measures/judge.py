"""Transfer: does a network that never saw the optimization recognise the picture?

A judge is a classifier (default ``efficientnet_lite1``) that reads the written PNG files as a user would: the
file is decoded, resized to the judge's native input size (bicubic, antialiased, as every image this package
loads) and normalized by the judge's own statistics. For a class target it reports the judge's probability of
the class and whether the class is its top-1; for an inversion, whether the judge gives the pre-image the top-1
label it gives the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import PreimageError
from ..images import load_image, resize
from ..representations import Representation, load

DEFAULT_JUDGE = "efficientnet_lite1"


class Judge:
    """A classifier that judges pictures from files. model: a model name (``efficientnet_lite1``,
    ``timm:NAME``, a torchvision name, ...) or a Representation at the class-logit layer."""

    def __init__(self, model: str | Representation = DEFAULT_JUDGE, device: str | torch.device = "cpu") -> None:
        if isinstance(model, Representation):
            self.rep = model
        else:
            self.rep = load(model, "output", device=device)
        self.name = self.rep.name
        if self.rep.channels != 3:
            raise PreimageError(f"{self.name} cannot judge: a judge must be an RGB classifier", param="judge")
        self.size = self.rep.spec.input_size or (224, 224)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """Softmax of the judge on N×3×H×W images in 0–255 already at its input size → N×classes."""
        dev = self.rep.device_dtype()[0]
        out = []
        for chunk in images.split(batch):
            logits = self.rep(self.rep.to_paper_units(chunk.float().to(dev)))
            if logits.ndim != 2:
                raise PreimageError(f"{self.name} cannot judge: its output is not class scores (N×classes)",
                                    param="judge")
            out.append(logits.float().softmax(1).cpu())
        return torch.cat(out)

    def read(self, pictures: Sequence[str | Path] | torch.Tensor) -> torch.Tensor:
        """PNG/JPEG files, or pictures N×C×H×W in 0–255 (rounded to 8 bits, as their PNG would hold them) → N×3×H×W
        in 0–255 at the judge's input size, as a user would load them."""
        if isinstance(pictures, torch.Tensor):
            x = pictures.detach().float().cpu().clamp(0, 255).round()
            x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
            return resize(x, self.size)
        return torch.cat([load_image(str(f), self.size) for f in pictures])

    def classes(self, files: Sequence[str | Path] | torch.Tensor, targets: Sequence[int]) -> dict[str, Any]:
        """For pictures (files or N×C×H×W in 0–255) meant to show class targets[i]: the judge's p(class), whether
        it is top-1, and its own top-1 class and probability, per picture; plus the top-1 rate and the mean p."""
        if len(files) != len(targets):
            raise ValueError("one target class per picture")
        p = self.probabilities(self.read(files))
        n_cls = p.shape[1]
        bad = [t for t in targets if not 0 <= t < n_cls]
        if bad:
            raise PreimageError(f"class {bad[0]} is out of range for the judge {self.name} ({n_cls} classes)",
                                param="judge")
        t = torch.tensor(list(targets))
        prob = p[torch.arange(len(t)), t]
        top = p.argmax(1)
        return {"judge": self.name, "probability": prob.tolist(), "top1": (top == t).tolist(),
                "judge_top1": top.tolist(), "judge_top1_probability": p.max(1).values.tolist(),
                "top1_rate": float((top == t).float().mean()) if len(t) else 0.0,
                "mean_probability": float(prob.mean()) if len(t) else 0.0}

    def agreement(self, files: Sequence[str | Path] | torch.Tensor, originals: torch.Tensor) -> dict[str, Any]:
        """For inversions: does the judge give pre-image i (a file, or N×C×H×W in 0–255) the top-1 label it gives
        originals[i] (N×C×H×W in 0–255, any size)? Per picture, plus the agreement rate."""
        p = self.probabilities(self.read(files))
        p0 = self.probabilities(self.read(originals))
        same = p.argmax(1) == p0.argmax(1)
        return {"judge": self.name, "agree": same.tolist(), "original_top1": p0.argmax(1).tolist(),
                "judge_top1": p.argmax(1).tolist(), "agreement": float(same.float().mean()) if len(same) else 0.0}


def judges(names: str | Judge | Sequence[str | Judge], device: str | torch.device = "cpu") -> list[Judge]:
    """Judges by name (or as they are), each loaded once (a repeated name is judged once)."""
    if isinstance(names, (str, Judge)):
        items: list[Any] = [names]
    elif isinstance(names, Sequence):
        items = list(names)
    else:
        raise PreimageError(f"a judge is a classifier's name such as 'efficientnet_lite1', got {names!r}",
                            param="judge")
    out: dict[str, Judge] = {}
    for j in items:
        if isinstance(j, Judge):
            out.setdefault(j.name, j)
        elif isinstance(j, str):
            if j not in out:
                out[j] = Judge(j, device)
        else:
            raise PreimageError(f"a judge is a classifier's name such as 'efficientnet_lite1', got {j!r}",
                                param="judge")
    return list(out.values())
