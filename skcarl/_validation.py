"""Input and parameter checks with scikit-learn's wording, raised in ``fit`` (never in ``__init__``)."""

from __future__ import annotations

import contextlib
import contextvars
import numbers
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
    """Within this block, :class:`ParameterChecker` checks ``device`` without asking whether this machine has
    it: a model fitted or saved on a GPU predicts on the device it was loaded to, whatever its parameter says."""
    token = _machine_checks.set(False)
    try:
        yield
    finally:
        _machine_checks.reset(token)


def check_texts(X, name: str = "X", *, min_samples: int = 1, owner: str | None = None) -> list[str]:
    """A list of ``str`` from a list, tuple, 1-D array, pandas Series or other iterable of texts.

    What is accepted, and what is refused (every message names the parameter, the element or the value):

    - Any ordered iterable of ``str``: lists, tuples, 1-D arrays, pandas Series (read by position, not by
      index), iterators and generators. A generator is consumed: it is read once into a list.
    - Empty and whitespace-only strings are valid texts. The tokenizer drops whitespace, so ``""``, ``" "``
      and ``"\t\n"`` all become the special tokens alone and share one embedding.
    - Any Unicode that can be encoded as UTF-8 (emoji, combining marks, right-to-left text, zero-width and
      control characters, NUL); the tokenizer normalises or drops what it does not know.
    - Refused: a bare string or bytes (one document where a list of documents was meant, as scikit-learn's
      text vectorizers refuse it), 2-D arrays and DataFrames, sets (no order to match rows with y), dicts
      (iterating gives their keys), an empty input, fewer than ``min_samples`` texts, any element that is not
      a ``str`` (``None``, NaN, numbers, bytes: the first one is named), and text holding lone surrogates
      (from decoding with ``errors="surrogateescape"``), which no tokenizer can encode.

    Examples
    --------
    >>> from skcarl._validation import check_texts
    >>> check_texts(t.strip() for t in [" so happy ", "sad"])
    ['so happy', 'sad']
    >>> check_texts(["fine", None, 3])
    Traceback (most recent call last):
    ...
    TypeError: X must hold only strings; element 1 is NoneType (None).
    """
    if isinstance(X, (str, bytes)):
        raise ValueError("Iterable over raw text documents expected, string object received.")
    if hasattr(X, "ndim") and getattr(X, "ndim", 1) != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of texts; got an array with shape {getattr(X, 'shape', None)}. "
            "Select the text column, e.g. df['text']."
        )
    if isinstance(X, Set):
        raise TypeError(f"{name} is a {type(X).__name__}, which has no fixed order: its texts could not be matched "
                        "with y or with the rows of the output. Pass a list, tuple, 1-D array or pandas Series.")
    if isinstance(X, Mapping):
        raise TypeError(f"{name} is a {type(X).__name__}: iterating it gives its keys, not texts. Pass the texts "
                        "themselves, e.g. data['text'].")
    try:
        texts = list(X)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of texts; got {type(X).__name__}.") from None
    if not texts:
        raise ValueError(f"{name} is empty: at least one text is required.")
    if len(texts) < min_samples:
        raise ValueError(f"Found {len(texts)} text{'s' if len(texts) != 1 else ''} while a minimum of {min_samples} "
                         f"is required by {owner or 'this estimator'}: contrastive learning compares texts with "
                         "each other.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{name} must hold only strings; element {i} is {type(text).__name__} ({text!r:.60})."
            )
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"{name}[{i}] is not valid Unicode: a lone surrogate {text[exc.start]!r} at character "
                    f"{exc.start}, as left by decoding bytes with errors='surrogateescape'. Decode the text "
                    "with the right encoding, or replace such characters, e.g. "
                    "text.encode('utf-8', 'replace').decode('utf-8')."
                ) from None
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
    huge = np.abs(arr) > FLOAT32_MAX / 2  # the span of two such values could exceed float32 as well
    if huge.any():
        row, col = np.argwhere(huge)[0]
        raise ValueError(f"y holds {int(huge.sum())} value(s) too large for training in float32 (|y| must stay "
                         f"below {FLOAT32_MAX / 2:.3g}); the first is y[{row}, {col}] = {float(arr[row, col])!r}. "
                         "Rescale y, e.g. divide it by a power of ten or take its logarithm.")
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
        if isinstance(value, bool) or not isinstance(value, kind) or not _finite(value):
            raise self._fail(name, expected)
        if low is not None and (value < low or (low_open and value == low)):
            raise self._fail(name, expected)
        if high is not None and (value > high or (high_open and value == high)):
            raise self._fail(name, expected)

    def option(self, name, options):
        value = self.params[name]  # compared as str or None only: an array or a number is never an option
        if not ((value is None and None in options) or (isinstance(value, str) and value in options)):
            raise self._fail(name, "one of " + ", ".join(repr(o) for o in options))

    def boolean(self, name):
        if not isinstance(self.params[name], (bool, np.bool_)):
            raise self._fail(name, "a bool")

    def range_pairs(self, name):
        """None, ``(low, high)`` or an array of shape (n, 2) of finite numbers with low < high in every row."""
        value = self.params[name]
        if value is None:
            return
        expected = "None, (low, high) or an array of shape (n_outputs, 2), of finite numbers with low < high"
        if isinstance(value, (str, bytes)):
            raise self._fail(name, expected)
        try:
            bounds = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise self._fail(name, expected) from None
        if bounds.shape != (2,) and not (bounds.ndim == 2 and bounds.shape[1] == 2 and len(bounds)):
            raise self._fail(name, expected)
        bounds = bounds.reshape(-1, 2)
        if not np.isfinite(bounds).all() or not (bounds[:, 0] < bounds[:, 1]).all():
            raise self._fail(name, expected)

    def device(self, name="device"):
        """A device this machine can run on (:func:`skcarl._devices.resolve_device`, the check that
        :func:`skcarl.load` and the command line use too); inside :func:`inference_checks`, a device that
        some machine could run on."""
        value = self.params[name]
        check = resolve_device if _machine_checks.get() else parse_device
        try:
            check(value)
        except (TypeError, ValueError) as exc:
            raise self._fail(name, "'auto', None, an int CUDA ordinal, or a device string or torch.device of a "
                                   f"device this machine has: {str(exc).rstrip('.')}") from None

    def class_weight(self, name="class_weight"):
        """None, "balanced", or a mapping {class: weight} of finite weights >= 0 (a float32 must hold them)."""
        value = self.params[name]
        if value is None or (isinstance(value, str) and value == "balanced"):
            return
        expected = "None, 'balanced' or a dict {class: weight} of finite numbers >= 0"
        if not isinstance(value, Mapping) or not value:
            raise self._fail(name, expected)
        for weight in value.values():
            if not _real(weight) or not 0 <= weight <= FLOAT32_MAX:
                raise self._fail(name, expected)

    def va_map(self, name="va_map"):
        """None, "learn", or a non-empty mapping {label: point}: every point a sequence of finite numbers (or
        one number), all of one length."""
        value = self.params[name]
        if value is None or (isinstance(value, str) and value == "learn"):
            return
        expected = ("None, 'learn' or a dict {label: (valence, arousal, ...)} whose points are finite numbers, "
                    "all of one length")
        if not isinstance(value, Mapping) or not value:
            raise self._fail(name, expected)
        lengths = set()
        for point in value.values():
            coordinates = [point] if _real(point) else point
            if isinstance(coordinates, (str, bytes, Mapping, Set)) or not hasattr(coordinates, "__len__") \
                    or getattr(coordinates, "ndim", 1) != 1 or len(coordinates) == 0:
                raise self._fail(name, expected)
            if not all(_real(v) and abs(v) <= FLOAT32_MAX / 2 for v in coordinates):
                raise self._fail(name, expected)
            lengths.add(len(coordinates))
        if len(lengths) > 1:
            raise self._fail(name, expected)

    def random_state(self, name="random_state"):
        value = self.params[name]
        if value is None or isinstance(value, np.random.RandomState):
            return
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= 2**32 - 1:
            return
        raise self._fail(name, "an int in the range [0, 4294967295], a numpy.random.RandomState instance or None")


def _real(value) -> bool:
    """A finite real number, not a bool (NumPy scalars included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and _finite(value)


def _finite(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:  # an int too large for a float
        return False
