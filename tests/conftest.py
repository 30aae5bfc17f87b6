"""Shared fixtures: a tiny BERT saved to disk, and a small synthetic affect task."""

import math

import numpy as np
import pytest
from hypothesis import strategies as st

WORDS = (
    "happy joy great love wonderful calm sleepy quiet tired bored sad gloomy angry furious scared panic "
    "excited thrilled the a day was is it and i feel very today my this so of to table chair paper window"
).split()


def tiny_bert_folder(path, hidden_size=32, layers=1, seed=0, **config):
    """Write a randomly initialised 1-layer BERT and its tokenizer to ``path``; return ``path``.

    ``config``: more ``BertConfig`` settings, e.g. ``hidden_dropout_prob=0.0``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=64,
                        **config)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# Six short texts with VA labels in [0, 1], for tests that drive single training steps.
STEP_TEXTS = ["i feel happy joy great", "the day was very sad and gloomy today", "angry", "calm quiet love",
              "i feel tired bored sad", "excited thrilled"]
STEP_LABELS = np.array([[0.9, 0.8], [0.1, 0.3], [0.2, 0.9], [0.8, 0.2], [0.15, 0.2], [0.85, 0.95]],
                       dtype=np.float32)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return tiny_bert_folder(tmp_path_factory.mktemp("tiny-bert"))


def synthetic_affect(n=64, seed=0):
    """Texts whose words reveal their quadrant of the VA plane, with VA labels on 1-9."""
    rng = np.random.default_rng(seed)
    quadrants = {
        (7.5, 7.5): ["excited", "thrilled", "joy"],
        (7.5, 2.5): ["calm", "quiet", "love"],
        (2.5, 2.5): ["sad", "tired", "gloomy"],
        (2.5, 7.5): ["angry", "furious", "panic"],
    }
    filler = ["the", "day", "was", "it", "and", "today", "my", "table", "paper", "window"]
    texts, va = [], []
    centres = list(quadrants)
    for i in range(n):
        centre = centres[i % 4]
        words = list(rng.choice(quadrants[centre], 2)) + list(rng.choice(filler, 4))
        rng.shuffle(words)
        texts.append("i feel " + " ".join(words))
        va.append(np.array(centre) + rng.normal(0, 0.5, 2))
    return texts, np.clip(np.array(va), 1, 9)


@pytest.fixture(scope="module")
def backbone(tiny_bert):
    """The tiny BERT's tokenizer and encoder, loaded once per test module (deep-copy the encoder to train it)."""
    from skcarl.backbone import load_backbone

    return load_backbone(tiny_bert)


@pytest.fixture
def affect_data():
    return synthetic_affect()


def training_config(**values):
    """A ``TrainingConfig`` from the estimators' defaults with ``values`` set. Detection is on (λ = 0.1) and the
    encoder rate 2e-5, the setting the step tests were written for; "auto" values get fixed numbers."""
    from skcarl import CARLEmbedder
    from skcarl.training import TrainingConfig

    fixed = dict(label_temperature=0.02, ranking_weight=0.0, max_epochs=3, detection_weight=0.1, learning_rate=2e-5)
    return TrainingConfig.from_params(CARLEmbedder().get_params(), **{**fixed, **values})


def reference_selection(scores, eligible, ratio):
    """skcarl.perturbation.select_tokens written as loops: the top ceil(ratio · n) eligible tokens of each row."""
    chosen = np.zeros_like(eligible)
    for i in range(len(scores)):
        idx = [t for t in range(scores.shape[1]) if eligible[i, t]]
        if not idx:
            continue
        k = min(len(idx), max(1, math.ceil(round(ratio * len(idx), 9))))
        for t in sorted(idx, key=lambda t: -scores[i, t])[:k]:
            chosen[i, t] = True
    return chosen


def infer(est, texts):
    """What the estimator computes from texts: predictions where it predicts, else embeddings."""
    from skcarl import CARLClassifier, CARLRegressor

    if isinstance(est, CARLClassifier):
        return est.predict_proba(texts)
    if isinstance(est, CARLRegressor):
        return est.predict(texts)
    return est.transform(texts)


# device="cpu": on a CUDA machine "auto" would train on the GPU, where refits are not bitwise reproducible.
FAST = dict(batch_size=16, max_epochs=1, queue_size=8, random_state=0, device="cpu")


def make(cls, path, **params):
    """An estimator on the backbone at ``path`` with the fast parameters (``params`` win)."""
    return cls(path, **{**FAST, **params})


def quadrant_labels(va):
    """Emotion name of each text's VA quadrant; the quadrant's words are in the text, so labels correlate."""
    high_v, high_a = va[:, 0] > 5, va[:, 1] > 5
    return np.where(high_v, np.where(high_a, "joy", "calmness"), np.where(high_a, "anger", "sadness"))


def fit_each(path, X, va):
    """One fitted estimator of each kind on texts ``X``: the classifier on ``va``'s quadrant labels, the others
    on ``va``."""
    from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor

    labels = quadrant_labels(va)
    return {cls: make(cls, path).fit(X, labels if cls is CARLClassifier else va)
            for cls in (CARLEmbedder, CARLRegressor, CARLClassifier)}


FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def label_arrays(draw, min_rows=1):
    """Hypothesis strategy: finite label arrays of 1–3 columns and ``min_rows`` to 12 rows."""
    rows = draw(st.integers(min_rows, 12))
    cols = draw(st.integers(1, 3))
    values = draw(st.lists(FINITE, min_size=rows * cols, max_size=rows * cols))
    return np.array(values, dtype=np.float64).reshape(rows, cols)
