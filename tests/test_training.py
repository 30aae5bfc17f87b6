"""CARLTrainer: the training step (skcarl/training.py) as docs/method.md states it, and the loop that runs it.

The loop's callbacks have their own tests in test_callbacks.py; the one-pass step of saliency_refresh="cached"
is in test_fast_paths.py.
"""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import STEP_LABELS, STEP_TEXTS, reference_selection, training_config
from torch import nn

import skcarl.training as training
from skcarl import CARLEmbedder
from skcarl.losses import make_contrastive_loss
from skcarl.network import CARLNetwork
from skcarl.perturbation import TokenPerturber
from skcarl.tokens import pad_batch, tokenize
from skcarl.training import CARLTrainer

TEXTS, LABELS = STEP_TEXTS, STEP_LABELS
FAST = dict(batch_size=16, max_epochs=1, queue_size=32, random_state=0)


# ---------------------------------------------------------------------------------------------- the step
def _no_dropout(module):
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return module


def _trainer(backbone, kind="random", ratio=0.15, queue_size=8, deterministic=False, **config):
    tokenizer, encoder = backbone
    torch.manual_seed(0)
    encoder = copy.deepcopy(encoder)
    if deterministic:
        _no_dropout(encoder)
    net = CARLNetwork(encoder, projection_dim=8)
    cfg = training_config(queue_size=queue_size, batch_size=3, max_epochs=1, use_amp=False, perturb_ratio=ratio,
                         label_temperature=0.1, temperature=0.1, learning_rate=1e-3, **config)
    perturber = TokenPerturber(kind, len(tokenizer), tokenizer.all_special_ids, mask_id=tokenizer.mask_token_id)
    trainer = CARLTrainer(net, cfg, torch.device("cpu"), perturber, label_dim=2, steps_per_epoch=2,
                          pad_id=tokenizer.pad_token_id)
    tokens = tokenize(tokenizer, TEXTS, 32)
    return trainer, tokens


def _batch(trainer, tokens, index):
    return pad_batch(tokens, index, trainer.pad_id, "cpu"), torch.tensor(LABELS[index])


def _record_selection(monkeypatch):
    record = []
    original_saliency, original_select = training.token_saliency, training.select_tokens

    def saliency(grad, embeds, mode):
        record.append({"grad": grad.detach().clone(), "embeds": embeds.detach().clone(), "mode": mode})
        return original_saliency(grad, embeds, mode)

    def select(scores, eligible, ratio):
        out = original_select(scores, eligible, ratio)
        record[-1].update(scores=scores.detach().clone(), eligible=eligible.clone(), chosen=out.clone())
        return out

    monkeypatch.setattr(training, "token_saliency", saliency)
    monkeypatch.setattr(training, "select_tokens", select)
    return record


def test_training_step_perturbs_the_token_carrying_the_contrastive_gradient(backbone, monkeypatch):
    """The query encoder is wired so that L_cont's gradient reaches the input embeddings only at one
    position p_i per sentence; the training step must then perturb exactly p_i (k = 1)."""
    trainer, tokens = _trainer(backbone, ratio=0.1)
    net = trainer.network
    positions = torch.tensor([4, 2, 1])
    original_encode = net.encode

    def encode(embeds, attention_mask):
        keep = torch.zeros(embeds.shape[:2], dtype=embeds.dtype)
        keep[torch.arange(len(positions)), positions] = 1
        routed = embeds.detach() + (embeds - embeds.detach()) * keep.unsqueeze(-1)
        return original_encode(routed, attention_mask)

    monkeypatch.setattr(net, "encode", encode)
    record = _record_selection(monkeypatch)
    batch, labels = _batch(trainer, tokens, [0, 1, 2])
    trainer.training_step(batch, labels)
    assert len(record) == 1
    grad = record[0]["grad"]
    off = torch.ones(grad.shape[:2], dtype=torch.bool)
    off[torch.arange(3), positions] = False
    assert (grad[off] == 0).all() and (grad[~off].norm(dim=-1) > 0).all()
    expected = ~off & batch["real_tokens"]
    assert expected.sum() == 3  # each p_i is a real token
    np.testing.assert_array_equal(record[0]["chosen"].numpy(), expected.numpy())


