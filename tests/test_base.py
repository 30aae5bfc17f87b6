"""The fit driver of ``_CARLBase``: named steps a subclass overrides, declared target attributes, and a core that
imports neither io nor explain."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import synthetic_affect
from torch.nn import functional as F

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._base import _CARLBase, carl_estimator
from skcarl._fit_targets import continuous_targets
from skcarl.backbone import DEFAULT_BACKBONE

FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(32, seed=0)


@carl_estimator
class _MeanRegressor(_CARLBase):
    """A subclass with a head, and neither ``head_init`` nor ``va_map``.

    Parameters
    ----------
%(carl_parameters)s

    Attributes
    ----------
%(carl_attributes)s
    """

    _target_attributes = ("n_outputs_",)

    def __init__(self, model_name_or_path=DEFAULT_BACKBONE, **carl_params):
        super().__init__(model_name_or_path, **carl_params)

    def _prepare_targets(self, y, n_samples, rng):
        prepared = continuous_targets(y, n_samples, self.va_range)
        prepared.n_task_outputs = prepared.rows.shape[1]
        prepared.task_loss, prepared.task_targets = F.mse_loss, prepared.rows
        prepared.probe = lambda features, targets: (np.zeros((targets.shape[1], features.shape[1])), targets.mean(0))
        return prepared

    def fit(self, X, y):
        self._fit_carl(X, y)
        return self


def test_a_subclass_fits_without_the_parameters_of_the_shipped_subclasses(tiny_bert):
    est = _MeanRegressor(tiny_bert, **FAST).fit(X, VA)
    bias = est.network_.task_head.bias.detach().numpy()
    assert est.n_outputs_ == 2 and bias.shape == (2,)


def test_a_subclass_overrides_one_step_of_fit(tiny_bert):
    seen = {}

    class Recording(_MeanRegressor):
        def _resolve_settings(self, prepared, train_idx, run):
            settings = super()._resolve_settings(prepared, train_idx, run)
            seen.update(settings)
            return {**settings, "max_epochs_": 2}

    est = Recording(tiny_bert, **FAST).fit(X, VA)
    assert seen["max_epochs_"] == 1 and est.max_epochs_ == 2 and est.n_iter_ == 2


@pytest.mark.parametrize("cls, kinds", [
    (CARLEmbedder, [VA, np.where(VA[:, 0] > 5, "joy", "sadness")]),
    (CARLRegressor, [VA, VA[:, 0]]),
    (CARLClassifier, [np.where(VA[:, 0] > 5, "joy", "sadness")]),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_each_estimator_declares_the_target_attributes_that_its_fits_add(cls, kinds, tiny_bert):
    shared = _fitted(_MeanRegressor(tiny_bert, **FAST).fit(X, VA)) - set(_MeanRegressor._target_attributes)
    added = set()
    for y in kinds:
        added |= _fitted(cls(tiny_bert, **FAST).fit(X, y)) - shared
    assert added == set(cls._target_attributes)


def _fitted(est) -> set:
    return set(vars(est)) - set(est.get_params())


def test_the_core_imports_neither_io_nor_explain():
    code = ("import sys, skcarl._base, skcarl.embedder, skcarl.regressor, skcarl.classifier, skcarl.training, "
            "skcarl.losses, skcarl.network; print(sorted(m for m in sys.modules if m.startswith('skcarl')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for module in ("skcarl.io", "skcarl.explain", "skcarl.export", "skcarl.cli", "skcarl.plot", "skcarl.model_card"):
        assert f"'{module}'" not in loaded
