"""Affect labels: their scale, the label temperature, and the VA labeling system for class labels."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.spatial.distance import pdist
from torch import nn

from ._va_table import DEFAULT_VA_TABLE

# τ_y = AUTO_LABEL_TEMPERATURE_FRACTION × median pairwise distance of the scaled training labels.
# 0.14 puts τ_y ≈ 0.02 on EmoBank, where a reconstruction run found 0.02 better than 0.1 and 0.005.
AUTO_LABEL_TEMPERATURE_FRACTION = 0.14
# Pairwise distances are estimated on at most this many labels (O(n²) otherwise).
_MAX_LABELS_FOR_MEDIAN = 2000


def resolve_va_range(y: np.ndarray, va_range) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper end of each label column.

    ``va_range=None`` takes the training minimum and maximum; ``(low, high)`` applies to every column;
    an array of shape (n_columns, 2) gives one range per column.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.va_labels import resolve_va_range, scale_labels
    >>> y = np.array([[2.0, 7.0], [4.0, 3.0]])
    >>> low, high = resolve_va_range(y, (1, 9))
    >>> scale_labels(y, low, high)
    array([[0.125, 0.75 ],
           [0.375, 0.25 ]], dtype=float32)
    >>> resolve_va_range(y, None)                                   # the training minimum and maximum
    (array([2., 3.]), array([4., 7.]))
    """
    if va_range is None:
        return y.min(axis=0).astype(np.float64), y.max(axis=0).astype(np.float64)
    bounds = np.asarray(va_range, dtype=np.float64)
    if bounds.shape == (2,):
        bounds = np.tile(bounds, (y.shape[1], 1))
    if bounds.shape != (y.shape[1], 2):
        raise ValueError(
            f"va_range must be (low, high) or one (low, high) per label column ({y.shape[1]} columns); "
            f"got shape {bounds.shape}."
        )
    low, high = bounds[:, 0], bounds[:, 1]
    if np.any(high <= low):
        raise ValueError(f"va_range must have low < high for every column; got {va_range!r}.")
    outside = (y < low) | (y > high)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise ValueError(
            f"{int(outside.sum())} label value(s) lie outside va_range={va_range!r}; the first is "
            f"y[{row}, {col}] = {float(y[row, col])!r}."
        )
    return low, high


