"""CARLClassifier: emotion categories predicted by a CARL-tuned encoder, with the VA labeling system."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted
from torch.nn import functional as F

from ._base import HEAD_INITS, _CARLBase, carl_estimator
from ._fit_targets import class_targets
from ._param_validation import ClassWeights, Interval, Options, VAPoints
from .backbone import DEFAULT_BACKBONE


@carl_estimator
class CARLClassifier(ClassifierMixin, _CARLBase):
    """Classify emotions with a CARL-tuned encoder.

    Categorical labels carry no distances, so CARL's contrastive loss reads them through the
    *VA labeling system*: every class is a point of the valence–arousal plane (``va_map``), a text sits at
    its class's point (the mean of its classes' points for multi-label rows), and L_cont pulls together
    texts whose points are close. A linear classification head on the pooled sentence vector is trained
    jointly:

        L = L_cont + λ·L_det + ``classification_weight`` · CE

    with the softmax cross-entropy for single-label targets and the per-class binary cross-entropy for
    multi-label targets (sigmoid outputs), each weighted by ``class_weight``.

    Parameters
    ----------
%(carl_parameters)s
    va_map : None, dict or "learn", default=None
        The valence–arousal point of each class. ``None``: skcarl's default table (GoEmotions' 28
        categories, Ekman's six and neutral, and other common emotion names, with NRC VAD Lexicon values on
        [0, 1]); a class it does not know is an error that lists them. A dict ``{label: (valence, arousal)}``
        on any scale (``va_range`` or the min/max of the points maps it to [0, 1]). ``"learn"``: start at
        the table's points (unknown classes at the mean of the known ones) and learn them with L_cont.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the head's loss. ``"balanced"`` uses n_samples / (n_classes · count);
        for multi-label targets the count is the number of positive rows of each class. A dict maps classes
        of y to finite weights >= 0 (not all 0); a class it leaves out weighs 1.
    classification_weight : float, default=1.0
        Weight of the head's cross-entropy in the total loss.
    head_init : {"probe", "random"}, default="probe"
        ``"probe"`` starts the head at a logistic regression on the pretrained encoder's pooled features
        (one per class for multi-label targets) before fine-tuning (LP-FT; Kumar et al. 2022); ``"random"``
        starts it at PyTorch's default initialisation.
    head_refit : bool, default=True
        After fine-tuning, re-fit the head as a logistic regression on the tuned encoder's features of the
        training texts (dropout off, the features scaled to unit mean norm), replacing the jointly trained
        head: the second stage of SetFit. It costs one pass over the training texts and a logistic regression.

    Attributes
    ----------
