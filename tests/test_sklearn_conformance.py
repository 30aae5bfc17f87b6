"""scikit-learn conformance of the three CARL estimators, on a tiny in-process BERT.

Every fit is tiny (one epoch, a few batches of 48 synthetic texts on the 1-layer BERT of ``conftest``); fitted
estimators are shared through module fixtures and copied (pickle round trip) before anything mutates them.
"""

import copy
import io
import os
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from conftest import make, quadrant_labels, synthetic_affect
from scipy.stats import uniform
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    check_cv,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)

import skcarl
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._va_table import DEFAULT_VA_TABLE

ESTIMATORS = [CARLEmbedder, CARLRegressor, CARLClassifier]
HIDDEN = 32  # hidden size of conftest's tiny BERT
CLASSES = ["joy", "anger", "sadness", "calmness"]  # all in skcarl's default VA table

X, VA = synthetic_affect(48, seed=0)


LABELS = quadrant_labels(VA)


def targets_for(cls):
    """Matching targets: VA (n, 2) for the embedder and the regressor, emotion names for the classifier."""
    return LABELS if cls is CARLClassifier else VA


def outputs(est, texts):
    """Everything an estimator computes from texts, as a tuple of arrays."""
    if isinstance(est, CARLClassifier):
        return (est.predict_proba(texts), est.decision_function(texts), est.predict(texts),
                est.transform(texts))
    if isinstance(est, CARLRegressor):
        return est.predict(texts), est.transform(texts)
    return (est.transform(texts),)


def assert_same_outputs(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        assert np.asarray(left).shape == np.asarray(right).shape
        assert np.array_equal(left, right)


def state_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a, b, atol=0.0):
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=atol) for k in a)


def roundtrip(est):
    return pickle.loads(pickle.dumps(est))


def ids(cls):
    return cls.__name__


@pytest.fixture(scope="module")
def models(tiny_bert):
    """One fitted estimator of each kind, on (X, VA) or (X, LABELS); tests copy one before changing it."""
    return {cls: make(cls, tiny_bert).fit(X, targets_for(cls)) for cls in ESTIMATORS}


@pytest.fixture(params=ESTIMATORS, ids=ids)
def fitted(request, models):
    return models[request.param]


@pytest.fixture
def fitted_embedder(models):
    return models[CARLEmbedder]


@pytest.fixture
def fitted_regressor(models):
    return models[CARLRegressor]


@pytest.fixture
def fitted_classifier(models):
    return models[CARLClassifier]


# =====================================================================================================
# 1. Tags
# =====================================================================================================
@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_tags(cls, tiny_bert):
    tags = make(cls, tiny_bert).__sklearn_tags__()
    assert tags.input_tags.string is True
    assert tags.input_tags.two_d_array is False
    assert tags.target_tags.required is True
    if cls is CARLRegressor:
        assert tags.estimator_type == "regressor"
        assert tags.target_tags.multi_output is True
        assert tags.target_tags.single_output is True
    if cls is CARLClassifier:
        assert tags.estimator_type == "classifier"
        assert tags.classifier_tags.multi_label is True
    if cls is CARLEmbedder:
        assert tags.transformer_tags is not None
    assert is_regressor(cls(tiny_bert)) is (cls is CARLRegressor)
    assert is_classifier(cls(tiny_bert)) is (cls is CARLClassifier)
    # deterministic given a seed, not without one
    assert tags.non_deterministic is False
    assert cls(tiny_bert).__sklearn_tags__().non_deterministic is True


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_no_legacy_more_tags(cls):
    assert not hasattr(cls, "_more_tags")
    assert not any("_more_tags" in vars(klass) for klass in cls.__mro__)


# =====================================================================================================
# 2. scikit-learn's own API checks
# =====================================================================================================
API_CHECKS = [
    check_estimator_cloneable,
    check_estimator_repr,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_get_params_invariance,
    check_set_params,
    check_do_not_raise_errors_in_init_or_set_params,
    check_mixin_order,
    check_valid_tag_types,
]


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_sklearn_api_check(cls, check, tiny_bert):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no check may warn either
        check(cls.__name__, make(cls, tiny_bert))


