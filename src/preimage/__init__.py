"""preimage: natural pre-images of image representations (Mahendran & Vedaldi, IJCV 2016).

>>> import preimage
>>> rep = preimage.load("efficientnet_lite0", layer="blocks.3")
>>> result = preimage.invert(rep, "sample:chelsea", C=100)
>>> float(result.metrics["error"][0])  # ‖Φ(x)−Φ0‖/‖Φ0‖
"""

from .engine.optimize import Energy, optimize
from .errors import PreimageError
from .representations import Representation, Stage, list_models, load
from .result import Result
from .tasks.activation import caricature, maximize
from .tasks.inversion import invert

__all__ = ["Energy", "PreimageError", "Representation", "Result", "Stage", "caricature", "invert", "list_models",
           "load", "maximize", "optimize"]
__version__ = "0.1.0"
