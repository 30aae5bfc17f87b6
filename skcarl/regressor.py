"""CARLRegressor: valence, arousal (or any continuous targets) predicted by a CARL-tuned encoder."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.linear_model import RidgeCV
from sklearn.utils.validation import check_is_fitted
from torch.nn import functional as F

from ._base import HEAD_INITS, _CARLBase, carl_estimator
from ._fit_targets import continuous_targets
from ._param_validation import Interval, Options
from .backbone import DEFAULT_BACKBONE

# head_init="auto": the head starts at the ridge probe (LP-FT) below this many texts and at PyTorch's
# initialisation from it. A head that already fits the training targets sends the encoder little MSE gradient:
# on a few dozen texts that anchor is worth more than the gradient, from about a hundred the gradient is worth
# more (docs/study_log.md, "Few labels, round 5").
AUTO_PROBE_BELOW = 96


@carl_estimator
class CARLRegressor(MultiOutputMixin, RegressorMixin, _CARLBase):
    """Predict valence, arousal and other continuous targets with a CARL-tuned encoder.

    The encoder is fine-tuned with CARL (the continuous-label contrastive loss on the targets, and
    perturbed-token detection) while a linear regression head on the pooled sentence vector is trained
    jointly with a mean squared error:

        L = L_cont + λ·L_det + ``regression_weight`` · MSE(head(s), z)

    where z are the targets standardised per column (zero mean, unit variance on the training set).
    Standardising matters on narrow real labels: on EmoBank scaled to [0, 1] (sd ≈ 0.1) a plain MSE head
    learned worse than a ridge probe on the same encoder. ``predict`` maps back to the scale of the
    training targets; ``score`` is R² (averaged over outputs).

    Parameters
    ----------
%(carl_parameters)s
    regression_weight : float, default=1.0
        Weight of the regression head's MSE in the total loss.
    head_init : {"auto", "probe", "random"}, default="auto"
        ``"probe"`` starts the head at a ridge regression (``RidgeCV``) on the pretrained encoder's pooled
        features before fine-tuning (linear probing then fine-tuning, LP-FT; Kumar et al. 2022); ``"random"``
        starts it at PyTorch's default initialisation. ``"auto"`` is ``"probe"`` below ``AUTO_PROBE_BELOW``
        (96) texts given to ``fit`` and ``"random"`` from there (on EmoBank dev the probe start won at 64 texts,
        the random start from 96: a head already at the ridge solution leaves the MSE little error to teach
        the encoder with). The start used is ``head_init_``.
    head_refit : bool, default=False
        After fine-tuning, re-fit the head as a ridge regression (``RidgeCV``) on the tuned encoder's features
        of the training texts (dropout off), replacing the jointly trained head (as ``CARLClassifier`` does
        by default). Off by default: with few texts it did not help (``docs/study_log.md``).

    Attributes
    ----------
%(carl_attributes)s
    n_outputs_ : int
        Number of targets.
    head_init_ : {"probe", "random"}
        How the head started (``head_init``, with ``"auto"`` resolved).
    target_mean_, target_scale_ : ndarray of shape (n_outputs,)
        Standardisation of the targets (a constant target gets scale 1).

    See Also
    --------
    CARLEmbedder : the embeddings alone, to feed any scikit-learn regressor.

    Examples
    --------
    >>> from skcarl import CARLRegressor
    >>> from skcarl.datasets import load_affect_demo
    >>> data = load_affect_demo().iloc[:64]                      # a quick fit; use all texts and epochs
    >>> reg = CARLRegressor(va_range=(1, 9), max_epochs=1, batch_size=16, random_state=0)
    >>> reg.fit(data.text, data[["valence", "arousal"]])
    CARLRegressor(batch_size=16, max_epochs=1, random_state=0, va_range=(1, 9))
    >>> valence, arousal = reg.predict(["I won the championship!"])[0]
    >>> bool(valence > 5)                                        # pleasant, on the 1-9 scale of the targets
    True
    """

    _parameter_constraints = {
        **_CARLBase._parameter_constraints,
        "regression_weight": [Interval(Real, 0, None)],
        "head_init": [Options(("auto", *HEAD_INITS))],
        "head_refit": [bool],
    }
    _target_attributes = ("n_outputs_", "target_mean_", "target_scale_", "head_init_", "_y_ndim")

    def __init__(self, model_name_or_path=DEFAULT_BACKBONE, *, regression_weight=1.0, head_init="auto",
                 head_refit=False, **carl_params):
        super().__init__(model_name_or_path, **carl_params)
        self.regression_weight = regression_weight
        self.head_init = head_init
        self.head_refit = head_refit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _prepare_targets(self, y, n_samples, rng):
        prepared = continuous_targets(y, n_samples, self.va_range)
        targets = np.asarray(y, dtype=np.float64).reshape(n_samples, -1)
        if self.warm_start and hasattr(self, "target_mean_"):
            mean, scale = self.target_mean_, self.target_scale_  # the head's scale must not move
            head_init = getattr(self, "head_init_", self.head_init)  # the head trains on from where it was
        else:
            mean, sd = targets.mean(0), targets.std(0)
            scale = np.where(sd > 0, sd, 1.0)
            head_init = self.head_init
        if head_init == "auto":
            head_init = "probe" if n_samples < AUTO_PROBE_BELOW else "random"
        prepared.fitted.update(target_mean_=mean, target_scale_=scale, head_init_=head_init, _y_ndim=np.ndim(y))
        prepared.n_task_outputs = targets.shape[1]
        prepared.task_loss = F.mse_loss
        prepared.task_targets = ((targets - mean) / scale).astype(np.float32)
        prepared.task_weight = self.regression_weight
        prepared.probe = _ridge_probe if head_init == "probe" else None
        prepared.refit = _ridge_probe if self.head_refit else None
        return prepared

    def fit(self, X, y):
        """Fine-tune the encoder with CARL and train the regression head.

        Parameters
        ----------
        X : iterable of str of length n_samples
            Texts: a list, tuple, 1-D array, pandas Series, or a generator (read once).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Continuous targets, e.g. valence and arousal.

        Returns
        -------
        self : CARLRegressor

        Notes
        -----
        ``fit`` is all or nothing: if it raises (invalid input, a non-finite loss, ``KeyboardInterrupt``, out of
        memory), the estimator is left as it was, unfitted or with its previous fit (and weights) whole. See
        the reliability guide (``docs/guide/reliability.md``).
        """
        self._fit_carl(X, y)
        return self

    def predict(self, X):
        """Predict the targets on the scale of the training targets.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D when ``fit`` was given 1-D targets.
        """
        check_is_fitted(self, "network_")
        predictions = self._task_outputs(X) * self.target_scale_ + self.target_mean_
        return predictions.ravel() if self._y_ndim == 1 else predictions

    def transform(self, X):
        """The L2-normalised sentence embeddings of the tuned encoder, shape (n_samples, hidden_size)."""
        return self._embed(X)


def _ridge_probe(features, targets):
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(features, targets)
    return np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_)