# =====================================================================================================
# 3. The common estimator checks, re-implemented for text input
# =====================================================================================================
def test_fit_returns_self_and_keeps_params(fitted, tiny_bert):
    cls = type(fitted)
    est = make(cls, tiny_bert)
    before = copy.deepcopy(est.get_params(deep=False))
    before_hash = joblib.hash(est.get_params(deep=False))
    assert est.fit(X, targets_for(cls)) is est
    assert joblib.hash(est.get_params(deep=False)) == before_hash
    assert est.get_params(deep=False) == before


def test_fit_keeps_dict_params_unchanged(tiny_bert):
    """Dict-valued parameters (va_map, class_weight) are read, never written."""
    int_labels = np.searchsorted(CLASSES, LABELS, sorter=np.argsort(CLASSES))
    va_map = {0: (7.5, 7.5), 1: (2.5, 7.5), 2: (2.5, 2.5), 3: (7.5, 2.5)}
    class_weight = {0: 2.0, 3: 0.5}
    est = make(CARLClassifier, tiny_bert, va_map=va_map, class_weight=class_weight)
    before = joblib.hash(est.get_params(deep=False))
    est.fit(X, int_labels)
    assert joblib.hash(est.get_params(deep=False)) == before
    assert est.va_map is va_map and est.class_weight is class_weight
    assert va_map == {0: (7.5, 7.5), 1: (2.5, 7.5), 2: (2.5, 2.5), 3: (7.5, 2.5)}
    assert class_weight == {0: 2.0, 3: 0.5}


def test_clone_of_fitted_is_unfitted_with_equal_params(fitted):
    cloned = clone(fitted)
    assert type(cloned) is type(fitted)
    assert cloned.get_params(deep=False) == fitted.get_params(deep=False)
    assert not any(k.endswith("_") and not k.startswith("__") for k in vars(cloned))
    method = "transform" if isinstance(fitted, CARLEmbedder) else "predict"
    with pytest.raises(NotFittedError):
        getattr(cloned, method)(X[:2])
    # the original is untouched
    assert hasattr(fitted, "network_")


NOT_FITTED_METHODS = {
    CARLEmbedder: ["transform", "get_feature_names_out"],
    CARLRegressor: ["predict", "transform", "score"],
    CARLClassifier: ["predict", "predict_proba", "decision_function", "transform", "score"],
}


@pytest.mark.parametrize(
    "cls, method", [(c, m) for c, ms in NOT_FITTED_METHODS.items() for m in ms],
    ids=[f"{c.__name__}.{m}" for c, ms in NOT_FITTED_METHODS.items() for m in ms],
)
def test_not_fitted_error(cls, method, tiny_bert):
    est = make(cls, tiny_bert)
    args = {"get_feature_names_out": (), "score": (X[:4], targets_for(cls)[:4])}.get(method, (X[:4],))
    with pytest.raises(NotFittedError):
        getattr(est, method)(*args)


