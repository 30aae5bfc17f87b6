"""What ``fit`` learns from y: label rows for L_cont, the points they map to, and an optional supervised task.

The estimators build a :class:`PreparedTargets` in ``_prepare_targets``: the embedder from continuous labels or
classes, the regressor from continuous targets plus a regression task, the classifier from classes plus a
classification task. The fit driver (:mod:`skcarl._base`) reads only this object, never the estimator's own
parameters (``va_map``, ``head_init``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ._targets import ClassTargets, check_class_targets
from ._validation import check_continuous_targets
from ._warnings import warn
from .training import SupervisedTask
from .va_labels import ClassAnchors, ContinuousLabels, class_anchor_points, resolve_va_range, scale_labels


@dataclass
class PreparedTargets:
    """Label rows for L_cont, their points, the fitted attributes they give, and an optional supervised task."""

    rows: np.ndarray
    points: torch.nn.Module
    fitted: dict
    n_task_outputs: int = 0
    task_loss: Callable | None = None
    task_targets: np.ndarray | None = None
    task_weight: float = 1.0
    # (features, targets) -> (weight, bias) of a linear probe that initialises the task head (LP-FT); None
    # leaves the head at PyTorch's initialisation
    probe: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    # the same kind of callable, fitted after fine-tuning on the tuned encoder's features; its fit replaces the
    # jointly trained head. None keeps that head
    refit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def task(self, train_idx, val_idx, device) -> SupervisedTask | None:
        if self.task_loss is None:
            return None
        targets = torch.as_tensor(self.task_targets, device=device)
        return SupervisedTask(self.task_loss, targets[train_idx], self.task_weight,
                              None if val_idx is None else targets[val_idx])

    @property
    def continuous(self) -> bool:
        return isinstance(self.points, ContinuousLabels)

    def learned_attributes(self) -> dict:
        """Fitted attributes that training changed: the class points of ``va_map="learn"``, on ``va_map``'s
        scale."""
        if not (isinstance(self.points, ClassAnchors) and self.points.anchors.requires_grad):
            return {}
        low, span = self.fitted["label_min_"], self.fitted["label_max_"] - self.fitted["label_min_"]
        anchors = self.points.anchors.detach().cpu().numpy().astype(np.float64)
        return {"va_map_": {c: tuple(float(v) for v in low + a * span)
                            for c, a in zip(self.fitted["classes_"].tolist(), anchors)}}


def continuous_targets(y, n_samples: int, va_range) -> PreparedTargets:
    """Continuous labels (valence, arousal, ...): scaled to [0, 1] per column, their own points."""
    y = check_continuous_targets(y, n_samples)
    low, high = resolve_va_range(y, va_range)
    for col in np.flatnonzero(high <= low):
        warn(f"Label column {col} is constant; it cannot order the texts.")
    return PreparedTargets(rows=scale_labels(y, low, high), points=ContinuousLabels(),
                           fitted={"label_min_": low, "label_max_": high, "n_outputs_": y.shape[1]})


def class_targets(y, n_samples: int, va_map, va_range, rng: np.random.Generator) \
        -> tuple[PreparedTargets, ClassTargets]:
    """Class labels placed on the VA plane by ``va_map`` (the VA labeling system)."""
    targets = check_class_targets(y, n_samples)
    classes = targets.classes.tolist()
    raw, anchors, low, high = class_anchor_points(classes, va_map, va_range, rng)
    points = ClassAnchors(torch.from_numpy(anchors), learn=isinstance(va_map, str) and va_map == "learn")
    points_by_class = {c: tuple(float(v) for v in point) for c, point in zip(classes, raw)}
    prepared = PreparedTargets(rows=targets.membership, points=points,
                               fitted={"classes_": targets.classes, "va_map_": points_by_class,
                                       "label_min_": low, "label_max_": high})
    return prepared, targets
