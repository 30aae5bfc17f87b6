"""Input and parameter checks with scikit-learn's wording, raised in ``fit`` (never in ``__init__``)."""

from __future__ import annotations

import numbers

import numpy as np


def check_texts(X, name: str = "X") -> list[str]:
    """A list of ``str`` from a list, tuple, 1-D array, pandas Series or other iterable of texts.

    A bare string is refused, as scikit-learn's text vectorizers refuse it: it is almost always one
    document passed where a list of documents was meant.
    """
    if isinstance(X, (str, bytes)):
        raise ValueError("Iterable over raw text documents expected, string object received.")
    if hasattr(X, "ndim") and getattr(X, "ndim", 1) != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of texts; got an array with shape {getattr(X, 'shape', None)}. "
            "Select the text column, e.g. df['text']."
        )
    try:
        texts = list(X)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of texts; got {type(X).__name__}.") from None
    if not texts:
        raise ValueError(f"{name} is empty: at least one text is required.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{name} must hold only strings; element {i} is {type(text).__name__} ({text!r:.60})."
            )
    return texts


def check_continuous_targets(y, n_samples: int) -> np.ndarray:
    """Float64 targets of shape (n_samples, n_outputs); 1-D y becomes one column."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "y must hold numbers (valence, arousal, ...); got values that cannot be read as floats."
        ) from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"y must be 1-D or 2-D (n_samples, n_outputs); got shape {np.shape(y)}.")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, {arr.shape[0]}]."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"y contains NaN or infinity ({int(bad.sum())} value(s)); the first is y[{row}, {col}].")
    return arr


class ParameterChecker:
    """Checks one estimator's parameters, naming the estimator in each message."""

    def __init__(self, estimator):
        self.owner = type(estimator).__name__
        self.params = estimator.get_params(deep=False)

    def _fail(self, name, expected):
        value = self.params[name]
        return ValueError(f"The '{name}' parameter of {self.owner} must be {expected}. Got {value!r} instead.")

    def number(self, name, low=None, high=None, *, low_open=False, high_open=False, integer=False, none=False):
        value = self.params[name]
        if value is None and none:
            return
        kind = numbers.Integral if integer else numbers.Real
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        expected = (f"{'an int' if integer else 'a float'} in the range "
                    f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}")
        if none:
            expected += " or None"
        if isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(float(value)):
            raise self._fail(name, expected)
        if low is not None and (value < low or (low_open and value == low)):
            raise self._fail(name, expected)
        if high is not None and (value > high or (high_open and value == high)):
            raise self._fail(name, expected)

    def option(self, name, options):
        if self.params[name] not in options:
            raise self._fail(name, "one of " + ", ".join(repr(o) for o in options))

    def boolean(self, name):
        if not isinstance(self.params[name], (bool, np.bool_)):
            raise self._fail(name, "a bool")
