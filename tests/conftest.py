"""Shared fixtures: small sizes, cached models, an isolated cache folder."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Caches (neuron statistics, ...) go to a temporary folder, never the user's.
    mp = pytest.MonkeyPatch()
    mp.setenv("PREIMAGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@functools.cache
def lite0_spec():
    """The embedded ImageNet EfficientNet-Lite0, built once per test session."""
    from preimage.representations import build

    return build("efficientnet_lite0")


def lite0(layer: str | None = None):
    """Φ at ``layer`` of the shared EfficientNet-Lite0 (the module is shared; it is frozen)."""
    from preimage.representations import Representation

    return Representation(lite0_spec(), layer)


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)


@functools.cache
def grey(name: str) -> np.ndarray:
    """A scikit-image sample as a float32 grey image in 0–255."""
    from skimage import color, data

    im = getattr(data, name)()
    im = color.rgb2gray(im[..., :3]) if im.ndim == 3 else im / 255.0
    return (im * 255).astype(np.float32)


def stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Correlation and relative error ‖a−b‖/‖b‖."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1]), float(np.linalg.norm(a - b) / np.linalg.norm(b))
