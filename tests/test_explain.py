"""Word saliency (skcarl.explain): what f is, word merging, shares, and that nothing in the estimator moves."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from skcarl import CARLClassifier, CARLEmbedder, CARLRegressor
from skcarl.explain import COLUMNS, explain

FILLER = ["the", "day", "was", "it", "and", "today", "my", "table", "paper", "window", "chair", "very", "so",
          "of", "to"]
DECISIVE = {"happy": (8.0, 6.0), "sad": (2.0, 3.0)}


def decisive_data(n, seed):
    """Texts of 5 filler words and one decisive word (at a random place) that alone sets the labels."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for i in range(n):
        word = list(DECISIVE)[i % 2]
        words = list(rng.choice(FILLER, 5, replace=False))
        words.insert(int(rng.integers(0, 6)), word)
        texts.append(" ".join(words))
        y.append(np.array(DECISIVE[word]) + rng.normal(0, 0.3, 2))
    return texts, np.array(y)


SMALL = dict(max_epochs=4, batch_size=16, random_state=0, learning_rate=1e-3, use_amp=False, device="cpu")


@pytest.fixture(scope="module")
def regressor(tiny_bert):
    texts, y = decisive_data(64, 0)
    return CARLRegressor(tiny_bert, **SMALL).fit(texts, y)


@pytest.fixture(scope="module")
def classifier(tiny_bert):
    texts, y = decisive_data(64, 0)
    return CARLClassifier(tiny_bert, **SMALL).fit(texts, np.where(y[:, 0] > 5, "joy", "sadness"))


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    texts, y = decisive_data(32, 0)
    return CARLEmbedder(tiny_bert, va_range=(1, 9), **{**SMALL, "max_epochs": 1}).fit(texts, y)


def manual_token_gradients(estimator, text, output):
    """∂f/∂E per token of one text (special tokens included), computed step by step without skcarl.explain."""
    net = estimator.network_.eval()
    enc = estimator.tokenizer_([text], return_tensors="pt")
    embeds = net.encoder.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
    mask = enc["attention_mask"]
    hidden = net.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    f = output(net.task_head(pooled)[0])
    (grad,) = torch.autograd.grad(f, embeds)
    return grad[0], embeds.detach()[0], enc, float(f.detach())


# ---------------------------------------------------------------------- the table
def test_table_columns_words_and_shares(regressor):
    texts, _ = decisive_data(10, 1)
    table = regressor.explain(texts)
    assert table.columns.tolist() == COLUMNS
    assert sorted(table["target"].unique()) == ["target_0", "target_1"]
    for (i, _), rows in table.groupby(["text_id", "target"]):
        assert rows["word"].tolist() == texts[i].split()  # every word once, in order, no [CLS]/[SEP]
        assert rows["word_id"].tolist() == list(range(len(rows)))
        assert rows["saliency_share"].sum() == pytest.approx(1.0)
        np.testing.assert_allclose(rows["saliency_share"], rows["saliency"] / rows["saliency"].sum())
        assert (rows["saliency"] > 0).all()
    assert not table["word"].isin(["[CLS]", "[SEP]", "[PAD]"]).any()
    assert table["text_id"].is_monotonic_increasing


def test_saliency_is_the_gradient_norm_in_target_units(regressor):
    text = "the day was happy and it"
    table = regressor.explain([text], target=1, saliency="grad_norm")
    grad, _, enc, f = manual_token_gradients(regressor, text, lambda out: out[1])
    # the pipeline used for the gradient is the one predict uses
    assert f * regressor.target_scale_[1] + regressor.target_mean_[1] == pytest.approx(regressor.predict([text])[0, 1],
                                                                                      abs=1e-4)
    expected = grad[1:-1].norm(dim=-1).numpy() * regressor.target_scale_[1]  # drop [CLS] and [SEP]
    np.testing.assert_allclose(table["saliency"], expected, rtol=1e-4)

    # and it is a derivative: moving one word's embedding along its gradient changes f by |g| per unit
    net = regressor.network_
    embeds = net.embed_tokens(enc["input_ids"]).detach()
    t, h = 4, 3e-3  # "happy" (after [CLS]), central differences
    direction = grad[t] / grad[t].norm()
    forward, backward = embeds.clone(), embeds.clone()
    forward[0, t] += h * direction
    backward[0, t] -= h * direction
    with torch.no_grad():
        mask = enc["attention_mask"]
        outputs = [net.task_head(net.sentence(net.encode(e, mask), mask))[0, 1] for e in (forward, backward)]
    slope = float(outputs[0] - outputs[1]) / (2 * h) * regressor.target_scale_[1]
    assert slope == pytest.approx(table["saliency"].iloc[t - 1], rel=0.05)