@pytest.mark.parametrize("saliency", ["grad_norm", "grad_x_input"])
def test_training_step_saliency_is_gradient_of_contrastive_loss(backbone, monkeypatch, saliency):
    """The gradient the step turns into saliency equals ∂L_cont/∂E recomputed independently (same weights,
    keys and queue, dropout off), and the chosen tokens are the NumPy top-⌈ρn⌉ real tokens of it."""
    trainer, tokens = _trainer(backbone, deterministic=True, saliency=saliency, ratio=0.3)
    record = _record_selection(monkeypatch)
    # a first step fills the queue, so the second step's candidates include queue keys
    trainer.training_step(*_batch(trainer, tokens, [3, 4, 5]))
    batch, labels = _batch(trainer, tokens, [0, 1, 2])
    ids, mask, real = batch["input_ids"], batch["attention_mask"], batch["real_tokens"]

    net = copy.deepcopy(trainer.network).train()
    key_net = copy.deepcopy(trainer.key_network).train()
    queue_keys, queue_labels = (t.clone() for t in trainer.queue.contents())
    assert len(queue_keys) == 3
    embeds = net.embed_tokens(ids)
    embeds.retain_grad()
    queries = net.project(net.sentence(net.encode(embeds, mask), mask))
    with torch.no_grad():
        keys = key_net.query(ids, mask)
    loss = make_contrastive_loss("soft_infonce", 0.1, 0.1, 0.0, 0.25)(queries, torch.cat([keys, queue_keys]), labels,
                                                          torch.cat([labels, queue_labels]))
    loss.backward()

    step = trainer.training_step(batch, labels)
    np.testing.assert_allclose(step["contrastive_loss"], float(loss.detach()), rtol=1e-5)
    got = record[-1]
    assert got["mode"] == saliency
    torch.testing.assert_close(got["grad"], embeds.grad, rtol=1e-4, atol=1e-7)
    g, e = embeds.grad.double().numpy(), embeds.detach().double().numpy()
    scores = np.linalg.norm(g, axis=-1) if saliency == "grad_norm" else np.abs((g * e).sum(-1))
    np.testing.assert_array_equal(got["chosen"].numpy(), reference_selection(scores, real.numpy(), 0.3))


def test_training_step_with_only_empty_texts(backbone, monkeypatch):
    """A batch without any real token (empty strings: [CLS] [SEP] only) perturbs nothing and gives a
    finite zero detection loss instead of NaN."""
    trainer, _ = _trainer(backbone)
    tokens = tokenize(backbone[0], ["", " ", ""], 32)
    record = _record_selection(monkeypatch)
    batch, labels = pad_batch(tokens, [0, 1, 2], trainer.pad_id, "cpu"), torch.tensor(LABELS[:3])
    assert not batch["real_tokens"].any()
    out = trainer.training_step(batch, labels)
    assert not record[0]["chosen"].any()
    assert out["detection_loss"] == 0.0 and math.isfinite(out["contrastive_loss"])


