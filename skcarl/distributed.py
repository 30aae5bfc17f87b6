"""Scaling out: helpers for data-parallel training (torch.distributed) and for inference on a Dask cluster.

Training on several GPUs or machines needs no helper: launch the script with ``torchrun`` and ``fit`` trains
data-parallel (see the ``distributed`` parameter). Searches run on a Dask cluster through joblib's ``dask``
backend, as for any scikit-learn estimator. This module adds what those engines do not know about skcarl:
which process writes files in a ``torchrun`` job, and inference over a ``dask.dataframe`` text column with the
model shipped once to each worker.

Dask is optional (``pip install skcarl[distributed]``) and imported only when :func:`dask_map` is called.
"""

from __future__ import annotations

import copy
import os
import threading
import uuid

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from . import _ddp

METHODS = ("transform", "predict", "predict_proba")
_MOVE_LOCK = threading.Lock()


def is_main_process() -> bool:
    """Whether this process is rank 0 of a ``torchrun`` job, or not part of one: the process that writes.

    Every rank of a data-parallel fit ends with the same fitted model; save it (or print the scores) once.

    Returns
    -------
    bool

    Examples
    --------
    >>> from skcarl.distributed import is_main_process
    >>> is_main_process()                     # a single process is the main one
    True
    >>> # in a torchrun script:
    >>> # model.fit(texts, va)
    >>> # if is_main_process():
    >>> #     model.save("models/va")
    """
    if _ddp.group_ready():
        return _ddp.rank() == 0
    if _ddp.launched_by_torchrun():  # before fit has initialised the group
        return os.environ["RANK"] == "0"
    return True


def dask_map(estimator, texts, method="transform", *, columns=None, device=None):
    """Apply a fitted estimator's ``method`` to a Dask text column, partition by partition.

    The estimator is sent to the cluster once: with a ``dask.distributed`` client it is scattered to every
    worker (``client.scatter(..., broadcast=True)``), so each worker unpickles one copy however many
    partitions it processes; without a client (the local schedulers) it enters the graph once as a
    ``dask.delayed`` object. Nothing is computed until you call ``.compute()`` (or write the result).

    Parameters
    ----------
    estimator : CARLEmbedder, CARLRegressor or CARLClassifier
        A fitted estimator.
    texts : dask.dataframe.Series of str
        The text column, e.g. ``ddf["text"]``.
    method : {"transform", "predict", "predict_proba"}, default="transform"
    columns : list of str or str or None, default=None
        Names of the output columns (a name, for a one-column output). By default ``emb_0, emb_1, ...`` for
        ``transform``, ``proba_<class>`` for ``predict_proba``, ``predict_0, ...`` for a multi-output
        ``predict`` and ``predict`` for a single one.
    device : str or None, default=None
        Where each worker runs the model: ``None`` keeps the device it has here (``device_``); ``"auto"``
        takes the worker's GPU if it has one (one GPU per worker: ``CUDA_VISIBLE_DEVICES``), else its CPU;
        or ``"cpu"``, ``"cuda"``, ... Each worker moves its copy once.

    Returns
    -------
    dask.dataframe.DataFrame or dask.dataframe.Series
        One row per text, with the index of ``texts`` (so that it joins back onto its data frame).

    Examples
    --------
    >>> import dask.dataframe as dd  # doctest: +SKIP
    >>> from dask.distributed import Client, LocalCluster  # doctest: +SKIP
    >>> from skcarl.distributed import dask_map
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> ddf = dd.read_parquet("texts/*.parquet")  # doctest: +SKIP
    >>> embeddings = dask_map(model, ddf["text"])  # doctest: +SKIP
    >>> embeddings.to_parquet("embeddings/")  # doctest: +SKIP
    """
    dd = _import("dask.dataframe")
    check_is_fitted(estimator, "network_")
    if method not in METHODS or not hasattr(estimator, method):
        available = [m for m in METHODS if hasattr(estimator, m)]
        raise ValueError(f"method={method!r} is not available for {type(estimator).__name__}; use one of "
                         f"{available}.")
    if not isinstance(texts, dd.Series):
        raise TypeError(f"texts must be a dask.dataframe.Series of str, e.g. ddf['text']; got "
                        f"{type(texts).__name__}.")
    # one text through the model here gives the output's width and dtype for Dask's metadata
    sample = np.asarray(getattr(estimator, method)(["meta"]))
    columns = _column_names(estimator, method, sample, columns)
    if sample.ndim == 1:
        meta = pd.Series(np.empty(0, dtype=sample.dtype), name=columns)
    else:
        meta = pd.DataFrame(np.empty((0, sample.shape[1]), dtype=sample.dtype), columns=columns)
    if device is not None:  # the workers move their copy; a local scheduler or an in-process worker would
        estimator = copy.deepcopy(estimator)  # otherwise move the caller's own estimator
    return texts.map_partitions(_apply, _ship(estimator), method, columns, sample.dtype, device, meta=meta)


def _import(name):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{name} is needed here but is not installed: pip install 'skcarl[distributed]' "
                          "(dask[dataframe] and distributed).") from exc


def _ship(estimator):
    """The estimator as Dask should pass it to the tasks: scattered to all workers, or one delayed object."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no client: a local scheduler
        client = None
    if client is not None:
        return client.scatter(estimator, broadcast=True, hash=False)
    delayed = _import("dask").delayed
    # a name of its own: Dask would otherwise hash the whole model to name the task
    return delayed(estimator, name=f"skcarl-estimator-{uuid.uuid4().hex}", traverse=False)


def _column_names(estimator, method, sample, columns):
    if columns is not None:
        if sample.ndim == 1:
            return columns if isinstance(columns, str) else list(columns)[0]
        columns = list(columns)
        if len(columns) != sample.shape[1]:
            raise ValueError(f"columns names {len(columns)} columns, but {method} returns {sample.shape[1]}.")
        return columns
    if sample.ndim == 1:
        return method
    if method == "transform":
        return [f"emb_{i}" for i in range(sample.shape[1])]
    if method == "predict_proba":
        return [f"proba_{c}" for c in estimator.classes_]
    return [f"{method}_{i}" for i in range(sample.shape[1])]


def _on_device(estimator, device):
    """The worker's copy of the estimator on ``device``; moved in place once, as all its tasks share it."""
    import torch

    from .training import resolve_device

    target = resolve_device(device)
    with _MOVE_LOCK:
        if torch.device(estimator.device_) != target:
            estimator.network_.to(target)
            estimator.device_ = target
    return estimator


def _apply(texts: pd.Series, estimator, method: str, columns, dtype, device=None):
    """One partition: the method's output as a frame (or series) with the partition's index."""
    if device is not None:
        estimator = _on_device(estimator, device)
    if len(texts) == 0:  # an empty partition (after a filter, say): the estimators refuse empty input
        output = np.empty((0,) if isinstance(columns, str) else (0, len(columns)), dtype=dtype)
    else:
        output = np.asarray(getattr(estimator, method)(texts.tolist()))
    if output.ndim == 1:
        return pd.Series(output, index=texts.index, name=columns)
    return pd.DataFrame(output, index=texts.index, columns=columns)
