"""The adversarial half's terms: the perturbed sentence as a second query view (L_view), and the consistency of
an adversarially shifted sentence's candidate distribution with the clean one's (L_adv)."""

import pytest
import torch
from conftest import training_config
from torch.nn.functional import normalize

from skcarl.backbone import load_backbone
from skcarl.losses import SimilarityConsistencyLoss
from skcarl.network import CARLNetwork
from skcarl.perturbation import TokenPerturber
from skcarl.training import CARLTrainer


def test_consistency_loss_is_the_kl_from_the_clean_distribution():
    torch.manual_seed(0)
    q, q_tilde, k = (normalize(torch.randn(n, 6), dim=1) for n in (3, 3, 5))
    p = torch.softmax(q @ k.T / 0.1, 1)
    p_tilde = torch.softmax(q_tilde @ k.T / 0.1, 1)
    expected = (p * (p.log() - p_tilde.log())).sum(1).mean()
    assert torch.isclose(SimilarityConsistencyLoss(0.1)(q, q_tilde, k), expected, atol=1e-6)


def test_consistency_loss_sends_gradient_to_the_perturbed_query_only():
    q = normalize(torch.randn(2, 4), dim=1).requires_grad_()
    q_tilde = normalize(torch.randn(2, 4), dim=1).requires_grad_()
    SimilarityConsistencyLoss(0.1)(q, q_tilde, normalize(torch.randn(3, 4), dim=1)).backward()
    assert q.grad is None and q_tilde.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def backbone(tiny_bert):
    return load_backbone(tiny_bert)


def _step(backbone, perturbation="random", **config):
    """One training step from the same weights and random state; the trainer and its losses."""
    tokenizer, encoder = backbone
    torch.manual_seed(0)
    network = CARLNetwork(_copy(encoder), projection_dim=8)
    trainer = CARLTrainer(network, training_config(queue_size=4, batch_size=4, **config), torch.device("cpu"),
                          TokenPerturber(perturbation, len(tokenizer), tokenizer.all_special_ids),
                          label_dim=2, steps_per_epoch=1, pad_id=tokenizer.pad_token_id)
    batch = tokenizer(["a happy day", "a sad night", "angry words here", "calm"], padding=True,
                      return_tensors="pt", return_special_tokens_mask=True)
    real = batch["attention_mask"].bool() & ~batch["special_tokens_mask"].bool()
    torch.manual_seed(1)
    losses = trainer.training_step({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"].bool(),
                                    "real_tokens": real}, torch.tensor([[0.9, 0.8], [0.1, 0.2], [0.1, 0.9],
                                                                        [0.6, 0.1]]))
    return trainer, losses


def _copy(module):
    import copy
    return copy.deepcopy(module)


def _weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.network.encoder.parameters()])


@pytest.mark.parametrize("term", [dict(perturbed_view_weight=1.0),
                                  dict(consistency_weight=10.0, perturbation="adversarial")])
def test_adversarial_terms_run_without_detection_and_move_the_encoder(backbone, term):
    """λ = 0: the perturbed pass runs for the term alone, its loss is reported, and it changes the update."""
    base, base_losses = _step(backbone, detection_weight=0.0)
    assert not base.perturbed_pass and "view_loss" not in base_losses
    on, losses = _step(backbone, detection_weight=0.0, **term)
    assert on.perturbed_pass and not on.detection_on
    name = "view_loss" if "perturbed_view_weight" in term else "consistency_loss"
    assert losses[name] > 0 and losses["detection_loss"] == 0.0
    weight = term.get("perturbed_view_weight", term.get("consistency_weight"))
    assert losses["loss"] == pytest.approx(losses["contrastive_loss"] + weight * losses[name])
    assert losses["contrastive_loss"] == pytest.approx(base_losses["contrastive_loss"])
    assert not torch.allclose(_weights(on), _weights(base))


def test_perturbed_view_is_l_cont_of_the_perturbed_sentence_with_its_own_label(backbone, monkeypatch):
    calls = []
    original = CARLTrainer._adversarial_losses

    def spy(self, queries, perturbed_queries, batch_keys, queue_keys, points, share):
        calls.append((queries.detach(), perturbed_queries.detach(), points.detach()))
        return original(self, queries, perturbed_queries, batch_keys, queue_keys, points, share)

    monkeypatch.setattr(CARLTrainer, "_adversarial_losses", spy)
    trainer, losses = _step(backbone, detection_weight=0.0, perturbed_view_weight=1.0)
    (queries, perturbed, points), = calls
    assert not torch.allclose(queries, perturbed)  # the query of a different (perturbed) sentence
    candidates = torch.cat([trainer.queue.contents()[0][:4], trainer.queue.contents()[0][4:]])
    # the loss it reported is L_cont of the perturbed queries against the candidates, each with its own label
    expected = trainer.contrastive_loss(perturbed, candidates, points[:4], points)
    assert losses["view_loss"] == pytest.approx(float(expected), rel=1e-4)


def test_cached_saliency_refuses_the_adversarial_terms(tiny_bert):
    from conftest import synthetic_affect

    from skcarl import CARLEmbedder

    X, y = synthetic_affect(8)
    for term in (dict(perturbed_view_weight=1.0), dict(consistency_weight=1.0)):
        with pytest.raises(ValueError, match="saliency_refresh='cached'"):
            CARLEmbedder(tiny_bert, saliency_refresh="cached", max_epochs=1, **term).fit(X, y)
    for name in ("perturbed_view_weight", "consistency_weight"):
        with pytest.raises(ValueError, match=name):
            CARLEmbedder(tiny_bert, max_epochs=1, **{name: -1.0}).fit(X, y)


def test_estimator_passes_the_terms_to_the_trainer(tiny_bert, monkeypatch):
    from conftest import synthetic_affect

    from skcarl import CARLEmbedder

    trainers = []
    original_fit = CARLTrainer.fit
    monkeypatch.setattr(CARLTrainer, "fit", lambda self, *a, **k: trainers.append(self) or original_fit(self, *a, **k))
    X, y = synthetic_affect(16)
    emb = CARLEmbedder(tiny_bert, batch_size=8, max_epochs=1, queue_size=4, device="cpu", random_state=0,
                       perturbed_view_weight=0.5).fit(X, y)
    assert trainers[-1].perturber is not None and trainers[-1].perturbed_pass and not trainers[-1].detection_on
    assert all(record["view_loss"] > 0 for record in emb.history_)
