"""The speed-ups keep behaviour: the one-pass cached-saliency step, the compiled encoder, chunked inference,
one-pass tokenisation and attention without a mask on unpadded batches."""

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from conftest import STEP_LABELS, STEP_TEXTS, tiny_bert_folder, training_config

from skcarl import CARLEmbedder, CARLRegressor
from skcarl.backbone import load_backbone
from skcarl.inference import map_texts
from skcarl.network import CARLNetwork
from skcarl.perturbation import TokenPerturber
from skcarl.tokens import pad_batch, tokenize
from skcarl.training import CARLTrainer, SaliencyCache

TEXTS, LABELS = STEP_TEXTS, STEP_LABELS


@pytest.fixture(scope="module")
def backbone(tiny_bert):
    return load_backbone(tiny_bert)


def _trainer(backbone, refresh, kind="random", ratio=0.15):
    tokenizer, encoder = backbone
    torch.manual_seed(0)
    net = CARLNetwork(copy.deepcopy(encoder), projection_dim=8)
    cfg = training_config(queue_size=8, batch_size=3, max_epochs=1, use_amp=False, perturb_ratio=ratio,
                         saliency_refresh=refresh, label_temperature=0.1, temperature=0.1)
    perturber = TokenPerturber(kind, len(tokenizer), tokenizer.all_special_ids, mask_id=tokenizer.mask_token_id)
    trainer = CARLTrainer(net, cfg, torch.device("cpu"), perturber, label_dim=2, steps_per_epoch=2,
                          pad_id=tokenizer.pad_token_id)
    tokens = tokenize(tokenizer, TEXTS, 32)
    if refresh == "cached":
        trainer.saliency_cache = SaliencyCache(len(tokens), int(tokens.lengths.max()), "cpu")
    return trainer, tokens


def _step(trainer, tokens, index):
    batch = pad_batch(tokens, index, trainer.pad_id, "cpu")
    return batch, trainer.training_step(batch, torch.tensor(LABELS[index]), example_index=np.asarray(index))


def _count_encoder_passes(monkeypatch, network):
    calls = []
    original = network.encode
    monkeypatch.setattr(network, "encode", lambda *a: calls.append(1) or original(*a))
    return calls


@pytest.mark.parametrize("refresh, passes", [("step", 2), ("cached", 1)])
def test_query_encoder_passes_per_step(backbone, monkeypatch, refresh, passes):
    trainer, tokens = _trainer(backbone, refresh)
    calls = _count_encoder_passes(monkeypatch, trainer.network)
    _, losses = _step(trainer, tokens, [0, 1, 2])
    assert len(calls) == passes
    assert losses["detection_loss"] > 0 and np.isfinite(losses["loss"])


def test_cached_step_perturbs_the_tokens_salient_at_the_previous_visit(backbone, monkeypatch):
    trainer, tokens = _trainer(backbone, "cached", ratio=0.12)
    index = [0, 1, 3]
    batch = pad_batch(tokens, index, trainer.pad_id, "cpu")
    real = batch["real_tokens"]
    # the previous visit found one position per text most salient
    salient = torch.tensor([2, 5, 1])
    stored = torch.rand(real.shape) * 0.5
    stored[torch.arange(3), salient] = 3.0
    trainer.saliency_cache.store(index, stored)

    chosen_seen = []
    original = trainer.perturber.replace_ids
    monkeypatch.setattr(trainer.perturber, "replace_ids", lambda ids, chosen: chosen_seen.append(chosen.clone())
                        or original(ids, chosen))
    trainer.training_step(batch, torch.tensor(LABELS[index]), example_index=np.asarray(index))

    k = torch.ceil(real.sum(1) * 0.12).long()
    assert (k == 1).all()
    expected = torch.zeros_like(real)
    expected[torch.arange(3), salient] = True
    np.testing.assert_array_equal(chosen_seen[0].numpy(), expected.numpy())
    # and the step left this visit's saliency, scaled to a row maximum of 1, for the next visit
    after = trainer.saliency_cache.scores[index, : real.shape[1]].float()
    assert torch.isfinite(after).all() and torch.allclose(after.amax(1), torch.ones(3))
    assert not torch.allclose(after[torch.arange(3), salient], torch.ones(3))


def test_cached_first_visit_is_random_and_later_visits_follow_the_cache():
    cache = SaliencyCache(n_texts=4, max_tokens=6, device="cpu")
    torch.manual_seed(0)
    first, second = cache.lookup([0, 1], 6), cache.lookup([0, 1], 6)
    assert not torch.equal(first, second)  # unseen rows draw fresh random scores
    cache.store([1], torch.tensor([[0.0, 1e-9, 3e-9, 2e-9, 0.0, 0.0]]))  # tiny gradients survive float16
    assert cache.lookup([1], 6).argmax().item() == 2
    cache.store([2], torch.full((1, 6), float("nan")))
    assert torch.isfinite(cache.lookup([2], 6)).all()


