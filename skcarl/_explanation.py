"""``explain`` on the estimators; the saliency itself is computed by :mod:`skcarl.explain`, imported on first use
so that the estimators do not import pandas' tables or the explanation code."""

from __future__ import annotations


class ExplainMixin:
    """``explain`` for a fitted CARL estimator."""

    def explain(self, texts, target=None, **kwargs):
        """Per-word saliency ‖∂f/∂E_t‖₂ of the model's output on ``texts``, the signal CARL trains with.

        f is each predicted target (regressor), the logit of the predicted or named class (classifier), or
        the whole embedding (embedder, by seeded random projections). See :func:`skcarl.explain.explain`
        for the parameters and the columns of the table.

        Parameters
        ----------
        texts : sequence of str
        target : None, int, str or class label, default=None
        **kwargs
            ``n_projections`` and ``random_state`` (embedder only).

        Returns
        -------
        pandas.DataFrame
            Columns ``text_id``, ``word_id``, ``word``, ``saliency``, ``saliency_share``, ``target``.

        Examples
        --------
        >>> from skcarl import CARLRegressor
        >>> reg = CARLRegressor(va_range=(1, 9), max_epochs=1).fit(texts, va)  # doctest: +SKIP
        >>> reg.explain(["What a wonderful day"], target=0).word.tolist()  # doctest: +SKIP
        ['What', 'a', 'wonderful', 'day']
        """
        from .explain import explain

        return explain(self, texts, target, **kwargs)
