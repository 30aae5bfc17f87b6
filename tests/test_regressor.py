"""CARLRegressor: targets of one or more columns, predictions on the scale of the training targets."""

import numpy as np
import pytest
from conftest import make, quadrant_labels, synthetic_affect
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from skcarl import CARLRegressor
from skcarl.inference import map_texts

X, VA = synthetic_affect(48, seed=0)


LABELS = quadrant_labels(VA)


@pytest.fixture(scope="module")
def fitted_regressor(tiny_bert):
    """One fitted CARLRegressor; tests that change it fit their own."""
    return make(CARLRegressor, tiny_bert).fit(X, VA)


def test_regressor_one_output(tiny_bert):
    reg = make(CARLRegressor, tiny_bert).fit(X, VA[:, 0])
    pred = reg.predict(X)
    assert pred.shape == (len(X),)
    assert reg.n_outputs_ == 1
    assert reg.score(X, VA[:, 0]) == pytest.approx(r2_score(VA[:, 0], pred), abs=1e-12)
    assert VA[:, 0].min() <= pred.mean() <= VA[:, 0].max()


def test_regressor_two_outputs_on_target_scale(fitted_regressor):
    fitted = fitted_regressor
    pred = fitted.predict(X)
    assert pred.shape == (len(X), 2) and fitted.n_outputs_ == 2
    assert np.isfinite(pred).all()
    # predictions live on the scale of the targets (1-9 here), not on a [0, 1] or standardised scale
    for col in range(2):
        assert VA[:, col].min() <= pred[:, col].mean() <= VA[:, col].max()
        assert abs(pred[:, col].mean() - VA[:, col].mean()) < 2 * VA[:, col].std()
    np.testing.assert_allclose(fitted.target_mean_, VA.mean(0))
    assert fitted.score(X, VA) == pytest.approx(r2_score(VA, pred), abs=1e-12)


# ======================================================================================================= learning
def test_regressor_learns_va_from_words(tiny_bert):


    X, y = synthetic_affect(n=96, seed=2)
    reg = CARLRegressor(tiny_bert, batch_size=16, max_epochs=30, queue_size=16, learning_rate=1e-3,
                        random_state=0).fit(X[:64], y[:64])
    assert reg.score(X[64:], y[64:]) > 0.7
    assert reg.history_[-1]["task_loss"] < 0.5 * reg.history_[0]["task_loss"]


def test_head_refit_sets_the_head_to_a_ridge_regression_on_the_tuned_features(tiny_bert):
    reg = make(CARLRegressor, tiny_bert, head_refit=True).fit(X, VA)
    network = reg._fitted_network()
    features, _ = map_texts(network.pooled_features, network.encoder.config.hidden_size, reg.tokenizer_, X,
                            max_length=reg.max_length, batch_size=8, device="cpu", network=network)
    standardised = (VA - reg.target_mean_) / reg.target_scale_
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(features.astype(np.float64), standardised)
    expected = ridge.predict(features.astype(np.float64)) * reg.target_scale_ + reg.target_mean_
    np.testing.assert_allclose(reg.predict(X), expected, rtol=1e-4, atol=1e-4)
    joint = make(CARLRegressor, tiny_bert).fit(X, VA)  # the default keeps the jointly trained head
    assert not np.allclose(joint.predict(X), expected, atol=1e-3)


# ====================================================================================================== head start
def test_head_init_auto_starts_at_the_probe_below_the_threshold_and_at_random_from_it(tiny_bert, monkeypatch):
    import skcarl.regressor

    monkeypatch.setattr(skcarl.regressor, "AUTO_PROBE_BELOW", 40)
    few, many = slice(0, 32), slice(0, 48)

    def fit(rows, **params):
        return make(CARLRegressor, tiny_bert, **params).fit(X[rows], VA[rows])

    for rows, start, other in ((few, "probe", "random"), (many, "random", "probe")):
        auto, same, different = fit(rows), fit(rows, head_init=start), fit(rows, head_init=other)
        assert auto.head_init == "auto" and auto.head_init_ == start and same.head_init_ == start
        np.testing.assert_array_equal(auto.predict(X), same.predict(X))
        assert not np.allclose(auto.predict(X), different.predict(X), atol=1e-4)


def test_a_warm_start_keeps_the_head_start_of_the_first_fit(tiny_bert):
    reg = make(CARLRegressor, tiny_bert).fit(X[:32], VA[:32])
    assert reg.head_init_ == "probe"  # 32 texts are below AUTO_PROBE_BELOW
    reg.set_params(warm_start=True, head_init="random").fit(X, VA)
    assert reg.head_init_ == "probe"


def test_the_docs_state_the_threshold_of_head_init_auto():
    from pathlib import Path

    from skcarl.regressor import AUTO_PROBE_BELOW

    docs = Path(__file__).resolve().parents[1] / "docs"
    table_row = next(line for line in (docs / "regressor.md").read_text().splitlines()
                     if line.startswith("| `head_init` |"))
    assert f"below {AUTO_PROBE_BELOW} texts" in table_row
    assert f"`\"auto\"` does below {AUTO_PROBE_BELOW} texts" in " ".join((docs / "method.md").read_text().split())
    assert f"``AUTO_PROBE_BELOW`` ({AUTO_PROBE_BELOW}) texts" in " ".join(CARLRegressor.__doc__.split())