@pytest.mark.parametrize("kind", ["random", "mask", "unigram"])
def test_detection_labels_are_exactly_the_changed_real_tokens(backbone, monkeypatch, kind):
    """Over several steps: the detection targets equal (perturbed ids != ids), lie inside the real tokens,
    are the selected tokens (all of them for random/mask), and [CLS]/[SEP]/padding never change."""
    tokenizer = backbone[0]
    if kind == "unigram":
        trainer, tokens = _trainer(backbone, kind="random", ratio=0.4)
        counts = torch.zeros(len(tokenizer))
        counts[tokenizer.convert_tokens_to_ids(["sad", "joy", "table"])] = torch.tensor([1.0, 2.0, 1.0])
        trainer.perturber = TokenPerturber("unigram", len(tokenizer), tokenizer.all_special_ids,
                                           unigram_counts=counts)
    else:
        trainer, tokens = _trainer(backbone, kind=kind, ratio=0.4)
    record = _record_selection(monkeypatch)
    seen = []
    original_replace, trainer_loss = trainer.perturber.replace_ids, trainer.detection_loss

    def replace_ids(ids, chosen):
        out = original_replace(ids, chosen)
        seen.append({"ids": ids.clone(), "perturbed": out.clone()})
        return out

    def detection_loss(logits, perturbed, real_tokens):
        seen[-1].update(target=perturbed.clone(), real=real_tokens.clone(), logits_shape=tuple(logits.shape))
        return trainer_loss(logits, perturbed, real_tokens)

    monkeypatch.setattr(trainer.perturber, "replace_ids", replace_ids)
    monkeypatch.setattr(trainer, "detection_loss", detection_loss)
    special = set(tokenizer.all_special_ids)
    padded = 0
    for step, index in enumerate([[0, 1, 2], [3, 4, 5], [1, 2, 4], [0, 3, 5]]):
        batch, labels = _batch(trainer, tokens, index)
        out = trainer.training_step(batch, labels)
        assert out["detection_loss"] > 0
        s = seen[step]
        ids, perturbed, target = s["ids"], s["perturbed"], s["target"]
        real = batch["real_tokens"]
        torch.testing.assert_close(ids, batch["input_ids"], rtol=0, atol=0)
        torch.testing.assert_close(s["real"], real, rtol=0, atol=0)
        assert s["logits_shape"] == tuple(ids.shape)
        np.testing.assert_array_equal(target.numpy(), (perturbed != ids).numpy())
        assert not (target & ~real).any()
        assert (perturbed[~real] == ids[~real]).all()  # specials and padding untouched
        assert set(ids[~real & batch["attention_mask"]].tolist()) <= {tokenizer.cls_token_id, tokenizer.sep_token_id}
        assert (ids[~batch["attention_mask"]] == tokenizer.pad_token_id).all()
        chosen = record[step]["chosen"]
        assert not (target & ~chosen).any()
        if kind != "unigram":
            np.testing.assert_array_equal(target.numpy(), chosen.numpy())
        n_real = real.sum(1).numpy()
        assert chosen.sum(1).tolist() == [math.ceil(0.4 * n - 1e-9) for n in n_real]
        if kind == "mask":
            assert (perturbed[target] == tokenizer.mask_token_id).all()
        else:
            assert not np.isin(perturbed[target].numpy(), list(special)).any()
        padded += int((~batch["attention_mask"]).sum())
    assert padded > 0  # the batches really contained padding


def test_detection_labels_exclude_chosen_tokens_that_did_not_change(backbone, monkeypatch):
    """ratio = 1 and a unigram distribution with all mass on "sad": every real token is chosen and becomes
    "sad", so the targets are True exactly at the real tokens that were not already "sad"."""
    tokenizer = backbone[0]
    trainer, tokens = _trainer(backbone, ratio=1.0)
    sad = tokenizer.convert_tokens_to_ids("sad")
    counts = torch.zeros(len(tokenizer))
    counts[sad] = 1.0
    trainer.perturber = TokenPerturber("unigram", len(tokenizer), tokenizer.all_special_ids, unigram_counts=counts)
    targets = []
    original_loss = trainer.detection_loss
    monkeypatch.setattr(trainer, "detection_loss",
                        lambda logits, perturbed, real: targets.append(perturbed.clone()) or original_loss(
                            logits, perturbed, real))
    batch, labels = _batch(trainer, tokens, [1, 4, 0])  # sentences 1 and 4 contain "sad"
    trainer.training_step(batch, labels)
    ids, real = batch["input_ids"], batch["real_tokens"]
    expected = real & (ids != sad)
    assert int((real & (ids == sad)).sum()) == 2
    np.testing.assert_array_equal(targets[0].numpy(), expected.numpy())