def test_grad_x_input_mode(regressor):
    text = "my table was sad today"
    table = regressor.explain([text], target=0, saliency="grad_x_input")
    grad, embeds, _, _ = manual_token_gradients(regressor, text, lambda out: out[0])
    expected = (grad * embeds).sum(-1).abs()[1:-1].numpy() * regressor.target_scale_[0]
    np.testing.assert_allclose(table["saliency"], expected, rtol=1e-4)
    with pytest.raises(ValueError, match="grad_norm"):
        regressor.explain([text], saliency="gradient")


@pytest.mark.parametrize("model", ["regressor", "classifier"])
def test_the_decisive_word_gets_the_largest_share(model, request):
    """One word sets the label: the model must lean on it, and the explanation must say so.

    Measured with grad_x_input: on this tiny randomly initialised BERT, the plain gradient norm is nearly
    flat over the words (the local slope of a near-linear model is alike at every token), whereas on the
    pretrained MiniLM it ranks the affect words first (see docs/make_figures.py)."""
    estimator = request.getfixturevalue(model)
    texts, y = decisive_data(40, 1)
    if model == "regressor":
        assert estimator.score(texts, y) > 0.7
    else:
        assert estimator.score(texts, np.where(y[:, 0] > 5, "joy", "sadness")) > 0.85
    table = estimator.explain(texts, saliency="grad_x_input")
    for _, rows in table.groupby(["text_id", "target"]):
        assert rows["saliency_share"].sum() == pytest.approx(1.0)
    top = table.loc[table.groupby(["text_id", "target"])["saliency"].idxmax(), "word"]
    assert top.isin(list(DECISIVE)).mean() >= 0.8
    decisive_share = table[table["word"].isin(list(DECISIVE))]["saliency_share"].mean()
    assert decisive_share > 2 / 6  # twice a uniform share over the 6 words


def test_batching_and_padding_do_not_change_saliency(regressor):
    texts = ["happy", "the day was sad and it was very so", "my table", "sad to the window of my chair"]
    regressor_small_batches = regressor.batch_size
    together = regressor.explain(texts)
    one_by_one = pd.concat([regressor.explain([t]).assign(text_id=i) for i, t in enumerate(texts)],
                           ignore_index=True)
    assert regressor.batch_size == regressor_small_batches
    pd.testing.assert_frame_equal(together[["text_id", "word_id", "word", "target"]],
                                  one_by_one[["text_id", "word_id", "word", "target"]])
    np.testing.assert_allclose(together["saliency"], one_by_one["saliency"], rtol=1e-4)


# ---------------------------------------------------------------------- targets
def test_regressor_targets(regressor):
    texts = ["the day was happy", "sad and very sad"]
    everything = regressor.explain(texts)
    second = regressor.explain(texts, target=1)
    assert set(second["target"]) == {"target_1"}
    pd.testing.assert_frame_equal(second.reset_index(drop=True),
                                  everything[everything["target"] == "target_1"].reset_index(drop=True))
    pd.testing.assert_frame_equal(regressor.explain(texts, target=-1), second)
    pd.testing.assert_frame_equal(regressor.explain(texts, target="target_1"), second)
    with pytest.raises(ValueError, match="out of range"):
        regressor.explain(texts, target=2)
    with pytest.raises(ValueError, match="target_0"):
        regressor.explain(texts, target="dominance")


