"""The paper's experiments on any folder of images: ``cnn_layers`` (the IJCV quantitative protocol),
``figures`` (the qualitative experiments, one HTML report) and ``hog_table`` (the HOG-family table)."""

from .cnn_layers import run_cnn_layers
from .figures import SECTIONS, run_figures

__all__ = ["SECTIONS", "run_cnn_layers", "run_figures"]