def test_adversarial_step_shifts_only_chosen_embeddings(backbone, monkeypatch):
    """With "adversarial", the detection pass encodes E + δ with δ nonzero exactly at the chosen tokens,
    and the detection targets are the chosen tokens."""
    trainer, tokens = _trainer(backbone, kind="adversarial", ratio=0.3)
    record = _record_selection(monkeypatch)
    net = trainer.network
    inputs, targets = [], []
    original_encode, original_loss = net.encode, trainer.detection_loss

    def encode(embeds, attention_mask):
        inputs.append(embeds.detach().clone())
        return original_encode(embeds, attention_mask)

    def detection_loss(logits, perturbed, real_tokens):
        targets.append(perturbed.clone())
        return original_loss(logits, perturbed, real_tokens)

    monkeypatch.setattr(net, "encode", encode)
    monkeypatch.setattr(trainer, "detection_loss", detection_loss)
    batch, labels = _batch(trainer, tokens, [0, 1, 2])
    clean = net.embed_tokens(batch["input_ids"]).detach().clone()
    trainer.training_step(batch, labels)
    assert len(inputs) == 2  # the contrastive pass and the detection pass
    torch.testing.assert_close(inputs[0], clean)
    shift = (inputs[1] - clean).norm(dim=-1)
    chosen = record[0]["chosen"]
    assert (shift[~chosen] < 1e-6).all()
    mean_norm = clean[batch["real_tokens"]].norm(dim=-1).mean()
    torch.testing.assert_close(shift[chosen], mean_norm.expand(int(chosen.sum())), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(targets[0].numpy(), chosen.numpy())


# ---------------------------------------------------------------------------------------------- the default
def test_detection_is_off_by_default_and_on_with_a_weight(tiny_bert, monkeypatch):
    """detection_weight defaults to 0: no perturber and L_det = 0 in history_; 0.1 switches detection on."""
    from conftest import synthetic_affect

    from skcarl import CARLEmbedder

    trainers = []
    original_fit = CARLTrainer.fit
    monkeypatch.setattr(CARLTrainer, "fit", lambda self, *a, **k: trainers.append(self) or original_fit(self, *a, **k))
    X, y = synthetic_affect(32)
    params = dict(batch_size=16, max_epochs=2, queue_size=8, random_state=0, device="cpu")
    default = CARLEmbedder(tiny_bert, **params)
    assert default.get_params()["detection_weight"] == 0.0
    default.fit(X, y)
    assert trainers[-1].perturber is None and not trainers[-1].detection_on
    assert all(record["detection_loss"] == 0.0 for record in default.history_)
    assert default.loss_curve_ == [record["contrastive_loss"] for record in default.history_]

    on = CARLEmbedder(tiny_bert, **params, detection_weight=0.1).fit(X, y)
    assert trainers[-1].perturber is not None and trainers[-1].detection_on
    assert all(record["detection_loss"] > 0 for record in on.history_)


# ---------------------------------------------------------------------------------------------- the loop
def test_early_stopping_restores_best_epoch(tiny_bert, affect_data, monkeypatch):
    """Scripted validation losses: best at epoch 2, then two epochs without gain stop training."""
    scripted = iter([1.0, 0.5, 0.9, 0.95, 0.1])
    snapshots = []

    def fake_validation_loss(self, tokens, labels):
        snapshots.append({k: v.clone() for k, v in self.network.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(CARLTrainer, "validation_loss", fake_validation_loss)
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **{**FAST, "max_epochs": 5}, validation_fraction=0.25,
                       n_iter_no_change=2).fit(X, y)
    assert emb.n_iter_ == 4 and emb.best_epoch_ == 2
    assert emb.validation_scores_ == [1.0, 0.5, 0.9, 0.95]
    final = emb.network_.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)


def test_real_validation_loss_is_recorded(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **{**FAST, "max_epochs": 2}, validation_fraction=0.25).fit(X, y)
    assert len(emb.validation_scores_) == emb.n_iter_ and np.isfinite(emb.validation_scores_).all()


def test_query_model_runs_only_the_passes_of_the_step(backbone):
    """The pass is named by a string (DDP sees only forward); a name that is not a pass is refused, not looked up."""
    from skcarl.query_model import QueryModel
    from skcarl.va_labels import ContinuousLabels

    _, encoder = backbone
    model = QueryModel(CARLNetwork(copy.deepcopy(encoder), projection_dim=8), ContinuousLabels())
    with pytest.raises(ValueError, match="'train' is not a pass of the step"):
        model("train", False)
    assert model.training