%(carl_attributes)s
    classes_ : ndarray of shape (n_classes,)
        The class labels (column names or indices for multi-label indicator targets).
    multilabel_ : bool
        Whether the targets were multi-label.
    class_weight_ : ndarray of shape (n_classes,)
        The weights used in the loss.
    va_map_ : dict
        Each class's valence–arousal point on the scale of ``va_map`` (after learning, with "learn").

    See Also
    --------
    CARLEmbedder : the embeddings alone, e.g. in a Pipeline with LogisticRegression.

    Examples
    --------
    >>> from skcarl import CARLClassifier
    >>> from skcarl.datasets import load_affect_demo
    >>> data = load_affect_demo(with_quadrant_emotion=True).iloc[:64]   # joy / calmness / sadness / anger
    >>> clf = CARLClassifier(max_epochs=1, batch_size=16, random_state=0).fit(data.text, data.emotion)
    >>> clf.classes_.tolist()
    ['anger', 'calmness', 'joy', 'sadness']
    >>> clf.predict_proba(["What a lovely, peaceful morning"]).shape
    (1, 4)
    >>> clf.va_map_["joy"]                                       # NRC VAD valence and arousal of "joy"
    (0.98, 0.824)
    """

    _parameter_constraints = {
        **_CARLBase._parameter_constraints,
        "va_map": [None, "learn", VAPoints()],
        "class_weight": [None, "balanced", ClassWeights()],
        "classification_weight": [Interval(Real, 0, None)],
        "head_init": [Options(HEAD_INITS)],
        "head_refit": [bool],
    }
    _target_attributes = ("classes_", "va_map_", "multilabel_", "class_weight_")

    def __init__(self, model_name_or_path=DEFAULT_BACKBONE, *, va_map=None, class_weight=None,
                 classification_weight=1.0, head_init="probe", head_refit=True, **carl_params):
        super().__init__(model_name_or_path, **carl_params)
        self.va_map = va_map
        self.class_weight = class_weight
        self.classification_weight = classification_weight
        self.head_init = head_init
        self.head_refit = head_refit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _prepare_targets(self, y, n_samples, rng):
        prepared, targets = class_targets(y, n_samples, self.va_map, self.va_range, rng)
        if not targets.multilabel and len(targets.classes) < 2:
            raise ValueError(f"CARLClassifier needs at least 2 classes; y holds only {targets.classes.tolist()!r}.")
        if self.warm_start and hasattr(self, "classes_") and not np.array_equal(self.classes_, targets.classes):
            raise ValueError(f"warm_start=True needs the classes of the previous fit {self.classes_.tolist()!r}; "
                             f"y has {targets.classes.tolist()!r}.")
        weights = torch.as_tensor(self._class_weights(targets), dtype=torch.float32)
        prepared.fitted.update(multilabel_=targets.multilabel, class_weight_=weights.numpy())
        prepared.n_task_outputs = len(targets.classes)
        if targets.multilabel:
            prepared.task_loss = _WeightedBCE(weights)
            prepared.task_targets = targets.indicator
        else:
            prepared.task_loss = _WeightedCE(weights)
            prepared.task_targets = targets.indices
        prepared.task_weight = self.classification_weight
        if self.head_init == "probe":
            prepared.probe = _LogisticProbe(weights.numpy(), targets.multilabel, len(targets.classes))
        if self.head_refit:
            prepared.refit = _LogisticProbe(weights.numpy(), targets.multilabel, len(targets.classes),
                                            unit_mean_norm=True)
        return prepared

    def _class_weights(self, targets) -> np.ndarray:
        n_classes = len(targets.classes)
        if self.class_weight is None:
            return np.ones(n_classes)
        if self.class_weight == "balanced":
            if not targets.multilabel:
                return compute_class_weight("balanced", classes=np.arange(n_classes), y=targets.indices)
            positives = targets.indicator.sum(0)
            return len(targets.indicator) / (n_classes * np.maximum(positives, 1))
        unknown = [c for c in self.class_weight if c not in set(targets.classes.tolist())]
        if unknown:
            raise ValueError(f"class_weight names class(es) {unknown!r} that are not in y.")
        weights = np.asarray([float(self.class_weight.get(c, 1.0)) for c in targets.classes.tolist()])
        if not (weights > 0).any():
            raise ValueError(f"class_weight gives weight 0 to every class of y ({targets.classes.tolist()!r}); "
                             "at least one class needs a positive weight.")
        return weights

    def fit(self, X, y):
        """Fine-tune the encoder with CARL and train the classification head.

        Parameters
        ----------
        X : iterable of str of length n_samples
            Texts: a list, tuple, 1-D array, pandas Series, or a generator (read once).
        y : array-like of shape (n_samples,), an indicator matrix (n_samples, n_classes), or a list of
            label sets
            Class labels (strings or integers). A 2-D 0/1 array or DataFrame, or a list of label
            collections, is multi-label.

        Returns
        -------
        self : CARLClassifier

        Notes
        -----
        ``fit`` is all or nothing: if it raises (invalid input, a non-finite loss, ``KeyboardInterrupt``, out of
        memory), the estimator is left as it was, unfitted or with its previous fit (and weights) whole. See
        the reliability guide (``docs/guide/reliability.md``).
        """
        self._fit_carl(X, y)
        return self

    def decision_function(self, X):
        """Logits of the head; for binary single-label targets, the positive-class margin (n_samples,)."""
        check_is_fitted(self, "network_")
        logits = self._task_outputs(X)
        if not self.multilabel_ and len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order: a softmax (rows sum to 1) for single-label
        targets, independent sigmoids for multi-label targets."""
        check_is_fitted(self, "network_")
        logits = self._task_outputs(X).astype(np.float64)
        return expit(logits) if self.multilabel_ else softmax(logits, axis=1)

    def predict(self, X):
        """Labels from ``classes_``; for multi-label targets a 0/1 indicator matrix (probability ≥ 0.5)."""
        return labels_from_proba(self.predict_proba(X), self.classes_, self.multilabel_)

    def transform(self, X):
        """The L2-normalised sentence embeddings of the tuned encoder, shape (n_samples, hidden_size)."""
        return self._embed(X)


