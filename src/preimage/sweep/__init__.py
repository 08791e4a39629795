"""The sweep engine: many independent jobs (a task on a model's layer, for units or images), grouped into
batches of equal shape, run in-process or on a Ray cluster, each result stored atomically under a key of its
whole configuration, so that reruns compute only what is missing."""

from .backends import LocalBackend, RayBackend, backend
from .jobs import Job, Model
from .run import Failure, SweepResult, run_sweep
from .store import Output, Store

__all__ = ["Failure", "Job", "LocalBackend", "Model", "Output", "RayBackend", "Store", "SweepResult", "backend",
           "run_sweep"]