def scale_labels(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map every column to [0, 1]; a constant column (high == low) maps to 0.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.va_labels import scale_labels
    >>> scale_labels(np.array([[1.0], [5.0], [9.0]]), np.array([1.0]), np.array([9.0])).ravel()
    array([0. , 0.5, 1. ], dtype=float32)
    """
    span = np.where(high > low, high - low, 1.0)
    return ((y - low) / span).astype(np.float32)


def auto_label_temperature(y_scaled: np.ndarray, rng: np.random.Generator) -> float:
    """τ_y for ``label_temperature="auto"``: a fixed fraction of the median pairwise label distance.

    Labels are narrow in real corpora (EmoBank, min-max scaled: median distance ≈ 0.15), so a fixed τ_y
    that suits one corpus gives nearly flat targets on another. When more than half the pairs tie at
    distance 0 (few distinct labels), the median over distinct pairs is used instead.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.va_labels import auto_label_temperature
    >>> y = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])           # pairwise distances 1, 1, 1.414
    >>> round(auto_label_temperature(y, np.random.default_rng(0)), 3)  # 0.14 x median
    0.14
    """
    if len(y_scaled) > _MAX_LABELS_FOR_MEDIAN:
        y_scaled = y_scaled[rng.choice(len(y_scaled), _MAX_LABELS_FOR_MEDIAN, replace=False)]
    # exact differences: with ‖a‖² + ‖b‖² − 2a·b, tied labels got distances of rounding noise (~1e-8) instead
    # of 0, and many ties gave a τ_y of that size instead of the median over distinct pairs
    d = pdist(y_scaled.astype(np.float64))
    median = np.median(d) if d.size else 0.0
    if median <= 0:
        positive = d[d > 1e-12]
        median = np.median(positive) if positive.size else 1.0
    return float(AUTO_LABEL_TEMPERATURE_FRACTION * median)


# ---------------------------------------------------------------------- label rows → points of the label space
class ContinuousLabels(nn.Module):
    """Continuous labels are their own points: the rows the queue stores are the scaled labels.

    Examples
    --------
    >>> import torch
    >>> from skcarl.va_labels import ContinuousLabels
    >>> ContinuousLabels()(torch.tensor([[0.2, 0.9]]))
    tensor([[0.2000, 0.9000]])
    """

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows

    def constrain(self) -> None:
        pass


class ClassAnchors(nn.Module):
    """The VA labeling system: each class is an anchor point of the (scaled) valence–arousal plane.

    A text's label row holds its class memberships, summing to 1 (one-hot, or 1/k on each of its k labels for
    multi-label rows), so its point is the mean of its classes' anchors. The queue stores membership rows,
    not points, so that learnable anchors (``va_map="learn"``) are always read at their current position.

    Parameters
    ----------
    anchors : (n_classes, n_dims) tensor
        Starting points, scaled to [0, 1].
    learn : bool
        Make the anchors trainable parameters; they move with the gradient of L_cont and are kept inside
        [0, 1] after every step.

    Examples
    --------
    >>> import torch
    >>> from skcarl.va_labels import ClassAnchors
    >>> anchors = ClassAnchors(torch.tensor([[0.98, 0.82], [0.05, 0.29]]))   # joy, sadness
    >>> anchors(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))                     # a joy text; a joy+sadness text
    tensor([[0.9800, 0.8200],
            [0.5150, 0.5550]])
    """

    def __init__(self, anchors: torch.Tensor, learn: bool = False):
        super().__init__()
        self.anchors = nn.Parameter(anchors.float().clone(), requires_grad=learn)
        self.anchors.no_weight_decay = True

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self.anchors

    @torch.no_grad()
    def constrain(self) -> None:
        if self.anchors.requires_grad:
            self.anchors.clamp_(0.0, 1.0)


# ---------------------------------------------------------------------- the default table and user maps
def normalize_label_name(label) -> str:
    """How class names are matched against the default table: trimmed, lower case, '_' and '-' as spaces.

    Examples
    --------
    >>> from skcarl.va_labels import normalize_label_name
    >>> normalize_label_name("  Joy "), normalize_label_name("Anti_Cipation")
    ('joy', 'anti cipation')
    """
    return str(label).strip().lower().replace("_", " ").replace("-", " ")


def class_anchor_points(classes, va_map, va_range, rng: np.random.Generator):
    """Anchor points of ``classes`` under ``va_map``, before and after scaling.

    Parameters
    ----------
    classes : sequence
        The class labels, in ``classes_`` order.
    va_map : None, dict or "learn"
        ``None``: the default table (:data:`DEFAULT_VA_TABLE`); every class must be in it. A dict:
        ``{label: (valence, arousal, ...)}`` on any scale, with every class as a key. ``"learn"``: the default
        table where it knows the class; the other classes start at the mean of the known ones (the centre
        (0.5, 0.5) if none is known) plus a jitter of 1e-3 so that they can separate.
    va_range : None, (low, high) or (n_dims, 2) array
        Scale of the points. ``None`` means [0, 1] for the default table and ``"learn"``, and the min/max of
        the given points for a dict.

    Returns
    -------
    raw : (n_classes, n_dims) ndarray
        The points on the user's scale.
    scaled : (n_classes, n_dims) ndarray
        The points mapped to [0, 1].
    low, high : ndarray
        The scale used.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.va_labels import class_anchor_points
    >>> raw, scaled, low, high = class_anchor_points(["joy", "sadness"], None, None, np.random.default_rng(0))
    >>> raw.tolist()                                                  # NRC VAD Lexicon (valence, arousal)
    [[0.98, 0.824], [0.052, 0.288]]
    >>> _, scaled, _, _ = class_anchor_points(["up", "down"], {"up": (9, 9), "down": (1, 1)}, (1, 9), None)
    >>> scaled.tolist()
    [[1.0, 1.0], [0.0, 0.0]]
    """
    if isinstance(va_map, Mapping):
        missing = [c for c in classes if c not in va_map]
        if missing:
            raise ValueError(f"va_map has no point for the class(es) {missing!r}; give one (valence, arousal) "
                             f"per class. Classes found in y: {list(classes)!r}.")
        raw = np.asarray([np.atleast_1d(np.asarray(va_map[c], dtype=np.float64)) for c in classes])
        if raw.ndim != 2 or not np.isfinite(raw).all():
            raise ValueError("Every va_map value must be a finite (valence, arousal, ...) tuple of one length.")
        low, high = resolve_va_range(raw, va_range)
        return raw, scale_labels(raw, low, high), low, high
    known = {c: DEFAULT_VA_TABLE.get(normalize_label_name(c)) for c in classes}
    unknown = [c for c, point in known.items() if point is None]
    if va_map is None and unknown:
        raise ValueError(
            f"The class(es) {unknown!r} are not in skcarl's default valence-arousal table. Pass "
            "va_map={label: (valence, arousal)} with a point for every class, or va_map='learn' to learn "
            f"their points. Known names: {sorted(DEFAULT_VA_TABLE)}."
        )
    known_points = np.asarray([p for p in known.values() if p is not None], dtype=np.float64).reshape(-1, 2)
    start = known_points.mean(0) if len(known_points) else np.full(2, 0.5)
    raw = np.asarray([known[c] if known[c] is not None else start + rng.normal(0, 1e-3, 2) for c in classes],
                     dtype=np.float64)
    raw = np.clip(raw, 0.0, 1.0)
    low, high = resolve_va_range(raw, (0.0, 1.0) if va_range is None else va_range)
    return raw, scale_labels(raw, low, high), low, high
