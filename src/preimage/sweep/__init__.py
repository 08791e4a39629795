"""The sweep engine: many independent jobs (a task on a model's layer, for targets or images), grouped into
batches of equal shape, run in-process or on a Ray cluster, each result stored atomically under a key of its
whole configuration (``report.store``), so that reruns compute only what is missing. Every command that writes
results runs through it, a single picture as a one-job sweep."""

from .backends import LocalBackend, RayBackend, backend
from .jobs import Job, Model
from .run import Failure, SweepResult, run_sweep

__all__ = ["Failure", "Job", "LocalBackend", "Model", "RayBackend", "SweepResult", "backend", "run_sweep"]
