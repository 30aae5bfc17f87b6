"""CARLEmbedder end to end on a tiny in-process BERT."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from skcarl import CARLEmbedder
from skcarl._base import AUTO_RANKING_WEIGHT
from skcarl.losses import RankRegularisedLoss, SoftInfoNCELoss
from skcarl.training import CARLTrainer

FAST = dict(batch_size=16, max_epochs=1, queue_size=32, random_state=0)


def test_fit_transform_shapes_norms_and_order(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST, detection_weight=0.1)
    assert emb.fit(X, y) is emb
    Z = emb.transform(X)
    assert Z.shape == (len(X), 32) and Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    # length-sorted batching must give the rows back in input order
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(emb.transform([X[i] for i in perm]), Z[perm], atol=1e-6)
    assert emb.n_iter_ == 1 and len(emb.loss_curve_) == 1 and emb.queue_size_ == 32
    assert set(emb.history_[0]) >= {"loss", "contrastive_loss", "detection_loss", "duration"}
    assert emb.history_[0]["detection_loss"] > 0


def test_same_seed_identical_embeddings_and_global_rng_untouched(tiny_bert, affect_data):
    X, y = affect_data
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    Z1 = CARLEmbedder(tiny_bert, **FAST, detection_weight=0.1).fit(X, y).transform(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    Z2 = CARLEmbedder(tiny_bert, **FAST, detection_weight=0.1).fit(X, y).transform(X)
    assert np.array_equal(Z1, Z2)
    Z3 = CARLEmbedder(tiny_bert, **{**FAST, "random_state": 1}, detection_weight=0.1).fit(X, y).transform(X)
    assert not np.allclose(Z1, Z3)


@pytest.mark.parametrize("projection_dim, ranking_weight", [(128, 0.0), (None, 0.0), (128, "auto")])
def test_training_orders_embeddings_by_va_distance(tiny_bert, projection_dim, ranking_weight):
    """On a task where VA-close sentences share words, the loss falls and embedding distance
    comes to follow VA distance, with the loss on the projection head's output or on the embedding itself,
    and with the ranking term (w = 100 times a loss whose floor is near log(candidates): it falls, by less)."""
    from conftest import synthetic_affect

    X, y = synthetic_affect(n=96, seed=3)
    iu = np.triu_indices(len(X), k=1)
    va_dist = np.linalg.norm(y[:, None] - y[None], axis=-1)[iu]

    def rank_agreement(Z):
        return spearmanr(1 - (Z @ Z.T)[iu], va_dist)[0]

    params = dict(batch_size=16, queue_size=0, learning_rate=1e-3, head_learning_rate=1e-3, max_epochs=8,
                  warmup_ratio=0.0, random_state=0, projection_dim=projection_dim, ranking_weight=ranking_weight)
    untrained = CARLEmbedder(tiny_bert, **{**params, "max_epochs": 1, "learning_rate": 1e-12,
                                           "head_learning_rate": 1e-12}).fit(X, y)
    trained = CARLEmbedder(tiny_bert, **params).fit(X, y)
    fall = 0.9 if ranking_weight == 0 else 1.0
    assert trained.history_[-1]["contrastive_loss"] < fall * trained.history_[0]["contrastive_loss"]
    before, after = rank_agreement(untrained.transform(X)), rank_agreement(trained.transform(X))
    assert after > before + 0.1, (before, after)


@pytest.mark.parametrize("switch_off", [{}, {"detection_weight": 0.0},
                                        {"perturbation": None, "detection_weight": 0.1}])
def test_detection_switches_off_cleanly(tiny_bert, affect_data, switch_off, monkeypatch):
    calls = []
    original = CARLTrainer._perturb
    monkeypatch.setattr(CARLTrainer, "_perturb", lambda self, *a: calls.append(1) or original(self, *a))
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST, **switch_off).fit(X, y)
    assert calls == []
    assert all(r["detection_loss"] == 0.0 for r in emb.history_)
    assert emb.loss_curve_[0] == emb.history_[0]["contrastive_loss"]


@pytest.mark.parametrize("perturbation", ["random", "unigram", "mask", "adversarial"])
@pytest.mark.parametrize("loss", ["soft_infonce", "weighted_supcon", "rank_n_contrast"])
def test_every_loss_and_perturbation_trains(tiny_bert, affect_data, perturbation, loss):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST, detection_weight=0.1, perturbation=perturbation, contrastive_loss=loss,
                       saliency="grad_x_input").fit(X, y)
    assert np.isfinite(emb.loss_curve_).all() and emb.history_[0]["detection_loss"] > 0


@pytest.fixture
def trainer_losses(monkeypatch):
    """The contrastive loss of every CARLTrainer built from here on, in order."""
    losses = []
    init = CARLTrainer.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        losses.append(self.contrastive_loss)

    monkeypatch.setattr(CARLTrainer, "__init__", spy)
    return losses


def test_ranking_weight_adds_the_rank_n_contrast_term_to_training(tiny_bert, affect_data, trainer_losses):
    """The trainer's L_cont is soft InfoNCE plus w·RnC(τ_r) with the estimator's w and τ_r; the recorded
    contrastive loss includes the (positive) ranking term."""
    X, y = affect_data
    losses = trainer_losses
    plain = CARLEmbedder(tiny_bert, **FAST, ranking_weight=0).fit(X, y)
    ranked = CARLEmbedder(tiny_bert, **FAST, ranking_weight=2.0, ranking_temperature=0.3).fit(X, y)
    assert type(losses[0]) is SoftInfoNCELoss and plain.ranking_weight_ == 0
    assert isinstance(losses[1], RankRegularisedLoss) and type(losses[1].base) is SoftInfoNCELoss
    assert losses[1].weight == 2.0 and losses[1].ranking.temperature == 0.3 and ranked.ranking_weight_ == 2.0
    assert ranked.history_[0]["contrastive_loss"] > plain.history_[0]["contrastive_loss"] + 1.0
    assert np.isfinite(ranked.transform(X)).all()


def test_auto_ranking_weight_adds_the_term_to_continuous_labels_only(tiny_bert, affect_data, trainer_losses):
    """``ranking_weight="auto"`` (the default) trains continuous labels with w = 100 and τ_r = 0.25, and
    class labels, or a loss that is Rank-N-Contrast already, without the term."""
    X, y = affect_data
    losses = trainer_losses
    continuous = CARLEmbedder(tiny_bert, **FAST).fit(X, y)
    assert continuous.ranking_weight_ == AUTO_RANKING_WEIGHT == 100.0
    assert isinstance(losses[-1], RankRegularisedLoss) and losses[-1].weight == 100.0
    assert losses[-1].ranking.temperature == 0.25
    classes = CARLEmbedder(tiny_bert, **FAST).fit(X, np.where(y[:, 0] > np.median(y[:, 0]), "joy", "sadness"))
    assert classes.ranking_weight_ == 0.0 and type(losses[-1]) is SoftInfoNCELoss
    rnc = CARLEmbedder(tiny_bert, **FAST, contrastive_loss="rank_n_contrast").fit(X, y)
    assert rnc.ranking_weight_ == 0.0 and not isinstance(losses[-1], RankRegularisedLoss)
    # a refit on the other kind of labels resolves "auto" again
    assert classes.fit(X, y).ranking_weight_ == 100.0


def test_label_scaling_and_auto_label_temperature(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST, va_range=(1, 9)).fit(X, y)
    np.testing.assert_array_equal(emb.label_min_, [1, 1])
    np.testing.assert_array_equal(emb.label_max_, [9, 9])
    scaled = (y - 1) / 8
    d = np.linalg.norm(scaled[:, None] - scaled[None], axis=-1)[np.triu_indices(len(y), 1)]
    assert emb.label_temperature_ == pytest.approx(0.14 * np.median(d), rel=1e-6)
    emb2 = CARLEmbedder(tiny_bert, **FAST, label_temperature=0.3).fit(X, y[:, 0])
    assert emb2.label_temperature_ == 0.3 and emb2.n_outputs_ == 1
    with pytest.raises(ValueError, match="outside va_range"):
        CARLEmbedder(tiny_bert, **FAST, va_range=(1, 5)).fit(X, y)


@pytest.mark.parametrize("param, value", [
    ("temperature", 0), ("momentum", 1.5), ("queue_size", -1), ("perturb_ratio", 0.0), ("perturb_ratio", 1.2),
    ("perturbation", "swap"), ("contrastive_loss", "triplet"), ("batch_size", 0), ("max_epochs", 2.5),
    ("label_temperature", "sharp"), ("use_amp", "yes"), ("validation_fraction", 1.0), ("pooling", "max"),
])
def test_bad_parameters_raise_in_fit_naming_the_parameter(tiny_bert, affect_data, param, value):
    emb = CARLEmbedder(tiny_bert, **{param: value})  # __init__ never validates
    with pytest.raises(ValueError, match=f"'{param}' parameter of CARLEmbedder"):
        emb.fit(*affect_data)


def test_bad_inputs(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST)
    with pytest.raises(ValueError, match="string object received"):
        emb.fit("one text", y[:1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        emb.fit(X, y[:-1])
    with pytest.raises(TypeError, match="element 2"):
        emb.fit(X[:2] + [None] + X[3:], y)
    with pytest.raises(ValueError, match="NaN"):
        emb.fit(X, np.where(np.arange(len(y))[:, None] == 5, np.nan, y))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        emb.transform(X)


def test_truncation_warns_once_with_count(tiny_bert, affect_data):
    X, y = affect_data
    X = list(X)
    X[0] = " ".join(["happy"] * 40)
    X[1] = " ".join(["sad"] * 40)
    with pytest.warns(UserWarning, match="2 of 64 texts are longer than max_length=16") as record:
        CARLEmbedder(tiny_bert, **FAST, max_length=16).fit(X, y)
    assert sum("max_length" in str(w.message) for w in record) == 1


def test_without_projection_head_the_queries_are_the_embeddings(tiny_bert, affect_data, monkeypatch):
    X, y = affect_data
    queue_widths = []
    init = CARLTrainer.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        queue_widths.append(self.queue.keys.shape[1])

    monkeypatch.setattr(CARLTrainer, "__init__", spy)
    emb = CARLEmbedder(tiny_bert, **FAST, projection_dim=None, detection_weight=0.1).fit(X, y)
    net = emb.network_
    assert queue_widths == [32] and net.key_dim == 32  # the encoder's width: the keys are embeddings
    assert not list(net.projection.parameters())
    batch = emb.tokenizer_(X[:4], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    with torch.no_grad():
        queries = net.query(ids, mask)
    torch.testing.assert_close(queries, net.embed_sentences(ids, mask))
    np.testing.assert_allclose(emb.transform(X[:4]), queries.numpy(), atol=1e-5)


def test_projection_dim_survives_pickling(tiny_bert, affect_data):
    for projection_dim in (16, None):
        net = CARLEmbedder(tiny_bert, **FAST, projection_dim=projection_dim).fit(*affect_data).network_
        assert pickle.loads(pickle.dumps(net)).projection_dim == projection_dim


def test_pickle_roundtrip_identical_and_cuda_model_loads_on_cpu(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST).fit(X, y)
    Z = emb.transform(X)
    clone = pickle.loads(pickle.dumps(emb))
    assert clone.encoder_ is clone.network_.encoder
    np.testing.assert_array_equal(clone.transform(X), Z)
    if not torch.cuda.is_available():
        emb.device_ = torch.device("cuda")  # as if it had been trained on a GPU
        with pytest.warns(UserWarning, match="loaded on the CPU"):
            moved = pickle.loads(pickle.dumps(emb))
        assert moved.device_.type == "cpu"
        np.testing.assert_array_equal(moved.transform(X), Z)


def test_pickle_warns_on_version_mismatch(tiny_bert, affect_data):
    emb = CARLEmbedder(tiny_bert, **FAST).fit(*affect_data)
    state = emb.__getstate__()
    state["_skcarl_version"] = "0.0.1"
    fresh = CARLEmbedder.__new__(CARLEmbedder)
    with pytest.warns(UserWarning, match="skcarl 0.0.1"):
        fresh.__setstate__(state)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without CUDA")
def test_explicit_cuda_without_cuda_is_a_clear_error(tiny_bert, affect_data):
    with pytest.raises(ValueError, match="CUDA is not available"):
        CARLEmbedder(tiny_bert, **FAST, device="cuda").fit(*affect_data)


def test_feature_names_and_pandas_output(tiny_bert, affect_data):
    X, y = affect_data
    emb = CARLEmbedder(tiny_bert, **FAST).fit(X, y)
    names = emb.get_feature_names_out()
    assert len(names) == 32 and names[0] == "carlembedder0"
    frame = emb.set_output(transform="pandas").transform(X[:3])
    assert list(frame.columns) == list(names) and frame.shape == (3, 32)


@pytest.mark.parametrize("detection_weight", [0.0, 0.1])
def test_no_warnings_on_clean_fit(tiny_bert, affect_data, detection_weight):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CARLEmbedder(tiny_bert, **FAST, detection_weight=detection_weight).fit(*affect_data)


def test_empty_and_whitespace_texts_train_without_nan(tiny_bert):
    """Empty texts are [CLS] [SEP] only: they take part in L_cont and have no token to perturb."""
    texts = ["", " ", "\t", "", "happy joy", "sad"]
    va = [[5, 5], [5, 5], [4, 4], [6, 6], [8, 7], [2, 3]]
    emb = CARLEmbedder(tiny_bert, batch_size=4, max_epochs=2, queue_size=2, random_state=0,
                       detection_weight=0.1).fit(texts, va)
    assert np.isfinite(emb.loss_curve_).all()
    Z = emb.transform(texts)
    np.testing.assert_allclose(Z[0], Z[3], atol=1e-6)  # identical inputs, identical embeddings