def test_refit_same_seed_is_identical(fitted, tiny_bert):
    cls = type(fitted)
    expected = outputs(fitted, X)
    est = make(cls, tiny_bert).fit(X, targets_for(cls))
    assert_same_outputs(outputs(est, X), expected)
    est.fit(X, targets_for(cls))  # refitting the same object starts again from the backbone
    assert_same_outputs(outputs(est, X), expected)
    # ... and the seed matters: another random_state gives another model
    other = make(cls, tiny_bert, random_state=1).fit(X, targets_for(cls))
    assert not np.allclose(other.transform(X), expected[-1])


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_bare_string_is_refused(cls, tiny_bert, models):
    with pytest.raises(ValueError, match="string object received"):
        make(cls, tiny_bert).fit("i feel happy today", targets_for(cls)[:1])
    for method in NOT_FITTED_METHODS[cls]:
        if method not in ("get_feature_names_out", "score"):
            with pytest.raises(ValueError, match="string object received"):
                getattr(models[cls], method)("i feel happy today")


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_inconsistent_lengths(cls, tiny_bert):
    y = targets_for(cls)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make(cls, tiny_bert).fit(X, y[:-1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make(cls, tiny_bert).fit(X[:-1], y)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_two_dimensional_X_is_refused(cls, tiny_bert):
    frame = pd.DataFrame({"text": X})
    with pytest.raises(ValueError, match="1-D sequence of texts"):
        make(cls, tiny_bert).fit(frame, targets_for(cls))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_empty_input(cls, tiny_bert, models):
    with pytest.raises(ValueError, match="empty"):
        make(cls, tiny_bert).fit([], targets_for(cls)[:0])
    method = "transform" if cls is CARLEmbedder else "predict"
    with pytest.raises(ValueError, match="empty"):
        getattr(models[cls], method)([])


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_missing_targets_are_refused(cls, tiny_bert):
    if cls is CARLClassifier:
        for missing in (None, np.nan):
            labels = LABELS.astype(object)
            labels[3] = missing
            with pytest.raises(ValueError, match=r"y\[3\] = .* is not a class label"):
                make(cls, tiny_bert).fit(X, labels)
    else:
        for bad in (np.nan, np.inf):
            y = VA.copy()
            y[3, 1] = bad
            with pytest.raises(ValueError, match="NaN or infinity"):
                make(cls, tiny_bert).fit(X, y)


# what scikit-learn's check_requires_y_none accepts from fit(X, None) when target_tags.required is True
Y_NONE_MESSAGES = (
    "requires y to be passed, but the target y is None",
    "Expected array-like (array or non-string sequence), got None",
    "y should be a 1d array",
)


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor, CARLClassifier], ids=ids)
def test_fit_without_y_is_a_clear_value_error(cls, tiny_bert):
    with pytest.raises(ValueError) as info:
        make(cls, tiny_bert).fit(X, None)
    assert any(message in str(info.value) for message in Y_NONE_MESSAGES), str(info.value)


def test_fit_adds_only_trailing_underscore_attributes(fitted, tiny_bert):
    """scikit-learn's check_dont_overwrite_parameters: fit adds public attributes ending in '_' only."""
    unfitted = vars(make(type(fitted), tiny_bert))
    added = set(vars(fitted)) - set(unfitted)
    public = sorted(a for a in added if not a.startswith("_"))
    assert {"network_", "encoder_", "tokenizer_", "device_", "n_iter_"} <= set(public)
    assert all(a.endswith("_") for a in public), public


def test_prediction_does_not_change_the_estimator(fitted):
    """scikit-learn's check_dict_unchanged: predict / transform leave the fitted state alone."""
    before = dict(vars(fitted))
    weights = state_of(fitted.network_)
    outputs(fitted, X)
    assert vars(fitted).keys() == before.keys()
    assert all(vars(fitted)[k] is v for k, v in before.items())
    assert same_state(state_of(fitted.network_), weights)


def test_outputs_do_not_depend_on_batch_composition(fitted):
    """scikit-learn's check_methods_subset_invariance and check_methods_sample_order_invariance."""
    full = outputs(fitted, X)
    order = np.random.default_rng(0).permutation(len(X))
    shuffled = outputs(fitted, [X[i] for i in order])
    singles = [outputs(fitted, [text]) for text in X[:5]]
    for k, expected in enumerate(full):
        parts = [(shuffled[k], expected[order]), (np.concatenate([o[k] for o in singles]), expected[:5])]
        for got, want in parts:
            if expected.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_method_signatures(cls, tiny_bert):
    import inspect

    est = make(cls, tiny_bert)
    assert list(inspect.signature(est.fit).parameters) == ["X", "y"]
    assert list(inspect.signature(est.transform).parameters) == ["X"]
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(est, method):
            assert list(inspect.signature(getattr(est, method)).parameters) == ["X"]
    if cls is not CARLEmbedder:
        assert list(inspect.signature(est.score).parameters)[:2] == ["X", "y"]


