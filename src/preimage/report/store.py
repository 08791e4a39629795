"""The keyed store: one folder per job result, ``ROOT/<key[:2]>/<key>/``, holding the result's files and a
``record.json`` written last, which lists every file with its SHA-256; and what names a result: its configuration
(``job_config``: task, model, layer, targets, images, options, package version, sources' digest) and the key
that digests it.

A result counts as finished only if its record reads, names its own key, and every file it lists is there
with that digest: a half-written or damaged result is never trusted, it is computed again. Every file is
written atomically (a temporary, then a rename); leftovers of interrupted writes are removed by ``clean``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..images import atomic_write_bytes, fingerprint

RECORD = "record.json"
#: Bumped when what a stored result holds changes, so older results are recomputed rather than misread.
STORE_FORMAT = 2


def version() -> str:
    """The installed package's version (``0+source`` when running from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v

    try:
        return _v("preimage")
    except PackageNotFoundError:
        return "0+source"


def sources_digest(root: Path) -> str:
    """16 hex digits of SHA-256 over the ``*.py`` files below ``root`` (relative path and bytes, sorted)."""
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def code_digest() -> str:
    """The package's own ``sources_digest``, part of every key: the version is not bumped for each change that
    alters results, so without it a store made by older code would serve its pictures for the same arguments."""
    return sources_digest(Path(__file__).resolve().parents[1])


def canonical(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal configurations give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"a job option must be a JSON value, got {type(o).__name__}")


def job_config(task: str, model: str, layer: str | None, units: Sequence[Any] = (), images: Sequence[str] = (),
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a result depends on, as JSON values: the task, the model's id (name and weights digest), the
    layer, the targets (units or objective specs), the images' contents (as digests), the options (seed
    included), the package's version and its sources' digest (``code_digest``)."""
    return {"format": STORE_FORMAT, "version": version(), "code": code_digest(), "task": task, "model": model,
            "layer": layer, "units": list(units),
            "images": [s if s.startswith("tensor:") else fingerprint(s) for s in images],
            "options": json.loads(canonical(options or {}))}


def config_key(config: dict[str, Any]) -> str:
    """The result's name in the store: 32 hex digits of SHA-256 of its configuration."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:32]


@dataclass
class Output:
    """What a job returns: a JSON record (metrics, sizes, ...) and named files (PNG, NPY bytes)."""

    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class Store:
    """Finished job results under ``root``, by key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def file(self, key: str, name: str) -> Path:
        """Where a result's file lives (for pages that link to it)."""
        return self.folder(key) / name

    def load(self, key: str, verify: bool = True) -> dict[str, Any] | None:
        """The record of a finished result, or None if it is absent, incomplete or damaged.

        verify: check every file's digest (else only that it exists with its recorded size)."""
        try:
            rec = json.loads((self.folder(key) / RECORD).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("key") != key or rec.get("format") != STORE_FORMAT:
            return None
        files = rec.get("files")
        if not isinstance(files, dict):
            return None
        for name, meta in files.items():
            path = self.folder(key) / name
            try:
                if verify:
                    ok = hashlib.sha256(path.read_bytes()).hexdigest() == meta.get("sha256")
                else:
                    ok = path.stat().st_size == meta.get("bytes")
            except (OSError, AttributeError):
                return None
            if not ok:
                return None
        return rec

    def save(self, config: dict[str, Any], output: Output, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a result under the key of its configuration: its files first, then the record that marks it
        finished (its key, its configuration, its result and every file's SHA-256). Returns the record."""
        key = config_key(config)
        folder = self.folder(key)
        if folder.exists() and self.load(key, verify=False) is None:
            shutil.rmtree(folder, ignore_errors=True)  # remains of a damaged result: start clean
        files = {}
        for name, data in output.files.items():
            atomic_write_bytes(folder / name, data)
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        rec = {"key": key, "format": STORE_FORMAT, "job": config, "result": output.record, "files": files,
               **(extra or {})}
        atomic_write_bytes(folder / RECORD, (json.dumps(rec, indent=1) + "\n").encode())
        return rec

    def clean(self) -> int:
        """Remove leftovers of interrupted atomic writes (``.NAME.XXXX.part``); they are never read."""
        n = 0
        if self.root.is_dir():
            for p in self.root.glob("*/*/.*.part"):
                p.unlink(missing_ok=True)
                n += 1
        return n