def test_cached_refresh_fits_end_to_end(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, batch_size=16, max_epochs=2, queue_size=16, random_state=0,
                       detection_weight=0.1, saliency_refresh="cached").fit(X, y)
    assert np.isfinite(emb.loss_curve_).all() and emb.history_[0]["detection_loss"] > 0
    again = CARLEmbedder(tiny_bert, batch_size=16, max_epochs=2, queue_size=16, random_state=0,
                         detection_weight=0.1, saliency_refresh="cached").fit(X, y)
    np.testing.assert_array_equal(emb.transform(X), again.transform(X))


def test_cached_refresh_refuses_adversarial(tiny_bert, affect_data):
    X, y = affect_data
    with pytest.raises(ValueError, match="saliency_refresh='cached' cannot be combined"):
        CARLEmbedder(tiny_bert, detection_weight=0.1, saliency_refresh="cached",
                     perturbation="adversarial").fit(X, y)
    with pytest.raises(ValueError, match="saliency_refresh"):
        CARLEmbedder(tiny_bert, saliency_refresh="sometimes").fit(X, y)


# ---------------------------------------------------------------------------------------------- compile
def test_compiled_encoder_is_not_state(backbone):
    _, encoder = backbone
    net = CARLNetwork(copy.deepcopy(encoder))
    keys_before = list(net.state_dict())
    net.compile_encoder()  # lazy: nothing compiles before the first call
    assert net.is_compiled and list(net.state_dict()) == keys_before
    assert not copy.deepcopy(net).is_compiled
    buffer = io.BytesIO()
    torch.save(net, buffer)
    assert not pickle.loads(pickle.dumps(net)).is_compiled


@pytest.mark.slow
def test_compiled_fit_matches_eager_and_pickles(tmp_path, affect_data):
    """torch.compile (about a minute of compilation on 2 CPU cores) gives the eager model's results.

    Without dropout: compiled dropout draws from its own random stream, so with it the two runs agree only
    in distribution."""
    folder = tiny_bert_folder(tmp_path / "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    X, y = affect_data
    params = dict(batch_size=16, max_epochs=1, queue_size=16, detection_weight=0.1, random_state=0)
    eager = CARLRegressor(folder, **params).fit(X, y)
    try:
        compiled = CARLRegressor(folder, compile=True, **params).fit(X, y)
        np.testing.assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-4)
        np.testing.assert_allclose(compiled.predict(X), eager.predict(X), atol=1e-4)
        restored = pickle.loads(pickle.dumps(compiled))
        np.testing.assert_allclose(restored.predict(X), compiled.predict(X), atol=1e-5)
    finally:
        torch._dynamo.reset()  # drop the compiled graphs and their tracing tensors


# ---------------------------------------------------------------------------------------------- inference
def test_one_pass_tokenisation_equals_truncating_tokeniser(backbone):
    tokenizer, _ = backbone
    texts = ["happy " * n for n in range(0, 14)] + ["", "i feel very sad today"]
    tokens = tokenize(tokenizer, texts, max_length=8)
    reference = tokenizer(texts, truncation=True, max_length=8, return_special_tokens_mask=True)
    assert tokens.input_ids == reference["input_ids"]
    assert tokens.special_tokens_mask == reference["special_tokens_mask"]
    assert tokens.n_truncated == sum(n + 2 > 8 for n in range(0, 14))


def test_chunked_inference_equals_one_chunk(backbone):
    tokenizer, encoder = backbone
    net = CARLNetwork(encoder)
    texts = TEXTS * 3 + ["happy " * 40]
    kwargs = dict(max_length=16, batch_size=4, device="cpu", network=net)
    whole, cut_whole = map_texts(net.embed_sentences, 32, tokenizer, texts, chunk_size=1000, **kwargs)
    chunked, cut_chunked = map_texts(net.embed_sentences, 32, tokenizer, texts, chunk_size=5, **kwargs)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    assert cut_whole == cut_chunked == 1


def test_unpadded_batches_skip_the_mask_with_the_same_result(backbone, monkeypatch):
    """Each text embedded alone (no padding, no mask) equals the same text in a padded batch."""
    tokenizer, encoder = backbone
    net = CARLNetwork(encoder).eval()
    masks = []
    original = net.encoder.forward
    monkeypatch.setattr(net.encoder, "forward", lambda **kw: masks.append(kw["attention_mask"]) or original(**kw))
    tokens = tokenize(tokenizer, TEXTS, 32)
    padded = pad_batch(tokens, range(len(TEXTS)), tokenizer.pad_token_id, "cpu")
    together = net.embed_sentences(padded["input_ids"], padded["attention_mask"])
    assert masks[-1] is not None
    for i in range(len(TEXTS)):
        alone = pad_batch(tokens, [i], tokenizer.pad_token_id, "cpu")
        row = net.embed_sentences(alone["input_ids"], alone["attention_mask"])
        assert masks[-1] is None
        torch.testing.assert_close(row[0], together[i], atol=1e-6, rtol=0)
