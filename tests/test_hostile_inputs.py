"""Hostile and careless inputs of issue 24: each gets a clear error before training, and no fit ever ends with a
model that computes NaN or infinity.

Sections: class_weight and va_map; labels of mixed types; absurd targets and updates; parameters changed with
set_params after fit; backbone folders that are not what they claim. Every model is conftest's tiny BERT.
"""

import os
import pickle
import shutil
from collections import OrderedDict
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import infer, synthetic_affect, tiny_bert_folder

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.backbone import BackboneNotFoundError, load_backbone

FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(32, seed=2)
LABELS = np.where(VA[:, 0] > 5, np.where(VA[:, 1] > 5, "joy", "calmness"), np.where(VA[:, 1] > 5, "anger", "sadness"))
ESTIMATORS = [CARLEmbedder, CARLRegressor, CARLClassifier]


def ids(value):
    return value.__name__ if isinstance(value, type) else repr(value)


def targets_for(cls):
    return LABELS if cls is CARLClassifier else VA




@pytest.fixture(scope="module")
def models(tiny_bert):
    return {cls: cls(tiny_bert, **FAST).fit(X, targets_for(cls)) for cls in ESTIMATORS}


def no_backbone(monkeypatch):
    """Fail the test if fit gets as far as loading the backbone (validation must come first)."""
    import skcarl._base

    def load(*args):
        raise AssertionError("the backbone was loaded: the input was not refused before training")

    monkeypatch.setattr(skcarl._base, "load_backbone", load)


def assert_sklearn_message(message, cls, name, value):
    assert message.startswith(f"The '{name}' parameter of {cls.__name__} must be "), message
    assert message.endswith(f"Got {value!r} instead."), message


# ====================================================================================== class_weight and va_map
BAD_CLASS_WEIGHTS = [
    {"joy": -1.0}, {"joy": np.nan}, {"joy": np.inf}, {"joy": -np.inf}, {"joy": "2"}, {"joy": None},
    {"joy": True}, {"joy": [1.0]}, {"joy": 1e300}, {"joy": 1 + 2j}, {"joy": np.array([1.0, 2.0])}, {},
    np.array([1.0, 2.0, 3.0, 4.0]), [1.0, 2.0], (1, 2), 1.0, "auto", "Balanced", pd.Series({"joy": 2.0}),
]


@pytest.mark.parametrize("weight", BAD_CLASS_WEIGHTS, ids=repr)
def test_bad_class_weights_are_refused_before_training(weight, monkeypatch):
    no_backbone(monkeypatch)
    est = CARLClassifier("no-such-backbone", **FAST, class_weight=weight)
    with pytest.raises(ValueError) as info:
        est.fit(X, LABELS)
    assert str(info.value).startswith("The 'class_weight' parameter of CARLClassifier must be "), str(info.value)
    assert "network_" not in vars(est)


@pytest.mark.parametrize("weight, message", [
    ({"happiness": 2.0}, r"class_weight names class\(es\) \['happiness'\] that are not in y"),
    ({"joy": 0, "calmness": 0, "anger": 0, "sadness": 0.0}, "weight 0 to every class of y"),
], ids=["unknown class", "all zero"])
def test_class_weights_that_do_not_fit_y_are_refused_before_training(weight, message, monkeypatch):
    no_backbone(monkeypatch)
    with pytest.raises(ValueError, match=message):
        CARLClassifier("no-such-backbone", **FAST, class_weight=weight).fit(X, LABELS)


@pytest.mark.parametrize("weight", [
    {"joy": 0, "calmness": 0}, OrderedDict(joy=2.0), MappingProxyType({"anger": np.float32(3.0)}), {"sadness": 7},
], ids=["some zero", "OrderedDict", "mappingproxy", "int weight"])
def test_valid_class_weights_train_to_finite_outputs(weight, tiny_bert):
    # zero weights, with batches of 2 texts that often hold only zero-weight classes: never 0/0 in the loss
    est = CARLClassifier(tiny_bert, **{**FAST, "batch_size": 2}, class_weight=weight).fit(X, LABELS)
    assert np.isfinite(est.predict_proba(X)).all()
    expected = [float(weight.get(c, 1.0)) for c in est.classes_]
    np.testing.assert_allclose(est.class_weight_, expected)