@pytest.mark.parametrize("first, second", [("labels", "va"), ("va", "labels")])
def test_embedder_refit_forgets_the_previous_kind_of_targets(tiny_bert, first, second):
    targets = {"labels": LABELS, "va": VA}
    attributes = {"labels": {"classes_", "va_map_"}, "va": {"n_outputs_"}}
    emb = make(CARLEmbedder, tiny_bert).fit(X, targets[first])
    assert all(hasattr(emb, a) for a in attributes[first])
    emb.fit(X, targets[second])
    assert all(hasattr(emb, a) for a in attributes[second])
    stale = [a for a in attributes[first] if hasattr(emb, a)]
    assert not stale, stale


SHUFFLED_INDEX = np.random.default_rng(0).permutation(np.arange(100, 100 + len(X)))
CONTAINERS = {
    "list": lambda texts: list(texts),
    "tuple": lambda texts: tuple(texts),
    "object_array": lambda texts: np.asarray(texts, dtype=object),
    "unicode_array": lambda texts: np.asarray(texts),
    # a shuffled index: the rows must come out in the Series' order, not sorted by index
    "series": lambda texts: pd.Series(texts, index=SHUFFLED_INDEX[: len(texts)]),
}


@pytest.mark.parametrize("container", [c for c in CONTAINERS if c != "list"])
def test_fit_on_every_text_container(fitted, tiny_bert, container):
    cls = type(fitted)
    est = make(cls, tiny_bert).fit(CONTAINERS[container](X), targets_for(cls))
    assert_same_outputs(outputs(est, X), outputs(fitted, X))


def test_fit_on_pandas_texts_and_targets(fitted, tiny_bert):
    """A Series of texts with a DataFrame (VA) or Series (labels) of targets sharing its index."""
    cls = type(fitted)
    y = targets_for(cls)
    y = (pd.Series(y, index=SHUFFLED_INDEX) if y.ndim == 1
         else pd.DataFrame(y, columns=["valence", "arousal"], index=SHUFFLED_INDEX))
    est = make(cls, tiny_bert).fit(CONTAINERS["series"](X), y)
    # A DataFrame's values are column-major, so NumPy's reductions (the regressor's target mean and scale)
    # can differ in the last bit; everything else is identical.
    for got, expected in zip(outputs(est, X), outputs(fitted, X)):
        if np.asarray(expected).dtype.kind == "f":
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_array_equal(got, expected)


def test_predict_on_every_text_container(fitted):
    expected = outputs(fitted, list(X))
    for make_container in CONTAINERS.values():
        assert_same_outputs(outputs(fitted, make_container(X)), expected)


def test_feature_names_out(fitted_embedder):
    names = fitted_embedder.get_feature_names_out()
    assert list(names) == [f"carlembedder{i}" for i in range(HIDDEN)]
    assert len(names) == fitted_embedder.transform(X[:2]).shape[1]


def test_embedder_fit_transform_equals_fit_then_transform(fitted_embedder, tiny_bert):
    Z = make(CARLEmbedder, tiny_bert).fit_transform(X, VA)
    np.testing.assert_array_equal(Z, fitted_embedder.transform(X))
    assert Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)


