"""The fit driver of ``_CARLBase``: named steps a subclass overrides, declared target attributes, a core that
imports neither io nor explain, and an all-or-nothing fit (non-finite losses, interrupts, failed refits, memory
freed between fits)."""

from __future__ import annotations

import gc
import itertools
import pickle
import subprocess
import sys
import types
import weakref

import numpy as np
import pytest
import torch
from conftest import FAST, infer, make, quadrant_labels, synthetic_affect
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_validate
from sklearn.utils.validation import check_is_fitted
from torch.nn import functional as F

import skcarl
import skcarl.regressor
import skcarl.training
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._base import _CARLBase, carl_estimator
from skcarl._fit_targets import continuous_targets
from skcarl.backbone import DEFAULT_BACKBONE
from skcarl.network import CARLNetwork
from skcarl.training import CARLTrainer

X, VA = synthetic_affect(48, seed=0)


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


# ================================================================================================== all-or-nothing fit
ESTIMATORS = [CARLEmbedder, CARLRegressor, CARLClassifier]
LABELS = quadrant_labels(VA)


def ids(value):
    return value.__name__ if isinstance(value, type) else repr(value)


def targets_for(cls):
    return LABELS if cls is CARLClassifier else VA


def state_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def models(tiny_bert):
    """One fitted estimator of each kind; tests that change one work on a pickled copy."""
    return {cls: make(cls, tiny_bert).fit(X, targets_for(cls)) for cls in ESTIMATORS}


def copy_of(est):
    return pickle.loads(pickle.dumps(est))


def no_fitted_attributes(est):
    return not [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


def poisoned_contrastive_loss(monkeypatch, at_call, value=float("nan")):
    """Make L_cont ``value`` at its ``at_call``-th evaluation (training steps only: no validation split)."""
    real = skcarl.training.make_contrastive_loss

    def make_loss(*args, **kwargs):
        loss, calls = real(*args, **kwargs), itertools.count(1)

        def poisoned(*a, **k):
            result = loss(*a, **k)
            return result * value if next(calls) == at_call else result
        return poisoned

    monkeypatch.setattr(skcarl.training, "make_contrastive_loss", make_loss)


def interrupt_at_step(monkeypatch, step, exception=KeyboardInterrupt):
    real = CARLTrainer.training_step
    seen = []

    def step_or_interrupt(self, *args, **kwargs):
        seen.append(self.global_step)
        if self.global_step == step - 1:
            raise exception()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CARLTrainer, "training_step", step_or_interrupt)
    return seen


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cuda_regressor(tiny_bert):
    return make(CARLRegressor, tiny_bert, device="cuda").fit(X, VA)


def test_queue_and_batch_larger_than_the_data(tiny_bert):
    """queue_size is clipped to the texts minus one batch; a batch larger than the data is the whole data."""
    est = make(CARLEmbedder, tiny_bert, queue_size=10_000).fit(X, VA)
    assert est.queue_size_ == len(X) - 16
    est = make(CARLRegressor, tiny_bert, batch_size=1000, queue_size=10_000, max_epochs=2).fit(X, VA)
    assert est.queue_size_ == 0 and est.n_iter_ == 2 and np.isfinite(est.loss_curve_).all()
    assert est.predict(X).shape == (48, 2)


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_a_non_finite_contrastive_loss_stops_training_and_names_loss_and_step(value, shown, tiny_bert, monkeypatch):
    poisoned_contrastive_loss(monkeypatch, at_call=3, value=value)
    est = make(CARLEmbedder, tiny_bert, max_epochs=3)
    with pytest.raises(FloatingPointError, match=rf"The contrastive loss L_cont became {shown} at training step 3"):
        est.fit(X, VA)
    assert no_fitted_attributes(est)  # defined behaviour: a failed fit leaves the estimator unfitted
    with pytest.raises(NotFittedError):
        est.transform(X)


def test_a_non_finite_detection_or_head_loss_names_that_loss(tiny_bert, monkeypatch):
    class PoisonedDetection(skcarl.training.TokenDetectionLoss):
        calls = 0

        def forward(self, *args):
            type(self).calls += 1
            loss = super().forward(*args)
            return loss * float("nan") if type(self).calls == 2 else loss

    with monkeypatch.context() as patch:
        patch.setattr(skcarl.training, "TokenDetectionLoss", PoisonedDetection)
        with pytest.raises(FloatingPointError, match="The detection loss L_det became nan at training step 2"):
            make(CARLEmbedder, tiny_bert, detection_weight=0.1).fit(X, VA)

    calls = itertools.count(1)

    def exploding_mse(pred, target):
        loss = torch.nn.functional.mse_loss(pred, target)
        return loss * float("inf") if next(calls) == 2 else loss

    monkeypatch.setattr(skcarl.regressor, "F", types.SimpleNamespace(mse_loss=exploding_mse))
    est = make(CARLRegressor, tiny_bert)
    with pytest.raises(FloatingPointError, match="supervised loss of the prediction head became inf at training "
                                                 "step 2"):
        est.fit(X, VA)
    assert no_fitted_attributes(est)