BAD_VA_MAPS = [
    {"joy": (1, 2), "calmness": (1,), "anger": (2, 2), "sadness": (3, 3)},       # unequal lengths
    {"joy": ("high", 2), "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},  # not numbers
    {"joy": "0.9,0.8", "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},    # a string point
    {"joy": (np.nan, 2), "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},
    {"joy": (np.inf, 2), "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},
    {"joy": (1e300, 2), "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},   # overflows float32
    {"joy": (True, 2), "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},
    {"joy": None, "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},
    {"joy": (), "calmness": (), "anger": (), "sadness": ()},
    {"joy": ((1, 2),), "calmness": ((1, 2),), "anger": ((1, 2),), "sadness": ((1, 2),)},  # nested
    {"joy": {"v": 1, "a": 2}, "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},
    {"joy": [1, 2 + 1j], "calmness": (1, 2), "anger": (2, 2), "sadness": (3, 3)},
    {}, np.array([[0.9, 0.8], [0.1, 0.2]]), [("joy", (1, 2))], 3, "learned", "LEARN", b"learn",
    pd.DataFrame({"joy": [1, 2]}),
]


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLClassifier], ids=ids)
@pytest.mark.parametrize("va_map", BAD_VA_MAPS, ids=lambda v: repr(v)[:40])
def test_bad_va_maps_are_refused_before_training(cls, va_map, monkeypatch):
    no_backbone(monkeypatch)
    est = cls("no-such-backbone", **FAST, va_map=va_map)
    with pytest.raises(ValueError) as info:
        est.fit(X, LABELS)
    assert str(info.value).startswith(f"The 'va_map' parameter of {cls.__name__} must be "), str(info.value)


def test_a_va_map_with_numpy_points_and_scalars_trains(tiny_bert):
    points = {"joy": np.array([8.0, 7.0]), "calmness": [7, np.int64(2)], "anger": (2.0, 8.0),
              "sadness": np.float32([2, 2])}
    est = CARLClassifier(tiny_bert, **FAST, va_map=MappingProxyType(points)).fit(X, LABELS)
    assert est.va_map_["calmness"] == (7.0, 2.0)
    one_d = CARLEmbedder(tiny_bert, **FAST, va_map={c: float(i) for i, c in enumerate(sorted(set(LABELS)))})
    assert np.isfinite(one_d.fit(X, LABELS).transform(X[:4])).all()


# ====================================================================================== labels of mixed types
MIXED_LABELS = [
    ["joy", 1] * 16,
    [1, "1"] * 16,
    [1.5, "joy"] * 16,
    [True, "joy"] * 16,
    np.array(["joy", 2] * 16, dtype=object),
    pd.Series(["joy", 2] * 16, dtype=object),
    [("joy", "anger"), (1,)] * 16,
    [["joy"], ["anger", 3]] * 16,
    [b"joy", "joy"] * 16,
]


@pytest.mark.parametrize("cls", [CARLEmbedder, CARLClassifier], ids=ids)
@pytest.mark.parametrize("y", MIXED_LABELS, ids=lambda y: repr(list(y[:2])))
def test_labels_mixing_types_are_the_documented_error(cls, y, monkeypatch):
    no_backbone(monkeypatch)
    with pytest.raises(TypeError, match=r"Mix of label input types \(.* and .*\)") as info:
        cls("no-such-backbone", **FAST, va_map="learn").fit(X, y)
    assert isinstance(info.value, ValueError)  # scikit-learn raises ValueError for the same case


@pytest.mark.parametrize("y", [[1, 2] * 16, [1.0, 2] * 16, [np.int64(1), 2] * 16, ["a", np.str_("b")] * 16],
                         ids=repr)
def test_labels_of_one_kind_are_not_mixed(y, tiny_bert):
    est = CARLClassifier(tiny_bert, **FAST, va_map="learn").fit(X, y)
    assert len(est.classes_) == 2


# ====================================================================================== absurd targets, updates
@pytest.mark.parametrize("cls", [CARLEmbedder, CARLRegressor], ids=ids)
@pytest.mark.parametrize("scale", [1e39, 1e100, 1e200, -1e300], ids=repr)
def test_targets_beyond_float32_are_refused_before_training(cls, scale, monkeypatch):
    no_backbone(monkeypatch)
    with pytest.raises(ValueError, match=r"too large for training in float32 .* the first is y\[0, 0\]"):
        cls("no-such-backbone", **FAST).fit(X, VA * scale)


@pytest.mark.parametrize("scale", [1e30, 1e-30], ids=repr)
def test_large_and_tiny_targets_that_fit_float32_give_finite_predictions(scale, tiny_bert):
    est = CARLRegressor(tiny_bert, **FAST).fit(X, VA * scale)
    predictions = est.predict(X)
    assert np.isfinite(predictions).all()
    assert np.abs(predictions).max() < 100 * scale


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
@pytest.mark.parametrize("rate", [1e30, 1e10], ids=repr)
def test_a_fit_whose_updates_explode_raises_and_keeps_nothing(cls, rate, tiny_bert):
    # one step (batch_size >= the texts): the loss guard sees only the loss before the update
    est = cls(tiny_bert, **{**FAST, "batch_size": 64, "learning_rate": rate, "head_learning_rate": rate})
    with pytest.raises(FloatingPointError, match=r"non-finite|NaN or infinity") as info:
        est.fit(X, targets_for(cls))
    assert "Lower learning_rate" in str(info.value) and repr(rate) in str(info.value)
    assert "network_" not in vars(est)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
def test_a_refit_that_explodes_keeps_the_previous_fit_whole(cls, models):
    est = pickle.loads(pickle.dumps(models[cls]))
    before = infer(est, X)
    state = {k: v.clone() for k, v in est.network_.state_dict().items()}
    for warm in (False, True):
        est.set_params(batch_size=64, learning_rate=1e30, head_learning_rate=1e30, warm_start=warm)
        with pytest.raises(FloatingPointError):
            est.fit(X, targets_for(cls))
        est.set_params(batch_size=FAST["batch_size"], learning_rate=5e-5, head_learning_rate=1e-3)
        np.testing.assert_array_equal(infer(est, X), before)
        assert all(torch.equal(v, state[k]) for k, v in est.network_.state_dict().items())


def test_non_finite_weights_after_training_are_named(tiny_bert, monkeypatch):
    import skcarl.training

    real_fit = skcarl.training.CARLTrainer.fit

    def fit_then_corrupt(self, *args, **kwargs):
        history = real_fit(self, *args, **kwargs)
        with torch.no_grad():
            next(self.network.projection.parameters())[0, 0] = float("nan")
        return history

    monkeypatch.setattr(skcarl.training.CARLTrainer, "fit", fit_then_corrupt)
    est = CARLEmbedder(tiny_bert, **FAST)
    with pytest.raises(FloatingPointError, match=r"non-finite weights .* the first projection"):
        est.fit(X, VA)
    assert "network_" not in vars(est)


# ====================================================================================== set_params after fit
INFERENCE_PARAMETERS = [("batch_size", 0), ("batch_size", -1), ("batch_size", 2.5), ("batch_size", "8"),
                        ("batch_size", None), ("max_length", "x"), ("max_length", 1), ("max_length", None),
                        ("max_length", 1e9), ("use_amp", "yes"), ("compile", "no"), ("device", "meta"),
                        ("device", "xpu:0"), ("device", "garbage"), ("device", 3.5)]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=ids)
@pytest.mark.parametrize("name, value", INFERENCE_PARAMETERS, ids=repr)
def test_bad_parameters_set_after_fit_are_refused_by_inference_with_fit_messages(cls, name, value, models):
    est = pickle.loads(pickle.dumps(models[cls]))
    est.set_params(**{name: value})
    methods = [est.transform, est.explain] + ([est.predict] if hasattr(est, "predict") else []) + \
        ([est.predict_proba, est.decision_function] if cls is CARLClassifier else [])
    for method in methods:
        with pytest.raises(ValueError) as info:
            method(X[:3])
        assert_sklearn_message(str(info.value), cls, name, value)
    with pytest.raises(ValueError) as fit_info:  # the very message fit gives
        est.fit(X, targets_for(cls))
    assert str(fit_info.value) == str(info.value)


def test_valid_parameters_set_after_fit_are_used_by_inference(models):
    est = pickle.loads(pickle.dumps(models[CARLRegressor]))
    expected = est.predict(X)
    est.set_params(batch_size=np.int64(1), max_length=np.int32(64))
    np.testing.assert_allclose(est.predict(X), expected, rtol=1e-4, atol=1e-5)


# ====================================================================================== backbones
@pytest.fixture
def backbone(tmp_path):
    return tmp_path / "bert", tiny_bert_folder(tmp_path / "bert")


def tokenizer_files(folder):
    return [name for name in os.listdir(folder) if name.startswith(("tokenizer", "vocab", "special_tokens"))]


def test_a_backbone_folder_without_tokenizer_files_is_refused(backbone):
    folder, path = backbone
    for name in tokenizer_files(folder):
        os.remove(folder / name)
    with pytest.raises(BackboneNotFoundError, match=r"holds no tokenizer file \(one of tokenizer\.json, vocab\.txt\)"
                                                     r".* tokenizer of 5 tokens") as info:
        load_backbone(path)
    assert str(folder) in str(info.value)
    with pytest.raises(BackboneNotFoundError):
        CARLEmbedder(path, **FAST).fit(X, VA)


@pytest.mark.parametrize("vocab_size", [400, 30], ids=["table much larger", "ids past the table"])
def test_a_tokenizer_from_another_model_is_refused(backbone, tmp_path, vocab_size):
    folder, path = backbone
    other = tmp_path / "other"
    other.mkdir()
    from transformers import BertConfig

    config = BertConfig.from_pretrained(path)
    config.vocab_size = vocab_size
    from transformers import BertModel

    BertModel(config).save_pretrained(other)
    for name in tokenizer_files(folder):
        shutil.copy(folder / name, other / name)
    with pytest.raises(BackboneNotFoundError, match=rf"has 43 tokens, but the encoder's embedding table has "
                                                     rf"{vocab_size} rows .*tokenizer\.json"):
        load_backbone(other)


@pytest.mark.parametrize("garbage", [b"", b"garbage" * 20, b"\x08\x00\x00\x00\x00\x00\x00\x00{not json"],
                         ids=["empty", "bytes", "bad header"])
def test_a_garbled_weights_file_names_the_folder_and_the_file(backbone, garbage):
    folder, path = backbone
    (folder / "model.safetensors").write_bytes(garbage)
    with pytest.raises(BackboneNotFoundError, match="the weights file model.safetensors of the folder") as info:
        load_backbone(path)
    assert str(folder) in str(info.value)


def test_a_garbled_pytorch_weights_file_is_refused_too(backbone):
    folder, path = backbone
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(BackboneNotFoundError, match="pytorch_model.bin"):
        load_backbone(path)


def test_a_garbled_config_is_refused(backbone):
    folder, path = backbone
    (folder / "config.json").write_text("{not json")
    with pytest.raises(BackboneNotFoundError, match="config.json"):
        load_backbone(path)