def test_regressor_targets_named_after_saved_columns(regressor):
    regressor.metadata_ = {"va_cols": ["valence", "arousal"]}
    try:
        table = regressor.explain(["the day was happy"])
        assert table["target"].unique().tolist() == ["valence", "arousal"]
        assert set(regressor.explain(["the day was happy"], target="arousal")["target"]) == {"arousal"}
    finally:
        del regressor.metadata_


def test_classifier_targets(classifier):
    texts = ["the day was happy", "sad and very sad", "my happy table", "it was sad today"]
    table = classifier.explain(texts)
    predicted = classifier.predict(texts)
    explained = table.groupby("text_id")["target"].first().to_numpy()
    np.testing.assert_array_equal(explained, predicted)
    assert table.groupby("text_id")["target"].nunique().eq(1).all()

    joy = classifier.explain(texts, target="joy")
    assert set(joy["target"]) == {"joy"}
    first_joy = np.flatnonzero(predicted == "joy")[0]
    np.testing.assert_allclose(joy[joy.text_id == first_joy]["saliency"], table[table.text_id == first_joy]["saliency"])
    with pytest.raises(ValueError, match=r"\['joy', 'sadness'\]"):
        classifier.explain(texts, target="anger")


def test_classifier_saliency_is_gradient_of_the_chosen_logit(classifier):
    text = "my table was sad today"
    sadness = list(classifier.classes_).index("sadness")
    grad, _, _, _ = manual_token_gradients(classifier, text, lambda out: out[sadness])
    table = classifier.explain([text], target="sadness", saliency="grad_norm")
    np.testing.assert_allclose(table["saliency"], grad[1:-1].norm(dim=-1).numpy(), rtol=1e-4)


def test_embedder_projection_estimate(embedder):
    text = "the day was happy"
    table = embedder.explain([text])
    assert table["target"].unique().tolist() == ["embedding"]
    assert table["saliency_share"].sum() == pytest.approx(1.0)
    pd.testing.assert_frame_equal(table, embedder.explain([text]))  # seeded: reproducible
    assert not np.allclose(table["saliency"], embedder.explain([text], random_state=1)["saliency"])

    # the random projections estimate the Frobenius norm of the Jacobian dz/dE_t
    net = embedder.network_.eval()
    ids = embedder.tokenizer_([text], return_tensors="pt")
    embeds = net.embed_tokens(ids["input_ids"]).detach()

    def z(e):
        h = net.encode(e, ids["attention_mask"])
        return torch.nn.functional.normalize(net.sentence(h, ids["attention_mask"]), dim=-1)[0]

    jac = torch.autograd.functional.jacobian(z, embeds)[:, 0]  # (hidden, tokens, hidden)
    exact = jac.pow(2).sum(dim=(0, 2)).sqrt()[1:-1].numpy()
    estimate = embedder.explain([text], n_projections=400)["saliency"].to_numpy()
    np.testing.assert_allclose(estimate, exact, rtol=0.15)
    with pytest.raises(ValueError, match="target=None"):
        embedder.explain([text], target=0)
    with pytest.raises(ValueError, match="n_projections"):
        embedder.explain([text], n_projections=0)


# ---------------------------------------------------------------------- nothing moves
@pytest.mark.parametrize("model", ["regressor", "classifier", "embedder"])
def test_explain_changes_no_state(model, request):
    estimator = request.getfixturevalue(model)
    net = estimator.network_
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params_before = estimator.get_params()
    attributes = set(vars(estimator))
    net.train()  # whatever mode the network is in comes back
    rng = torch.get_rng_state()
    np_rng = np.random.get_state()[1].copy()
    estimator.explain(["the day was happy", "sad table"])
    assert net.training
    net.eval()
    assert torch.equal(torch.get_rng_state(), rng)
    np.testing.assert_array_equal(np.random.get_state()[1], np_rng)
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in net.parameters())
    assert set(vars(estimator)) == attributes
    assert estimator.get_params() == params_before


def test_unfitted_and_bad_input(tiny_bert):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CARLRegressor(tiny_bert).explain(["a text"])
    with pytest.raises(NotFittedError):
        explain(CARLEmbedder(tiny_bert), ["a text"])


