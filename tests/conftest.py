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


# --- a headless browser (Debian's chromium driven by playwright), for the HTML reports ------------------------

import os  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

#: Where tests keep what a person may want to look at (screenshots); listed at the end of the run.
ARTIFACTS = Path(os.environ.get("PREIMAGE_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
_KEPT: list[Path] = []

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]


def keep_artifact(path: Path) -> Path:
    _KEPT.append(path)
    return path


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook
    if _KEPT:
        terminalreporter.write_sep("-", "test artefacts")
        for p in _KEPT:
            terminalreporter.write_line(str(p))


@pytest.fixture(scope="session")
def browser():
    """Headless chromium (never a downloaded browser: Debian's, at /usr/bin/chromium)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install "
                                   "'preimage[test]')")
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageCheck:
    """A browser tab that records console errors, page errors and failed requests."""

    def __init__(self, browser) -> None:  # noqa: ANN001
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def open(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def images(self) -> list[tuple[str, int]]:
        """(src, naturalWidth) of every <img>, after making the lazy ones load (as scrolling would)."""
        return self.page.evaluate("""async () => {
            const imgs = [...document.images];
            imgs.forEach(i => { i.loading = 'eager'; });
            await Promise.all(imgs.map(i => i.decode().catch(() => null)));
            return imgs.map(i => [i.getAttribute('src'), i.naturalWidth]);
        }""")

    def assert_all_images_load(self) -> int:
        imgs = self.images()
        broken = [src for src, w in imgs if not w > 0]
        assert not broken, f"images that did not load on {self.page.url}: {broken[:5]}"
        assert not self.errors, self.errors
        return len(imgs)

    def close(self) -> None:
        self.page.close()