def test_set_output_pandas(fitted_embedder):
    emb = roundtrip(fitted_embedder)
    dense = emb.transform(X)
    assert emb.set_output(transform="pandas") is emb
    frame = emb.transform(X)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(emb.get_feature_names_out())
    assert isinstance(frame.index, pd.RangeIndex) and len(frame) == len(X)
    np.testing.assert_array_equal(frame.to_numpy(), dense)
    # a Series keeps its index: rows stay attached to their texts
    series = pd.Series(X, index=SHUFFLED_INDEX)
    indexed = emb.transform(series)
    assert list(indexed.index) == list(SHUFFLED_INDEX)
    np.testing.assert_array_equal(indexed.to_numpy(), dense)
    # fit_transform is wrapped too
    refit = emb.fit_transform(series, VA)
    assert isinstance(refit, pd.DataFrame) and list(refit.index) == list(SHUFFLED_INDEX)
    emb.set_output(transform="default")
    assert isinstance(emb.transform(X[:2]), np.ndarray)
    # the global configuration works as well (for an estimator without its own set_output)
    with sklearn.config_context(transform_output="pandas"):
        frame = roundtrip(fitted_embedder).transform(X[:2])
    assert list(frame.columns) == list(emb.get_feature_names_out())


def test_warm_start_continues_from_fitted_network(fitted, tiny_bert):
    cls = type(fitted)
    y = targets_for(cls)
    cold = state_of(fitted.encoder_)
    est = make(cls, tiny_bert, warm_start=True).fit(X, y)
    first = state_of(est.encoder_)
    assert same_state(first, cold)  # nothing to continue from: the first fit is a cold fit
    est.fit(X, y)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 1
    second = state_of(est.encoder_)
    assert not same_state(second, first)  # it trained again ...
    assert not same_state(second, cold)  # ... from the first fit's weights, not from the backbone


def test_warm_start_does_not_reload_the_backbone(fitted, tiny_bert):
    """With learning rates ~0 a warm-started fit must leave the fitted weights where they were; a reload
    would bring back the pretrained weights."""
    from transformers import AutoModel

    cls = type(fitted)
    y = targets_for(cls)
    est = make(cls, tiny_bert, warm_start=True).fit(X, y)
    fitted_state = state_of(est.network_)
    est.set_params(learning_rate=1e-12, head_learning_rate=1e-12).fit(X, y)
    assert same_state(state_of(est.network_), fitted_state, atol=1e-7)
    pretrained = state_of(AutoModel.from_pretrained(tiny_bert))
    assert not same_state(state_of(est.encoder_), pretrained, atol=1e-6)


def test_warm_start_refuses_other_outputs(tiny_bert):
    clf = make(CARLClassifier, tiny_bert, warm_start=True).fit(X, LABELS)
    before = outputs(clf, X)
    other = np.where(LABELS == "calmness", "love", LABELS)  # as many classes, but not the same ones
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, other)
    assert list(clf.classes_) == sorted(CLASSES)
    assert_same_outputs(outputs(clf, X), before)  # the failed fit left the model as it was

    reg = make(CARLRegressor, tiny_bert, warm_start=True).fit(X, VA)
    before = outputs(reg, X)
    with pytest.raises(ValueError, match="warm_start"):
        reg.fit(X, VA[:, 0])
    assert_same_outputs(outputs(reg, X), before)


# =====================================================================================================
# 4. Class labels the default table does not know (estimator-specific tests: test_regressor.py,
#    test_classifier.py)
# =====================================================================================================
@pytest.mark.parametrize("cls", [CARLClassifier, CARLEmbedder], ids=ids)
def test_unknown_labels_are_listed(cls, tiny_bert):
    labels = LABELS.astype(object)
    labels[0], labels[1] = "blorp", "zorglub"
    with pytest.raises(ValueError, match="default valence-arousal table") as info:
        make(cls, tiny_bert, va_map=None).fit(X, labels)
    assert "blorp" in str(info.value) and "zorglub" in str(info.value)
    assert "'joy'" not in str(info.value).split("Known names")[0]  # only the unknown ones are listed


# =====================================================================================================
# 5. Composition with scikit-learn tools
# =====================================================================================================
def test_pipeline_embedder_logistic_regression_on_emotion_names(tiny_bert):
    pipe = Pipeline([("emb", make(CARLEmbedder, tiny_bert)), ("clf", LogisticRegression(max_iter=500))])
    assert pipe.fit(X, LABELS) is pipe
    emb = pipe.named_steps["emb"]
    assert list(emb.classes_) == sorted(CLASSES)  # the names were read as classes ...
    assert emb.va_map_ == {c: DEFAULT_VA_TABLE[c] for c in CLASSES}  # ... placed by the default table
    pred = pipe.predict(X)
    assert set(pred) <= set(CLASSES)
    assert pipe.predict_proba(X).shape == (len(X), 4)
    assert 0.0 <= pipe.score(X, LABELS) <= 1.0


