"""Validation before training: the parameter tables and their one public path (validate_params), bad texts, bad
targets and bad parameters, each refused with a clear message before a backbone is loaded."""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, fit_each, infer, label_arrays, make, quadrant_labels, synthetic_affect
from hypothesis import given, settings
from hypothesis import strategies as st

import skcarl
import skcarl.regressor
import skcarl.training
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl._base import _CARLBase
from skcarl._param_validation import Interval, validate_parameter_constraints
from skcarl._validation import check_continuous_targets, check_texts

ESTIMATORS = [CARLEmbedder, CARLRegressor, CARLClassifier]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_init_parameter_has_a_constraint_and_every_constraint_a_parameter(cls):
    parameters = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(cls._parameter_constraints) == parameters


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_a_subclass_table_extends_the_shared_one_unchanged(cls):
    shared = _CARLBase._parameter_constraints
    assert {name: cls._parameter_constraints[name] for name in shared} == shared


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_validate_params_is_public_and_passes_at_the_defaults(cls):
    cls().validate_params()
    with pytest.raises(ValueError, match=rf"^The 'batch_size' parameter of {cls.__name__} must be an int in the "
                                         r"range \[1, inf\)\. Got 0 instead\.$"):
        cls(batch_size=0).validate_params()


@pytest.mark.parametrize("value, shown", [("auto", None), (0.5, None), ("sharp", "'sharp'"), (0, "0")])
def test_an_entry_with_several_constraints_lists_them_all(value, shown):
    est = CARLEmbedder(label_temperature=value)
    if shown is None:
        est.validate_params()
        return
    with pytest.raises(ValueError, match=r"must be a float in the range \(0, inf\) or 'auto'\. "
                                         rf"Got {shown} instead\.$"):
        est.validate_params()


def test_the_pairs_that_must_agree_are_checked_after_the_table():
    est = CARLEmbedder(saliency_refresh="cached", perturbation="adversarial", detection_weight=0.1)
    with pytest.raises(ValueError, match="saliency_refresh='cached' cannot be combined with perturbation="):
        est.validate_params()
    with pytest.raises(ValueError, match="perturbed_view_weight > 0 or consistency_weight > 0"):
        CARLEmbedder(saliency_refresh="cached", consistency_weight=1.0).validate_params()


# ======================================================================================== bad X, bad y, bad parameters
X, VA = synthetic_affect(48, seed=0)
LABELS = quadrant_labels(VA)


def ids(value):
    return value.__name__ if isinstance(value, type) else repr(value)


def targets_for(cls):
    return LABELS if cls is CARLClassifier else VA


@pytest.fixture(scope="module")
def models(tiny_bert):
    """One fitted estimator of each kind; tests that change one work on a pickled copy."""
    return fit_each(tiny_bert, X, VA)


def no_fitted_attributes(est):
    return not [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


BAD_ELEMENTS = [None, float("nan"), np.nan, pd.NA, 7, 3.5, np.float64(2.0), np.int64(3), True, b"bytes",
                ["a", "list"], {"a": "dict"}]


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


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
NOT_TEXT = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=5),
                     st.lists(st.text(max_size=3), max_size=2), st.booleans())


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
@pytest.mark.parametrize("bare", ["i feel happy today", b"i feel happy today"], ids=["str", "bytes"])
def test_a_bare_string_is_refused(cls, bare, tiny_bert, models):
    with pytest.raises(ValueError, match="Iterable over raw text documents expected, string object received"):
        make(cls, tiny_bert).fit(bare, targets_for(cls)[:1])
    with pytest.raises(ValueError, match="string object received"):
        infer(models[cls], bare)


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
    # the adversarial shift has no token norm to scale by: it leaves the batch alone, the losses stay finite
    est = make(CARLEmbedder, tiny_bert, batch_size=4, consistency_weight=10.0, perturbation="adversarial",
               perturb_eps=0.1).fit(blank, VA[:6])
    assert np.isfinite(est.loss_curve_).all() and np.isfinite(est.history_[0]["consistency_loss"])


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
