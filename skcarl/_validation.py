"""Checks of the data (texts and continuous targets) with scikit-learn's wording; the parameters' are in
:mod:`skcarl._param_validation`, class targets in :mod:`skcarl._targets`."""

from __future__ import annotations

from collections.abc import Mapping, Set

import numpy as np

from ._param_validation import FLOAT32_MAX


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
