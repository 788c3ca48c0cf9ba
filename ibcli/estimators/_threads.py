"""Worker counts and thread limits shared by the estimators that split their sums over threads
(kde, sp, renyi)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_limits

from .errors import EstimatorInputError

# torch is imported inside single_threaded_kernels (deferred on purpose): the registry loads
# the estimators for `ibcli --help` and the CLI's options, which start without torch.

__all__ = ["default_workers", "workers", "single_threaded_kernels"]


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def workers(value) -> int:
    """`value` as a worker count; None: `default_workers()`.

    Raises:
        EstimatorInputError: not a positive integer.
    """
    if value is None:
        return default_workers()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise EstimatorInputError(f"workers must be a positive integer; got {value!r}")
    return int(value)


@contextmanager
def single_threaded_kernels():
    """BLAS and torch kernels on one thread each while our own workers split the
    blocks: no oversubscription, no per-operation thread barriers (which stall
    badly when other processes share the cores)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(prev)
