"""Class targets: single-label vectors, multi-label indicator matrices and lists of label sets."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import DataConversionWarning

from ._warnings import warn


class MixedLabelTypesError(TypeError, ValueError):
    """Class labels of more than one kind (strings and numbers): no order or equality holds between them.

    A ``TypeError`` (the labels' types) and a ``ValueError`` (scikit-learn's ``unique_labels`` raises one for
    the same case), so that either ``except`` catches it.
    """


@dataclass
class ClassTargets:
    """Parsed class targets.

    ``membership`` (n, n_classes) rows sum to 1 (one-hot, or spread evenly over a multi-label row's labels;
    an empty multi-label row spreads over all classes, i.e. sits at the mean of the anchors). ``indicator``
    is the 0/1 matrix, ``indices`` the class index of single-label rows.
    """

    classes: np.ndarray
    multilabel: bool
    indicator: np.ndarray
    indices: np.ndarray | None

    @property
    def membership(self) -> np.ndarray:
        counts = self.indicator.sum(1, keepdims=True)
        uniform = np.full_like(self.indicator, 1.0 / self.indicator.shape[1], dtype=np.float32)
        return np.where(counts > 0, self.indicator / np.maximum(counts, 1), uniform).astype(np.float32)


def _is_label_collection(value) -> bool:
    return isinstance(value, (list, tuple, set, frozenset))


def check_class_targets(y, n_samples: int) -> ClassTargets:
    """Parse ``y`` into classes and membership rows, with sklearn-style errors."""
    if getattr(y, "ndim", 1) > 2:  # an array; a list is label rows or label sets, never a 3-D array
        raise ValueError(f"y must be 1-D or 2-D (class labels, or an indicator matrix of shape (n_samples, "
                         f"n_classes)); got shape {np.shape(y)}.")
    columns = getattr(y, "columns", None)
    if getattr(y, "ndim", 1) == 2 and np.shape(y)[1] == 1:
        warn("A column-vector y was passed when a 1-D array was expected; it is read as one label per row. Use "
             "y.ravel() to silence this warning.", DataConversionWarning)
        y, columns = np.asarray(y).ravel(), None
    if columns is not None or getattr(y, "ndim", 1) == 2:
        indicator = np.asarray(y)
        if indicator.ndim != 2:
            raise ValueError(f"y must be 1-D labels or a 2-D indicator matrix; got shape {indicator.shape}.")
        _check_length(len(indicator), n_samples)
        if not np.isin(indicator, (0, 1)).all():
            raise ValueError("A 2-D y is read as a multi-label indicator matrix and must hold only 0 and 1.")
        classes = np.asarray(list(columns)) if columns is not None else np.arange(indicator.shape[1])
        return ClassTargets(classes, True, indicator.astype(np.float32), None)
    labels = list(y)
    _check_length(len(labels), n_samples)
    if labels and all(_is_label_collection(row) for row in labels):
        _check_one_kind([label for row in labels for label in row], "y's label sets")
        distinct = {label for row in labels for label in row}
        try:  # numbers in numeric order, as MultiLabelBinarizer and the single-label path give them
            classes = np.asarray(sorted(distinct))
        except TypeError:
            classes = np.asarray(sorted(distinct, key=str))
        position = {label: i for i, label in enumerate(classes.tolist())}
        indicator = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for i, row in enumerate(labels):
            indicator[i, [position[label] for label in row]] = 1.0
        return ClassTargets(classes, True, indicator, None)
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, float) and np.isnan(label)) or _is_label_collection(label):
            raise ValueError(f"y[{i}] = {label!r} is not a class label.")
    if getattr(y, "dtype", np.dtype(object)).kind == "O":  # a typed array holds one kind of label
        _check_one_kind(labels, "y")
    try:
        classes, indices = np.unique(np.asarray(labels), return_inverse=True)
    except TypeError:
        raise MixedLabelTypesError("The class labels in y mix types that cannot be sorted or compared.") from None
    indicator = np.zeros((len(labels), len(classes)), dtype=np.float32)
    indicator[np.arange(len(labels)), indices] = 1.0
    return ClassTargets(classes, False, indicator, indices.reshape(-1))


def _label_kind(label) -> str:
    if isinstance(label, str):
        return "string"
    if isinstance(label, (numbers.Number, np.bool_)):
        return "number"
    return type(label).__name__


def _check_one_kind(labels, where: str) -> None:
    """Refuse labels that mix strings, numbers and other types: NumPy would turn them all into strings, so that
    ``1`` and ``"1"`` became one class and ``classes_`` held neither."""
    first = {}
    for i, label in enumerate(labels):
        first.setdefault(_label_kind(label), (i, label))
    if len(first) > 1:
        kinds = sorted(first)
        examples = "; ".join(f"{kind}: {first[kind][1]!r}" for kind in kinds)
        raise MixedLabelTypesError(
            f"Mix of label input types ({' and '.join(kinds)}) in {where}: the class labels mix types, which cannot "
            f"be sorted or compared ({examples}). Give every label the same type, e.g. all strings.")


def _check_length(n_targets: int, n_samples: int) -> None:
    if n_targets != n_samples:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n_samples}, {n_targets}].")