def test_pipeline_embedder_ridge_on_va(tiny_bert):
    pipe = Pipeline([("emb", make(CARLEmbedder, tiny_bert)), ("ridge", Ridge())]).fit(X, VA)
    assert pipe.named_steps["emb"].n_outputs_ == 2
    assert pipe.predict(X).shape == (len(X), 2)
    assert np.isfinite(pipe.score(X, VA))


def _torch_threads(estimator, X, y):
    """A 'scorer' that reports how many threads torch uses where the fold was fitted."""
    return float(torch.get_num_threads())


def _worker_threads():
    return torch.get_num_threads()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_carl_and_head_parameters(tiny_bert, n_jobs):
    pipe = Pipeline([("emb", make(CARLEmbedder, tiny_bert)), ("clf", LogisticRegression(max_iter=500))])
    grid = {"emb__temperature": [0.05, 0.1], "clf__C": [0.1, 1.0]}
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=n_jobs, error_score="raise",
                          scoring={"acc": "accuracy", "threads": _torch_threads}, refit="acc")
    search.fit(X, LABELS)
    results = search.cv_results_
    assert len(results["params"]) == 4
    assert np.isfinite(results["mean_test_acc"]).all()
    assert search.best_params_ in results["params"]
    best = search.best_estimator_
    assert best.named_steps["emb"].temperature == search.best_params_["emb__temperature"]
    assert hasattr(best.named_steps["emb"], "network_")
    assert set(search.predict(X)) <= set(CLASSES)
    # torch in every fold's process must not oversubscribe the cores: loky caps each worker's threads
    cpus = os.cpu_count()
    for split in range(2):
        threads = results[f"split{split}_test_threads"]
        assert (threads * n_jobs <= cpus).all(), threads
    threads = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_worker_threads)() for _ in range(n_jobs))
    assert all(t * n_jobs <= cpus for t in threads), threads


def test_grid_search_gives_the_same_scores_with_one_or_two_jobs(tiny_bert):
    pipe = Pipeline([("emb", make(CARLEmbedder, tiny_bert)), ("ridge", Ridge())])
    grid = {"emb__temperature": [0.05, 0.1], "ridge__alpha": [1.0]}
    scores = [GridSearchCV(pipe, grid, cv=2, n_jobs=n, error_score="raise").fit(X, VA)
              .cv_results_["mean_test_score"] for n in (1, 2)]
    # folds are seeded: only the thread count differs between the two runs
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-3, atol=1e-3)


def test_randomized_search(tiny_bert):
    search = RandomizedSearchCV(
        make(CARLRegressor, tiny_bert),
        {"temperature": [0.05, 0.1], "regression_weight": uniform(0.5, 1.0)},
        n_iter=2, cv=2, random_state=0, error_score="raise",
    ).fit(X, VA)
    assert len(search.cv_results_["params"]) == 2
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.regression_weight == search.best_params_["regression_weight"]
    assert search.predict(X).shape == (len(X), 2)