def test_bare_string_and_truncation(regressor):
    with pytest.raises(ValueError, match="string object received"):
        regressor.explain("the day was happy")
    long_text = " ".join(["the day was happy"] * 10)
    regressor.max_length = 12  # the tiny BERT has 64 positions
    try:
        with pytest.warns(UserWarning, match="max_length=12"):
            table = regressor.explain([long_text, "sad"], target=0)
    finally:
        regressor.max_length = 128
    assert table[table.text_id == 0]["word"].tolist() == long_text.split()[:10]  # 12 tokens less [CLS], [SEP]
    assert table[table.text_id == 1]["word"].tolist() == ["sad"]


# ---------------------------------------------------------------------- word pieces
WORDPIECE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##believ", "##able", "happy", "day",
                   "##s", ".", "'", "t", "isn", "the", "sad", "was"]


@pytest.fixture(scope="module")
def wordpiece_regressor(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("wordpiece-bert")
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(WORDPIECE_VOCAB)})
    config = BertConfig(vocab_size=len(WORDPIECE_VOCAB), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    texts = ["the happy days", "the sad day", "unbelievable days .", "the day was sad"] * 4
    y = [8.0, 2.0, 7.0, 3.0] * 4
    return CARLRegressor(str(path), max_epochs=1, batch_size=8, random_state=0, device="cpu").fit(texts, y)


def test_word_pieces_are_merged(wordpiece_regressor):
    reg = wordpiece_regressor
    text = "Unbelievable happy days. Isn't it"
    pieces = reg.tokenizer_.tokenize(text)
    assert pieces == ["un", "##believ", "##able", "happy", "day", "##s", ".", "isn", "'", "t", "[UNK]"]
    table = reg.explain([text])
    # pieces make words as written (case kept); punctuation stays with the word it touches
    assert table["word"].tolist() == ["Unbelievable", "happy", "days.", "Isn't", "it"]

    grad, _, _, _ = manual_token_gradients(reg, text, lambda out: out[0])
    piece_scores = grad[1:-1].norm(dim=-1).numpy() * reg.target_scale_[0]
    words = [[0, 1, 2], [3], [4, 5, 6], [7, 8, 9], [10]]
    expected = [np.sqrt(np.sum(piece_scores[w] ** 2)) for w in words]  # root of the sum of squares
    np.testing.assert_allclose(table["saliency"], expected, rtol=1e-4)
    assert table["saliency_share"].sum() == pytest.approx(1.0)


class _SlowTokenizer:
    """The tokenizer without offsets, as a slow (pure Python) tokenizer is."""

    is_fast = False

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __call__(self, *args, return_offsets_mapping=False, **kwargs):
        assert not return_offsets_mapping, "a slow tokenizer cannot give offsets"
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def test_word_pieces_are_merged_without_offsets(wordpiece_regressor):
    reg = wordpiece_regressor
    text = "Unbelievable happy days."
    fast = reg.explain([text])
    fast_tokenizer = reg.tokenizer_
    reg.tokenizer_ = _SlowTokenizer(fast_tokenizer)
    try:
        slow = reg.explain([text])
    finally:
        reg.tokenizer_ = fast_tokenizer
    assert slow["word"].tolist() == ["unbelievable", "happy", "days", "."]  # ## joins; no offsets, no case
    np.testing.assert_allclose(slow["saliency"].iloc[:2], fast["saliency"].iloc[:2], rtol=1e-6)
    days = fast["saliency"].iloc[2]
    np.testing.assert_allclose(np.hypot(slow["saliency"].iloc[2], slow["saliency"].iloc[3]), days, rtol=1e-5)


def test_texts_without_words(tiny_bert):
    reg = CARLRegressor(tiny_bert, max_epochs=1, batch_size=8, random_state=0, device="cpu")
    texts, y = decisive_data(16, 0)
    reg.fit(texts, y[:, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = reg.explain(["", "happy day"])
    assert table["text_id"].unique().tolist() == [1]
    assert table["target"].unique().tolist() == ["target_0"]
    empty = reg.explain([""])
    assert empty.columns.tolist() == COLUMNS and empty.empty