def labels_from_proba(proba, classes, multilabel: bool):
    """The decision of :meth:`CARLClassifier.predict` from its probabilities: the most probable class of
    ``classes`` per row, or for multi-label targets a 0/1 indicator matrix (probability >= 0.5).

    For callers that need both the probabilities and the labels from one pass (the command line's predict).

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.classifier import labels_from_proba
    >>> labels_from_proba(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array(["calm", "joy"]), multilabel=False)
    array(['joy', 'calm'], dtype='<U4')
    >>> labels_from_proba(np.array([[0.7, 0.5], [0.1, 0.2]]), np.array(["calm", "joy"]), multilabel=True)
    array([[1, 1],
           [0, 0]])
    """
    proba = np.asarray(proba)
    if multilabel:
        return (proba >= 0.5).astype(int)
    return np.asarray(classes)[proba.argmax(1)]


class _WeightedCE:
    """Softmax cross-entropy with class weights (a picklable callable, unlike a lambda)."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def __call__(self, logits, targets):
        # the weighted mean, with a batch whose classes all weigh 0 (class_weight may give 0) counting 0, not 0/0
        weights, targets = self.weights.to(logits.device), targets.long()
        total = F.cross_entropy(logits.float(), targets, weight=weights, reduction="sum")
        return total / weights[targets].sum().clamp_min(torch.finfo(torch.float32).tiny)


class _WeightedBCE:
    """Per-class binary cross-entropy, each class's term scaled by its weight."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def __call__(self, logits, targets):
        per_entry = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
        return (per_entry * self.weights.to(logits.device)).mean()


class _LogisticProbe:
    """Logistic-regression weights for the head, as (weight (n_classes, h), bias (n_classes,)).

    ``unit_mean_norm`` fits on the features divided by their mean L2 norm (and scales the weights back), so
    that LogisticRegression's C = 1 regularises as it does on L2-normalised embeddings, whatever the norm of
    the encoder's pooled vector.
    """

    def __init__(self, class_weights: np.ndarray, multilabel: bool, n_classes: int, unit_mean_norm: bool = False):
        self.class_weights, self.multilabel, self.n_classes = class_weights, multilabel, n_classes
        self.unit_mean_norm = unit_mean_norm

    def __call__(self, features, targets):
        scale = 1.0
        if self.unit_mean_norm:
            scale = float(np.linalg.norm(features, axis=1).mean()) or 1.0
        weight, bias = self._fit(features / scale, targets)
        return weight / scale, bias

    def _fit(self, features, targets):
        weight, bias = np.zeros((self.n_classes, features.shape[1])), np.zeros(self.n_classes)
        if not self.multilabel:
            present = np.unique(targets)
            if len(present) < 2:  # a training split with one class: nothing to separate yet
                bias[:] = -10.0
                bias[present] = 10.0
                return weight, bias
            model = LogisticRegression(max_iter=1000, class_weight=dict(enumerate(self.class_weights)))
            model.fit(features, targets)
            if len(present) == 2:  # sklearn keeps one row for two classes: split it into two logits
                weight[present] = np.vstack([-model.coef_[0], model.coef_[0]]) / 2
                bias[present] = np.array([-model.intercept_[0], model.intercept_[0]]) / 2
            else:
                weight[present], bias[present] = model.coef_, model.intercept_
            bias[np.setdiff1d(np.arange(self.n_classes), present)] = -10.0  # classes absent from training
            return weight, bias
        for c in range(self.n_classes):
            column = targets[:, c]
            if column.min() == column.max():  # a class always (or never) on: only its bias is informative
                bias[c] = 10.0 if column[0] else -10.0
                continue
            # a class's weight scales its whole binary cross-entropy: for its own logistic regression that is
            # the inverse of the L2 penalty (a weight of 0, "ignore this class", keeps the unweighted fit)
            strength = float(self.class_weights[c]) if self.class_weights[c] > 0 else 1.0
            model = LogisticRegression(C=strength, max_iter=1000).fit(features, column)
            weight[c], bias[c] = model.coef_[0], model.intercept_[0]
        return weight, bias
