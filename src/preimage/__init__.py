"""preimage: natural pre-images of image representations (Mahendran & Vedaldi, IJCV 2016).

One call per picture; a model is a name or any ``nn.Module``; results show themselves in a notebook.

>>> import preimage
>>> r = preimage.maximize("efficientnet_lite0", "blocks.4:5")          # channel 5 of blocks.4
>>> r = preimage.invert("efficientnet_lite0", "sample:chelsea", layer="blocks.3")
>>> float(r.metrics["error"][0])                                       # ‖Φ(x)−Φ0‖/‖Φ0‖
>>> c = preimage.check("efficientnet_lite0", "blocks.4:0-7", "photos/")  # trust measures, c.flagged
>>> r = preimage.accentuate("efficientnet_lite0", "sample:chelsea", "class:1", reg_weight=[0.3, 3])  # a goldfish cat
>>> r = preimage.maximize(my_model, preimage.Channel("layer3", 5) - 0.5 * preimage.Channel("layer3", 7),
...                       param=preimage.Fourier(), transforms=[preimage.Jitter(8), preimage.Scale(0.9, 1.1)])

Images everywhere (inputs, ``init``, results) are float tensors N×C×H×W in 0–255.
"""

from __future__ import annotations

from typing import Any

from .engine.optimize import Energy, optimize
from .engine.param import Fourier, Maco, Pixel, Pyramid
from .engine.priors import BNPrior
from .engine.schedules import Stage
from .engine.styles import STYLES, Style
from .engine.targets import Channel, Class, Concept, Direction, Diversity, LogProb, Neuron, Objective
from .engine.transforms import Crops, Flip, Jitter, Noise, Rotate, Scale
from .errors import PreimageError
from .images import load_image
from .report.result import Result
from .representations import ModelLike, Representation, list_models, load, model_spec
from .representations.layers import layer_rows
from .tasks import concepts
from .tasks.accentuate import accentuate
from .tasks.activation import caricature, maximize
from .tasks.check import CheckResult, check
from .tasks.inversion import invert

__all__ = ["STYLES", "BNPrior", "Channel", "CheckResult", "Class", "Concept", "Crops", "Direction", "Diversity",
           "Energy", "Flip", "Fourier", "Jitter", "LogProb", "Maco", "Neuron", "Noise", "Objective", "Pixel",
           "PreimageError", "Pyramid", "Representation", "Result", "Rotate", "Scale", "Stage", "Style",
           "accentuate", "caricature", "check", "concepts", "invert", "layers", "list_models", "load",
           "load_image", "maximize", "optimize"]
__version__ = "0.1.0"


def layers(model: ModelLike, *, size: int | None = None, **load_kw: Any) -> list[dict[str, Any]]:
    """Every layer of a model with its output shape, stride and receptive field, measured on the network (what
    ``preimage layers`` lists): one dict per layer {name, type, shape, stride, receptive_field, global_field,
    aliases, layout, tokens}. model: a name or any nn.Module (``load_kw``: ``preimage.load``'s options)."""
    spec = model_spec(model, **load_kw)
    return layer_rows(spec, (size, size) if size else None)
