"""CARLEmbedder: a transformer sentence encoder fine-tuned with CARL, as a scikit-learn transformer."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._base import _CARLBase, carl_estimator
from ._fit_targets import class_targets, continuous_targets
from ._param_validation import VAPoints
from ._warnings import warn
from .backbone import DEFAULT_BACKBONE


@carl_estimator
class CARLEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _CARLBase):
    """Sentence embeddings that feel emotion: a pretrained encoder fine-tuned with CARL.

    ``fit`` fine-tunes a Hugging Face encoder with the two objectives of CARL (Son, Saurez & Har, 2025,
    arXiv:2502.20613): a momentum contrastive loss over continuous valence–arousal (VA) labels, which
    pulls together sentences close in VA space and pushes far ones apart, and the detection of tokens
    perturbed where the contrastive gradient is largest, which makes the encoder attend to affective
    words. ``transform`` returns L2-normalised, mean-pooled sentence embeddings.

    Read more in the method page of the documentation (``docs/method.md``).

    Parameters
    ----------
%(carl_parameters)s
    va_map : None, dict or "learn", default=None
        Only for class labels (an array of emotion names, a multi-label indicator matrix, or a list of label
        sets): where each class sits in the valence–arousal plane. ``None`` uses skcarl's default table
        (GoEmotions' 28 categories, Ekman's six and neutral, and other common names; NRC VAD Lexicon
        values), a dict gives ``{label: (valence, arousal)}`` on any scale, ``"learn"`` starts from the table
        (or the mean of the known classes) and learns the points during training. Numeric y are read as
        continuous labels unless ``va_map`` is given.

    Attributes
    ----------
%(carl_attributes)s
    n_outputs_ : int
        Number of label columns (continuous labels only).
    classes_ : ndarray
        The class labels (class labels only).
    va_map_ : dict
        The VA point of each class, on the scale of ``va_map`` (class labels only; learned with "learn").

    See Also
    --------
    sklearn.pipeline.Pipeline : chain the embedder with a linear model.
    sklearn.neighbors.KNeighborsRegressor : a neighbour read-out of the embeddings.

    Notes
    -----
    The key encoder, the queue and the optimiser exist only during ``fit``; they are not kept nor pickled.

    The contrastive loss gathers texts with near labels rather than laying the labels along a direction, so
    a neighbour read-out (``KNeighborsRegressor(metric="cosine", weights="distance")``) can read them better
    than a linear model: on all of EmoBank (8,062 training texts) it did for valence. The benchmarks page
    (``docs/benchmarks.md``) has both read-outs.

    Examples
    --------
    >>> from skcarl import CARLEmbedder
    >>> from skcarl.datasets import load_affect_demo
    >>> data = load_affect_demo().iloc[:64]                      # a quick fit; use all texts and epochs
    >>> emb = CARLEmbedder(va_range=(1, 9), max_epochs=1, batch_size=16, random_state=0)
    >>> emb.fit(data.text, data[["valence", "arousal"]])
    CARLEmbedder(batch_size=16, max_epochs=1, random_state=0, va_range=(1, 9))
    >>> emb.transform(["What a wonderful surprise!"]).shape
    (1, 384)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # always float32 embeddings, whatever the input
        return tags

    _parameter_constraints = {**_CARLBase._parameter_constraints, "va_map": [None, "learn", VAPoints()]}
    _target_attributes = ("n_outputs_", "classes_", "va_map_")  # continuous labels, or classes

    def __init__(self, model_name_or_path=DEFAULT_BACKBONE, *, va_map=None, **carl_params):
        super().__init__(model_name_or_path, **carl_params)
        self.va_map = va_map

    def fit(self, X, y):
        """Fine-tune the encoder with CARL.

        Parameters
        ----------
        X : iterable of str of length n_samples
            Texts: a list, tuple, 1-D array, pandas Series, or a generator (read once). Empty and
            whitespace-only strings are valid texts, all with the same embedding.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), or class labels
            Continuous affect labels, typically valence and arousal; or emotion class labels (strings, a
            multi-label indicator matrix or a list of label sets), placed on the VA plane by ``va_map``.

        Returns
        -------
        self : CARLEmbedder

        Notes
        -----
        ``fit`` is all or nothing: if it raises (invalid input, a non-finite loss, ``KeyboardInterrupt``, out of
        memory), the estimator is left as it was, unfitted or with its previous fit (and weights) whole. See
        the reliability guide (``docs/guide/reliability.md``).
        """
        self._fit_carl(X, y)
        return self

    def transform(self, X):
        """Embed texts.

        Parameters
        ----------
        X : iterable of str of length n_samples

        Returns
        -------
        ndarray of shape (n_samples, hidden_size), float32
            L2-normalised sentence embeddings, in the input order.

        Notes
        -----
        Safe to call from several threads at once. A batch that runs out of CUDA memory is split and retried,
        with one warning per call.
        """
        return self._embed(X)

    def _prepare_targets(self, y, n_samples, rng):
        if self.va_map is not None or _looks_categorical(y):
            prepared, targets = class_targets(y, n_samples, self.va_map, self.va_range, rng)
            if len(targets.classes) == 1:
                warn(f"y holds a single class ({targets.classes.tolist()[0]!r}): every text gets the same "
                     "valence-arousal point, so L_cont cannot order them.")
            return prepared
        return continuous_targets(y, n_samples, self.va_range)

    @property
    def _n_features_out(self):
        check_is_fitted(self, "network_")
        return self.encoder_.config.hidden_size


def _looks_categorical(y) -> bool:
    """Strings, booleans and label sets are class labels; whatever reads as numbers is continuous."""
    if getattr(y, "dtype", None) is not None and y.dtype.kind == "b":
        return True
    try:
        np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        return True
    return False
