"""Shared fixtures: small sizes, cached models, an isolated cache folder."""

from __future__ import annotations

import functools

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
