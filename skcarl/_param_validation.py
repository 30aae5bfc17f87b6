"""Declarative parameter constraints, the shape of scikit-learn's ``_parameter_constraints``.

Each estimator class declares ``_parameter_constraints``, a dict ``{parameter: [constraint, ...]}`` (a subclass
merges its own entries into its parent's), and :func:`validate_parameter_constraints` checks a set of
parameters against it: a value is valid when it satisfies one constraint of its list. A constraint is ``None``
(the value None), a str (that very string), ``bool`` (a Python or NumPy bool), or one of the objects below.
An invalid value raises a ``ValueError`` in scikit-learn's words, naming the parameter, the estimator, what is
allowed and the value: ``The 'temperature' parameter of CARLEmbedder must be a float in the range (0, inf).
Got -0.1 instead.``

Why skcarl has its own checker rather than ``sklearn.utils._param_validation``: that module is private (it may
change in any scikit-learn release, and skcarl supports a range of them), it counts ``True`` as an int (so
``projection_dim=True`` would pass) and prints bounds as floats ("(0.0, inf)"), and three of skcarl's constraints
are neither intervals nor options: a device this machine has (with the reason it has not), ``va_range``'s
bounds, and the ``va_map`` and ``class_weight`` mappings; scikit-learn accepts such constraints only as
subclasses of its private ``_Constraint``. The tables have scikit-learn's shape and the messages its grammar,
so a move to a public scikit-learn checker would change the constraint objects, not the tables.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
from collections.abc import Mapping, Set

import numpy as np

from ._devices import parse_device, resolve_device

# The largest magnitude a float32 holds: the network computes in float32, so a target or a va_map point beyond
# it (or a span between two values beyond it) cannot be represented in training.
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Whether parameter checks may look at the machine (is this device here?). Inference runs on the fitted
# device_, so it checks the device parameter for what no machine could use, not for what this one lacks.
_machine_checks = contextvars.ContextVar("skcarl_machine_checks", default=True)


@contextlib.contextmanager
def inference_checks():
    """Within this block, :class:`Device` does not ask whether this machine has the device: a model fitted or
    saved on a GPU predicts on the device it was loaded to, whatever its parameter says."""
    token = _machine_checks.set(False)
    try:
        yield
    finally:
        _machine_checks.reset(token)


def validate_parameter_constraints(constraints: Mapping, params: Mapping, owner: str) -> None:
    """Raise a ``ValueError`` for the first parameter (in the table's order) that satisfies none of its
    constraints.

    Examples
    --------
    >>> from skcarl._param_validation import Interval, validate_parameter_constraints
    >>> table = {"temperature": [Interval(numbers.Real, 0, None, closed="neither")], "pooling": ["mean", "cls"]}
    >>> validate_parameter_constraints(table, {"temperature": 0.05, "pooling": "cls"}, "Model")
    >>> validate_parameter_constraints(table, {"temperature": 0, "pooling": "cls"}, "Model")
    Traceback (most recent call last):
    ...
    ValueError: The 'temperature' parameter of Model must be a float in the range (0, inf). Got 0 instead.
    """
    for name, allowed in constraints.items():
        value = params[name]
        allowed = [_as_constraint(c) for c in allowed]
        if any(c.is_satisfied_by(value) for c in allowed):
            continue
        described = [str(c) for c in allowed]
        expected = described[0] if len(described) == 1 else f"{', '.join(described[:-1])} or {described[-1]}"
        reasons = [reason for c in allowed if (reason := c.reason(value))]
        if reasons:
            expected += ": " + "; ".join(reasons)
        raise ValueError(f"The '{name}' parameter of {owner} must be {expected}. Got {value!r} instead.")


class Constraint:
    """What a parameter value may be: :meth:`is_satisfied_by`, and ``str`` for the error message."""

    description = ""

    def is_satisfied_by(self, value) -> bool:
        raise NotImplementedError

    def reason(self, value) -> str:
        """Why ``value`` fails, when the description alone does not say it ("" when it does)."""
        return ""

    def __str__(self):
        return self.description


class _Value(Constraint):
    def __init__(self, value):
        self.value = value
        self.description = repr(value)

    def is_satisfied_by(self, value):
        if self.value is None:
            return value is None
        return isinstance(value, str) and value == self.value  # an array or a number is never an option


class _Bool(Constraint):
    description = "a bool"

    def is_satisfied_by(self, value):
        return isinstance(value, (bool, np.bool_))


def _as_constraint(constraint) -> Constraint:
    if isinstance(constraint, Constraint):
        return constraint
    if constraint is bool:
        return _Bool()
    if constraint is None or isinstance(constraint, str):
        return _Value(constraint)
    raise TypeError(f"Unknown parameter constraint {constraint!r}.")


class Interval(Constraint):
    """A finite int or float (not a bool) between ``low`` and ``high`` (None: unbounded), ``closed`` on
    "both" ends, "left", "right" or "neither"; NumPy scalars count."""

    def __init__(self, kind, low, high, *, closed="both"):
        self.kind, self.low, self.high = kind, low, high
        self.low_open = low is None or closed in ("right", "neither")
        self.high_open = high is None or closed in ("left", "neither")
        self.description = (f"{'an int' if kind is numbers.Integral else 'a float'} in the range "
                            f"{'(' if self.low_open else '['}{'-inf' if low is None else low}, "
                            f"{'inf' if high is None else high}{')' if self.high_open else ']'}")

    def is_satisfied_by(self, value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.kind) or not _finite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


class Options(Constraint):
    """One of a few strings (and None when listed); compared as str or None only."""

    def __init__(self, options):
        self.options = tuple(options)
        self.description = "one of " + ", ".join(repr(o) for o in self.options)

    def is_satisfied_by(self, value):
        return (value is None and None in self.options) or (isinstance(value, str) and value in self.options)


class InstanceOf(Constraint):
    def __init__(self, cls, description: str):
        self.cls, self.description = cls, description

    def is_satisfied_by(self, value):
        return isinstance(value, self.cls)


class PathLike(Constraint):
    description = "a str or path-like"

    def is_satisfied_by(self, value):
        return isinstance(value, (str, os.PathLike)) or hasattr(value, "__fspath__")


class Device(Constraint):
    """A device this machine can run on (:func:`skcarl._devices.resolve_device`, the check that :func:`skcarl.load`
    and the command line use too); inside :func:`inference_checks`, a device that some machine could run on."""

    description = ("'auto', None, an int CUDA ordinal, or a device string or torch.device of a device this machine "
                   "has")

    def _problem(self, value):
        check = resolve_device if _machine_checks.get() else parse_device
        try:
            check(value)
        except (TypeError, ValueError) as exc:
            return str(exc).rstrip(".")
        return None

    def is_satisfied_by(self, value):
        return self._problem(value) is None

    def reason(self, value):
        return self._problem(value) or ""


class RangePairs(Constraint):
    """``(low, high)`` or an array of shape (n, 2), of finite numbers with low < high in every row."""

    description = "(low, high) or an array of shape (n_outputs, 2), of finite numbers with low < high"

    def is_satisfied_by(self, value):
        if isinstance(value, (str, bytes)):
            return False
        try:
            bounds = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        if bounds.shape != (2,) and not (bounds.ndim == 2 and bounds.shape[1] == 2 and len(bounds)):
            return False
        bounds = bounds.reshape(-1, 2)
        return bool(np.isfinite(bounds).all() and (bounds[:, 0] < bounds[:, 1]).all())


class ClassWeights(Constraint):
    """A non-empty mapping {class: weight} of finite weights >= 0 that a float32 holds."""

    description = "a dict {class: weight} of finite numbers >= 0"

    def is_satisfied_by(self, value):
        return isinstance(value, Mapping) and bool(value) and all(
            _real(weight) and 0 <= weight <= FLOAT32_MAX for weight in value.values())


class VAPoints(Constraint):
    """A non-empty mapping {label: point}: every point a sequence of finite numbers (or one number), all of one
    length."""

    description = "a dict {label: (valence, arousal, ...)} whose points are finite numbers, all of one length"

    def is_satisfied_by(self, value):
        if not isinstance(value, Mapping) or not value:
            return False
        lengths = set()
        for point in value.values():
            coordinates = [point] if _real(point) else point
            if isinstance(coordinates, (str, bytes, Mapping, Set)) or not hasattr(coordinates, "__len__") \
                    or getattr(coordinates, "ndim", 1) != 1 or len(coordinates) == 0:
                return False
            if not all(_real(v) and abs(v) <= FLOAT32_MAX / 2 for v in coordinates):
                return False
            lengths.add(len(coordinates))
        return len(lengths) == 1


def _real(value) -> bool:
    """A finite real number, not a bool (NumPy scalars included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and _finite(value)


def _finite(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:  # an int too large for a float
        return False
