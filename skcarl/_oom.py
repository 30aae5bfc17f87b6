"""Inference that survives the GPU running out of memory: a batch that does not fit is split in halves.

:func:`run_batches` runs one batch at a time; when CUDA (or any torch device) raises ``OutOfMemoryError`` it
frees the cached memory, halves the batch and tries again, down to a single text, and the later batches start
at the size that fitted. :func:`reports_oom_retries` wraps a public method (``transform``, ``predict``) so that
the retries of one call, over all its chunks of texts, share that size and are reported in one warning.
Training is not retried: an out-of-memory error in ``fit`` propagates and leaves the estimator as it was.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Iterable

import torch

from ._warnings import warn

__all__ = ["reports_oom_retries", "run_batches"]


class _Retries:
    """The batch size that fitted, and the size that first failed, during one public call."""

    def __init__(self):
        self.limit = None
        self.first_failure = None

    def warn(self) -> None:
        if self.first_failure is not None:
            warn(f"CUDA ran out of memory on a batch of {self.first_failure} texts; the texts were run in batches of "
                 f"at most {self.limit} instead. Set a lower batch_size to avoid the failed attempts.")


_active = threading.local()  # the _Retries of the current thread's public call, if any


def reports_oom_retries(method: Callable) -> Callable:
    """Decorate an inference method: its out-of-memory retries are reported once, when it returns."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        outer = getattr(_active, "retries", None)
        if outer is not None:  # nested: the outermost call reports
            return method(*args, **kwargs)
        _active.retries = retries = _Retries()
        try:
            result = method(*args, **kwargs)
        finally:
            _active.retries = None
        retries.warn()
        return result

    return wrapper


def run_batches(compute: Callable, batches: Iterable) -> None:
    """Call ``compute(index)`` for each index array of ``batches``, halving a batch that runs out of memory.

    ``compute`` must write its own results (its rows of an output array), so that a batch split in two gives the
    same rows. A single text that does not fit re-raises the error.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skcarl._oom import run_batches
    >>> seen = []
    >>> def compute(index):
    ...     if len(index) > 2:
    ...         raise torch.OutOfMemoryError("CUDA out of memory")
    ...     seen.append(index.tolist())
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     run_batches(compute, [np.arange(4), np.arange(4, 8)])
    >>> seen
    [[0, 1], [2, 3], [4, 5], [6, 7]]
    >>> str(caught[0].message)[:58]
    'CUDA ran out of memory on a batch of 4 texts; the texts we'
    """
    retries = getattr(_active, "retries", None)
    own = retries is None
    if own:
        retries = _Retries()
    for batch in batches:
        pending = deque([batch])
        while pending:
            index = pending.popleft()
            if retries.limit is not None and len(index) > retries.limit:
                pending.extendleft(reversed([index[i:i + retries.limit]
                                             for i in range(0, len(index), retries.limit)]))
                continue
            try:
                compute(index)
                continue
            except torch.OutOfMemoryError as exc:
                if len(index) == 1:
                    raise torch.OutOfMemoryError(
                        f"{exc}\nskcarl: the device ran out of memory even for a single text; free memory on the "
                        "device, lower max_length, or use device='cpu'.") from exc
            # out of the except block, so that the traceback no longer holds the failed batch's tensors
            _free_cached_memory()
            half = (len(index) + 1) // 2
            retries.first_failure = retries.first_failure or len(index)
            retries.limit = half if retries.limit is None else min(retries.limit, half)
            pending.extendleft([index[half:], index[:half]])
    if own:
        retries.warn()


def _free_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