@pytest.mark.parametrize("cls", [CARLRegressor, CARLClassifier], ids=ids)
def test_cross_val_score_and_cross_validate(cls, tiny_bert):
    est, y = make(cls, tiny_bert), targets_for(cls)
    scores = cross_val_score(est, X, y, cv=2, error_score="raise")
    assert scores.shape == (2,) and np.isfinite(scores).all()
    # the same numbers as fitting the folds by hand (fits are seeded)
    splits = check_cv(2, y, classifier=cls is CARLClassifier).split(X, y)
    manual = [clone(est).fit([X[i] for i in train], y[train]).score([X[i] for i in test], y[test])
              for train, test in splits]
    np.testing.assert_allclose(scores, manual, rtol=1e-12)
    if cls is CARLClassifier:
        assert ((0 <= scores) & (scores <= 1)).all()

    result = cross_validate(est, X, y, cv=2, return_estimator=True, return_train_score=True,
                            error_score="raise")
    assert {"fit_time", "score_time", "test_score", "train_score", "estimator"} <= set(result)
    np.testing.assert_allclose(result["test_score"], scores, rtol=1e-12)
    for fold_est in result["estimator"]:
        assert hasattr(fold_est, "network_") and fold_est.get_params() == est.get_params()
        assert fold_est.n_iter_ == 1


def test_cross_validate_in_parallel_returns_working_estimators(tiny_bert):
    """With n_jobs=2 the fitted estimators come back from loky workers through pickling."""
    est = make(CARLRegressor, tiny_bert)
    kwargs = dict(cv=2, return_estimator=True, error_score="raise")
    sequential = cross_validate(est, X, VA, **kwargs)
    parallel = cross_validate(est, X, VA, n_jobs=2, **kwargs)
    # the folds are seeded; only the number of torch threads (hence float rounding) differs
    np.testing.assert_allclose(parallel["test_score"], sequential["test_score"], rtol=1e-3, atol=1e-3)
    for a, b in zip(sequential["estimator"], parallel["estimator"]):
        assert b.device_.type == "cpu" and b.encoder_ is b.network_.encoder
        np.testing.assert_allclose(b.predict(X), a.predict(X), rtol=1e-3, atol=1e-3)


def test_pipeline_memory_caches_the_fitted_embedder(tiny_bert, tmp_path):
    memory = joblib.Memory(tmp_path, verbose=0)
    first = Pipeline([("emb", make(CARLEmbedder, tiny_bert)), ("ridge", Ridge(alpha=1.0))], memory=memory)
    second = Pipeline([("emb", make(CARLEmbedder, tiny_bert)), ("ridge", Ridge(alpha=100.0))], memory=memory)
    first.fit(X, VA)
    second.fit(X, VA)
    emb1, emb2 = first.named_steps["emb"], second.named_steps["emb"]
    assert emb2.fit_time_ == emb1.fit_time_  # the embedder came from the cache: it was not refitted
    np.testing.assert_array_equal(emb2.transform(X), emb1.transform(X))
    assert not np.allclose(first.predict(X), second.predict(X))


def test_feature_union_with_tfidf(tiny_bert):
    union = FeatureUnion([("carl", make(CARLEmbedder, tiny_bert)), ("tfidf", TfidfVectorizer())])
    Z = union.fit_transform(X, VA)
    vocab = len(union.named_transformers["tfidf"].vocabulary_)
    assert Z.shape == (len(X), HIDDEN + vocab)
    names = union.get_feature_names_out()
    assert len(names) == HIDDEN + vocab and names[0] == "carl__carlembedder0"
    dense = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    np.testing.assert_allclose(dense[:, :HIDDEN], union.named_transformers["carl"].transform(X), rtol=1e-6)


# =====================================================================================================
# 6. Persistence
# =====================================================================================================
def _pickle_roundtrip(est):
    return pickle.loads(pickle.dumps(est))


def _joblib_roundtrip(est):
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


def _joblib_mmap_roundtrip(est):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.joblib")
        joblib.dump(est, path)
        return joblib.load(path, mmap_mode="r")  # arrays come back as read-only memory maps


@pytest.mark.parametrize("load", [_pickle_roundtrip, _joblib_roundtrip, _joblib_mmap_roundtrip,
                                  copy.deepcopy],
                         ids=["pickle", "joblib", "joblib_mmap", "deepcopy"])
