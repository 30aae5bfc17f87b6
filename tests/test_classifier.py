"""CARLClassifier: string, integer and multi-label classes, class weights, decision function."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make, quadrant_labels, synthetic_affect
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

from skcarl import CARLClassifier
from skcarl._va_table import DEFAULT_VA_TABLE
from skcarl.inference import map_texts

CLASSES = ["joy", "anger", "sadness", "calmness"]  # all in skcarl's default VA table
X, VA = synthetic_affect(48, seed=0)


LABELS = quadrant_labels(VA)


@pytest.fixture(scope="module")
def fitted_classifier(tiny_bert):
    """One fitted CARLClassifier; tests that change it fit their own."""
    return make(CARLClassifier, tiny_bert).fit(X, LABELS)


# imbalanced: 12 joy, 12 calmness, 6 anger, 3 sadness
IMBALANCED = np.concatenate([np.flatnonzero(LABELS == c)[:n] for c, n in
                             [("joy", 12), ("calmness", 12), ("anger", 6), ("sadness", 3)]])


def _indicator():
    """Quadrant one-hot, plus 'joy' on every third text: multi-label rows."""
    matrix = (LABELS[:, None] == np.array(CLASSES)[None]).astype(int)
    matrix[::3, 0] = 1
    return matrix


MULTILABEL_FORMATS = {
    "numpy": lambda m: m,
    "dataframe": lambda m: pd.DataFrame(m, columns=CLASSES),
    "label_lists": lambda m: [[c for c, on in zip(CLASSES, row) if on] for row in m],
}


def test_classifier_string_labels(fitted_classifier):
    fitted = fitted_classifier
    assert list(fitted.classes_) == sorted(CLASSES)
    assert fitted.multilabel_ is False
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 4)
    assert (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-10)
    decision = fitted.decision_function(X)
    assert decision.shape == (len(X), 4)
    np.testing.assert_allclose(softmax(decision.astype(np.float64), axis=1), proba, rtol=1e-6)
    pred = fitted.predict(X)
    assert pred.shape == (len(X),)
    assert set(pred) <= set(fitted.classes_)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    assert 0.0 <= fitted.score(X, LABELS) <= 1.0
    assert fitted.va_map_ == {c: DEFAULT_VA_TABLE[c] for c in CLASSES}


def test_classifier_integer_labels_with_va_map(tiny_bert):
    ints = np.array([CLASSES.index(label) for label in LABELS])
    va_map = {0: (7.5, 7.5), 1: (2.5, 7.5), 2: (2.5, 2.5), 3: (7.5, 2.5)}
    clf = make(CARLClassifier, tiny_bert, va_map=va_map).fit(X, ints)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2, 3])
    pred = clf.predict(X)
    assert pred.dtype.kind == "i" and set(pred.tolist()) <= {0, 1, 2, 3}
    assert clf.predict_proba(X).shape == (len(X), 4)
    assert clf.va_map_ == {k: tuple(float(x) for x in v) for k, v in va_map.items()}


def test_classifier_integer_labels_need_va_map(tiny_bert):
    ints = np.array([CLASSES.index(label) for label in LABELS])
    with pytest.raises(ValueError, match="not in skcarl's default valence-arousal table"):
        make(CARLClassifier, tiny_bert).fit(X, ints)


def test_classifier_binary_decision_function(tiny_bert):
    keep = np.isin(LABELS, ["joy", "sadness"])
    texts, labels = [t for t, k in zip(X, keep) if k], LABELS[keep]
    clf = make(CARLClassifier, tiny_bert, batch_size=8).fit(texts, labels)
    np.testing.assert_array_equal(clf.classes_, ["joy", "sadness"])
    decision = clf.decision_function(texts)
    assert decision.shape == (len(texts),)
    proba = clf.predict_proba(texts)
    assert proba.shape == (len(texts), 2)
    np.testing.assert_allclose(proba[:, 1], expit(decision.astype(np.float64)), rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(texts), clf.classes_[(decision > 0).astype(int)])


@pytest.mark.parametrize("class_weight", [None, "balanced", {"sadness": 4.0, "anger": 2.0}],
                         ids=["none", "balanced", "dict"])
def test_classifier_class_weight(tiny_bert, class_weight):
    texts, labels = [X[i] for i in IMBALANCED], LABELS[IMBALANCED]
    clf = make(CARLClassifier, tiny_bert, class_weight=class_weight).fit(texts, labels)
    classes = np.unique(labels)
    if class_weight is None:
        expected = np.ones(4)
    elif class_weight == "balanced":
        expected = compute_class_weight("balanced", classes=classes, y=labels)
        assert not np.allclose(expected, 1.0)
    else:
        expected = np.array([class_weight.get(c, 1.0) for c in classes])
    assert clf.class_weight_.shape == (4,)
    np.testing.assert_allclose(clf.class_weight_, expected, rtol=1e-6)
    assert clf.predict_proba(texts).shape == (len(texts), 4)


def test_classifier_class_weight_unknown_class(tiny_bert):
    with pytest.raises(ValueError, match="surprise"):
        make(CARLClassifier, tiny_bert, class_weight={"surprise": 2.0}).fit(X, LABELS)


@pytest.mark.parametrize("fmt", MULTILABEL_FORMATS)
def test_classifier_multilabel(tiny_bert, fmt):
    indicator = _indicator()
    assert (indicator.sum(1) == 2).any()
    y = MULTILABEL_FORMATS[fmt](indicator)
    # an unnamed indicator matrix's classes are the column indices: they need their own VA points
    va_map = {i: DEFAULT_VA_TABLE[c] for i, c in enumerate(CLASSES)} if fmt == "numpy" else None
    clf = make(CARLClassifier, tiny_bert, va_map=va_map).fit(X, y)
    assert clf.multilabel_ is True
    expected_classes = {"numpy": [0, 1, 2, 3], "dataframe": CLASSES, "label_lists": sorted(CLASSES)}[fmt]
    assert list(clf.classes_) == expected_classes
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 4)
    assert (proba >= 0).all() and (proba <= 1).all()
    assert not np.allclose(proba.sum(1), 1.0)  # independent sigmoids, not a softmax
    decision = clf.decision_function(X)
    assert decision.shape == (len(X), 4)
    np.testing.assert_allclose(expit(decision.astype(np.float64)), proba, rtol=1e-6)
    pred = clf.predict(X)
    assert pred.shape == (len(X), 4)
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(int))


def test_classifier_multilabel_label_lists_sort_classes_like_sklearn(tiny_bert):
    from sklearn.preprocessing import MultiLabelBinarizer

    y = [[1], [2], [10], [1, 10]] * (len(X) // 4)
    va_map = {1: (0.2, 0.3), 2: (0.5, 0.5), 10: (0.9, 0.8)}
    clf = make(CARLClassifier, tiny_bert, va_map=va_map).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, MultiLabelBinarizer().fit(y).classes_)  # [1, 2, 10]


def test_classifier_multilabel_balanced_class_weight(tiny_bert):
    indicator = _indicator()
    y = pd.DataFrame(indicator, columns=CLASSES)
    clf = make(CARLClassifier, tiny_bert, class_weight="balanced").fit(X, y)
    expected = len(X) / (len(CLASSES) * indicator.sum(0))  # n_samples / (n_classes * positives of each class)
    assert not np.allclose(expected, 1.0)
    np.testing.assert_allclose(clf.class_weight_, expected, rtol=1e-6)


@pytest.mark.parametrize("fmt", ["numpy", "dataframe"])
def test_classifier_multilabel_rejects_non_binary_matrix(tiny_bert, fmt):
    y = MULTILABEL_FORMATS[fmt](_indicator() * 2)
    with pytest.raises(ValueError, match="only 0 and 1"):
        make(CARLClassifier, tiny_bert, va_map="learn").fit(X, y)


def test_classifier_single_class(tiny_bert):
    with pytest.raises(ValueError, match="at least 2 classes"):
        make(CARLClassifier, tiny_bert).fit(X, ["joy"] * len(X))


# ======================================================================================================= learning
def test_classifier_learns_quadrant_emotions(tiny_bert):
    """The words of each text reveal its quadrant; the classifier must find them well above chance."""

    X, _ = synthetic_affect(n=96, seed=1)
    labels = np.array(["joy", "calmness", "sadness", "anger"])[np.arange(96) % 4]
    clf = CARLClassifier(tiny_bert, batch_size=16, max_epochs=12, queue_size=16, learning_rate=1e-3,
                         random_state=0).fit(X[:64], labels[:64])
    assert clf.score(X[64:], labels[64:]) >= 0.75


# ==================================================================================================== head refit
def _pooled(clf, texts):
    network = clf._fitted_network()
    features, _ = map_texts(network.pooled_features, network.encoder.config.hidden_size, clf.tokenizer_, texts,
                            max_length=clf.max_length, batch_size=8, device="cpu", network=network)
    return features.astype(np.float64)


def test_head_refit_sets_the_head_to_a_logistic_regression_on_the_tuned_features(tiny_bert):
    clf = make(CARLClassifier, tiny_bert).fit(X, LABELS)
    features = _pooled(clf, X)
    scale = np.linalg.norm(features, axis=1).mean()
    probe = LogisticRegression(max_iter=1000).fit(features / scale, LABELS)
    assert probe.classes_.tolist() == clf.classes_.tolist()
    np.testing.assert_allclose(clf.decision_function(X), probe.decision_function(features / scale),
                               rtol=1e-4, atol=1e-4)


def test_without_head_refit_the_jointly_trained_head_stays_and_the_encoder_is_the_same(tiny_bert):
    refit = make(CARLClassifier, tiny_bert).fit(X, LABELS)
    joint = make(CARLClassifier, tiny_bert, head_refit=False).fit(X, LABELS)
    for a, b in zip(refit.encoder_.state_dict().values(), joint.encoder_.state_dict().values()):
        assert torch.equal(a, b)  # the refit touches the head only
    assert not np.allclose(refit.decision_function(X), joint.decision_function(X), atol=1e-3)


def test_head_refit_with_multilabel_targets_and_class_weights(tiny_bert):
    y = pd.DataFrame(_indicator(), columns=CLASSES)
    clf = make(CARLClassifier, tiny_bert, class_weight="balanced").fit(X, y)
    assert clf.classes_.tolist() == CLASSES and clf.class_weight_[0] < 1  # joy: the most frequent class
    features = _pooled(clf, X) / np.linalg.norm(_pooled(clf, X), axis=1).mean()
    # a class's weight scales its binary cross-entropy: its logistic regression's C
    joy = LogisticRegression(C=clf.class_weight_[0], max_iter=1000).fit(features, y["joy"])
    np.testing.assert_allclose(clf.decision_function(X)[:, 0], joy.decision_function(features), rtol=1e-4, atol=1e-4)
    assert clf.predict(X).shape == _indicator().shape
