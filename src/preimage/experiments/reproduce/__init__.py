"""The paper's experiments on any folder of images: ``cnn_layers`` (the IJCV quantitative protocol) and
``figures`` (the qualitative experiments, one HTML report)."""

from .cnn_layers import default_layers, list_images, run_cnn_layers
from .figures import SECTIONS, run_figures

__all__ = ["SECTIONS", "default_layers", "list_images", "run_cnn_layers", "run_figures"]