@pytest.mark.parametrize("fault", ["nan", "interrupt"])
@pytest.mark.parametrize("cls", [CARLRegressor, CARLClassifier], ids=ids)
def test_a_failed_refit_keeps_the_previous_fit_whole(fault, cls, models, monkeypatch):
    """Neither a refit nor a warm-started one leaves a mix: the previous weights and attributes stay."""
    for warm_start in (False, True):
        est = copy_of(models[cls]).set_params(warm_start=warm_start, max_epochs=2)
        before_attributes = {k: v for k, v in vars(est).items() if k.endswith("_")}
        before_weights, before_outputs = state_of(est.network_), infer(est, X)
        with monkeypatch.context() as patch:
            if fault == "nan":
                poisoned_contrastive_loss(patch, at_call=3)
                with pytest.raises(FloatingPointError):
                    est.fit(X, targets_for(cls))
            else:
                seen = interrupt_at_step(patch, step=3)
                with pytest.raises(KeyboardInterrupt):
                    est.fit(X, targets_for(cls))
                assert seen == [0, 1, 2]  # two steps had already changed the weights
        assert {k: v for k, v in vars(est).items() if k.endswith("_")}.keys() == before_attributes.keys()
        assert all(vars(est)[k] is v for k, v in before_attributes.items())
        assert same_state(state_of(est.network_), before_weights), f"warm_start={warm_start}"
        np.testing.assert_array_equal(infer(est, X), before_outputs)
        assert est.fit(X, targets_for(cls)) is est  # and it is usable: a new fit works


def test_keyboard_interrupt_leaves_a_fresh_estimator_cleanly_unfitted(tiny_bert, monkeypatch):
    for step in (1, 4):  # before any update, and in the second epoch
        est = make(CARLClassifier, tiny_bert, max_epochs=2, validation_fraction=0.25)
        with monkeypatch.context() as patch:
            interrupt_at_step(patch, step)
            with pytest.raises(KeyboardInterrupt):
                est.fit(X, LABELS)
        assert no_fitted_attributes(est)
        with pytest.raises(NotFittedError):
            check_is_fitted(est)
    assert np.isfinite(est.fit(X, LABELS).predict_proba(X)).all()


def test_a_second_fit_and_cross_validation_free_the_previous_models(tiny_bert, monkeypatch):
    """Measured by weak references to every network and trainer, and by the bytes of all live tensors."""
    networks, trainers = weakref.WeakSet(), weakref.WeakSet()
    init_network, init_trainer = CARLNetwork.__init__, CARLTrainer.__init__

    def track_network(self, *args, **kwargs):
        init_network(self, *args, **kwargs)
        networks.add(self)

    def track_trainer(self, *args, **kwargs):
        init_trainer(self, *args, **kwargs)
        trainers.add(self)
        networks.add(self.key_network)

    monkeypatch.setattr(CARLNetwork, "__init__", track_network)
    monkeypatch.setattr(CARLTrainer, "__init__", track_trainer)

    def live_tensor_bytes():
        gc.collect()
        storages = {}
        for obj in gc.get_objects():
            if issubclass(type(obj), torch.Tensor) and obj.device.type == "cpu":
                try:
                    storage = obj.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()
                except RuntimeError:  # a tracing tensor (FakeTensor) left by torch.compile holds no memory
                    continue
        return sum(storages.values())

    est = make(CARLRegressor, tiny_bert).fit(X, VA)
    first = weakref.ref(est.network_)
    model_bytes = sum(t.numel() * t.element_size() for t in est.network_.state_dict().values())
    est.fit(X, VA)
    gc.collect()
    assert first() is None and set(networks) == {est.network_} and not list(trainers)

    baseline = live_tensor_bytes()
    result = cross_validate(make(CARLRegressor, tiny_bert), X, VA, cv=5, error_score="raise")
    assert np.isfinite(result["test_score"]).all()
    growth = live_tensor_bytes() - baseline
    assert set(networks) == {est.network_} and not list(trainers)
    assert growth < 0.5 * model_bytes, (growth, model_bytes)  # five leaked folds would be 10x model_bytes


@pytest.mark.slow
def test_five_fold_cross_validation_of_minilm_does_not_grow_memory():
    """The resident memory after five folds of MiniLM stays within a fraction of one model's training state."""
    psutil = pytest.importorskip("psutil")
    texts, va = synthetic_affect(40, seed=1)
    est = CARLRegressor(max_epochs=1, batch_size=8, max_length=16, queue_size=8, device="cpu", random_state=0)
    cross_validate(est, texts, va, cv=2)  # warm-up: allocator pools, lazy imports
    gc.collect()
    before = psutil.Process().memory_info().rss
    cross_validate(est, texts, va, cv=5)
    gc.collect()
    growth = psutil.Process().memory_info().rss - before
    # one fold's network, key network and AdamW state are ~4 x 90 MB: five leaked folds would be ~1.8 GB
    assert growth < 300e6, growth / 1e6


@cuda
def test_a_warm_start_interrupted_on_cuda_keeps_the_weights_on_the_gpu(cuda_regressor, monkeypatch):
    est = copy_of(cuda_regressor).set_params(warm_start=True, max_epochs=2)
    before, predictions = state_of(est.network_), est.predict(X)
    interrupt_at_step(monkeypatch, step=3)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, VA)
    assert next(est.network_.parameters()).device.type == "cuda" and est.device_.type == "cuda"
    assert same_state(state_of(est.network_), before)
    np.testing.assert_array_equal(est.predict(X), predictions)