def test_persistence_roundtrip_identical(fitted, load):
    expected = outputs(fitted, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same version, same device: no warning
        loaded = load(fitted)
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.encoder_ is loaded.network_.encoder
    assert loaded.network_ is not fitted.network_
    assert_same_outputs(outputs(loaded, X), expected)
    # unfitted estimators round-trip too
    fresh = load(clone(fitted))
    assert fresh.get_params() == fitted.get_params() and not hasattr(fresh, "network_")


class _TypeRecorder(pickle.Pickler):
    """A pickler that records the type of every object it serialises."""

    def __init__(self):
        super().__init__(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
        self.types = []

    def reducer_override(self, obj):
        self.types.append(obj if isinstance(obj, type) else type(obj))
        return NotImplemented


def _recorded_types(obj):
    recorder = _TypeRecorder()
    recorder.dump(obj)
    return recorder.types


FORBIDDEN = ("CARLTrainer", "KeyQueue", "Optimizer", "LRScheduler", "GradScaler", "TokenPerturber")


@pytest.fixture(params=["default", "with detection"])
def fitted_with_or_without_detection(request, fitted, tiny_bert):
    """The fitted estimator, and (detection being off by default) one fitted with the perturber in use."""
    if request.param == "default":
        return fitted
    return make(type(fitted), tiny_bert, detection_weight=0.1).fit(X, targets_for(type(fitted)))


def test_pickled_state_holds_no_training_machinery(fitted_with_or_without_detection):
    from skcarl.network import CARLNetwork

    fitted = fitted_with_or_without_detection
    state = fitted.__getstate__()
    assert state["_skcarl_version"] == skcarl.__version__
    assert isinstance(state["network_"], bytes)  # the network travels as a torch.save blob
    assert "encoder_" not in state  # it is network_.encoder, restored on load
    for key, value in state.items():
        assert not isinstance(value, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)), key
        assert not isinstance(value, torch.nn.Module), key
    # nothing anywhere in the pickled state, nor inside the network, is an optimiser, trainer or queue
    for types in (_recorded_types(state), _recorded_types(fitted.network_)):
        for t in types:
            assert not issubclass(t, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)), t
            assert not any(name in t.__name__ for name in FORBIDDEN), t
    # exactly one network: no momentum key encoder kept alongside (or inside) it
    assert sum(isinstance(m, CARLNetwork) for m in fitted.network_.modules()) == 1
    n_encoders = sum(type(m) is type(fitted.encoder_) for m in fitted.network_.modules())
    assert n_encoders == 1
    parameter_bytes = sum(t.numel() * t.element_size() for t in fitted.network_.state_dict().values())
    assert len(state["network_"]) < 1.5 * parameter_bytes
    assert len(pickle.dumps(fitted)) < 1.5 * parameter_bytes + 2_000_000  # + tokenizer and small attributes


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="simulates a CUDA-trained model on a machine without CUDA")
def test_model_trained_on_cuda_loads_on_cpu(fitted):
    expected = outputs(fitted, X)
    est = roundtrip(fitted)
    est.device_ = torch.device("cuda")  # as if it had been trained on a GPU
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        moved = pickle.loads(pickle.dumps(est))
    assert moved.device_.type == "cpu"
    assert all(p.device.type == "cpu" for p in moved.network_.parameters())
    assert_same_outputs(outputs(moved, X), expected)
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        moved_joblib = _joblib_roundtrip(est)
    assert_same_outputs(outputs(moved_joblib, X), expected)


def test_version_is_stored_and_mismatch_warns(fitted):
    state = fitted.__getstate__()
    assert state["_skcarl_version"] == skcarl.__version__
    state["_skcarl_version"] = "0.0.1"
    fresh = type(fitted).__new__(type(fitted))
    with pytest.warns(UserWarning, match=r"skcarl 0\.0\.1") as record:
        fresh.__setstate__(state)
    assert skcarl.__version__ in str(record[0].message)
    assert_same_outputs(outputs(fresh, X), outputs(fitted, X))
    # the unpickled estimator carries no version attribute of its own
    assert "_skcarl_version" not in vars(fresh)
