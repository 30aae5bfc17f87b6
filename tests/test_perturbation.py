"""Token saliency, token selection and the perturbation operators (their use in the training step: test_training.py)."""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import STEP_TEXTS, reference_selection

from skcarl.network import CARLNetwork
from skcarl.perturbation import TokenPerturber, select_tokens, token_saliency
from skcarl.tokens import pad_batch, tokenize


# ---------------------------------------------------------------------------------------------- saliency
def _grad_and_embeds():
    rng = np.random.default_rng(3)
    return rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 4))


def test_token_saliency_grad_norm_matches_numpy():
    """grad_norm: a_it = sqrt(Σ_h g_ith²)."""
    g, e = _grad_and_embeds()
    got = token_saliency(torch.tensor(g), torch.tensor(e), "grad_norm").numpy()
    expected = np.array([[math.sqrt(sum(x * x for x in g[i, t])) for t in range(5)] for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_token_saliency_grad_x_input_matches_numpy():
    """grad_x_input: a_it = |Σ_h g_ith · e_ith|, which ranks tokens differently from grad_norm here."""
    g, e = _grad_and_embeds()
    got = token_saliency(torch.tensor(g), torch.tensor(e), "grad_x_input").numpy()
    expected = np.array([[abs(sum(a * b for a, b in zip(g[i, t], e[i, t]))) for t in range(5)] for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    norms = token_saliency(torch.tensor(g), torch.tensor(e), "grad_norm").numpy()
    assert not np.array_equal(got.argsort(1), norms.argsort(1))


def test_token_saliency_unknown_mode():
    """An unknown mode is a ValueError naming it."""
    g, e = _grad_and_embeds()
    with pytest.raises(ValueError, match="grad_squared"):
        token_saliency(torch.tensor(g), torch.tensor(e), "grad_squared")


# ---------------------------------------------------------------------------------------------- selection
def test_select_tokens_top_k_eligible_per_row():
    """Rows with n = 20, 1, 7 eligible tokens and ratio 0.15 choose 3, 1, 2: exactly the top eligible ones,
    even though ineligible positions (special, padding) carry the highest scores."""
    T = 24
    rng = np.random.default_rng(0)
    scores = rng.permutation(3 * T).reshape(3, T).astype(np.float64)  # distinct scores
    eligible = np.zeros((3, T), dtype=bool)
    eligible[0, 1:21] = True          # [CLS] + 20 real + [SEP] + padding
    eligible[1, 1] = True             # [CLS] w [SEP] + padding
    eligible[2, 1:8] = True
    scores[:, 0] = 1000.0             # [CLS]
    scores[0, 21], scores[1, 2], scores[2, 8] = 999.0, 999.0, 999.0   # [SEP]
    scores[0, 22:] = 998.0            # padding
    scores[1, 3:] = 998.0
    scores[2, 9:] = 998.0
    chosen = select_tokens(torch.tensor(scores), torch.tensor(eligible), 0.15).numpy()
    assert chosen.dtype == np.bool_
    assert chosen.sum(1).tolist() == [3, 1, 2]
    assert not (chosen & ~eligible).any()
    np.testing.assert_array_equal(chosen, reference_selection(scores, eligible, 0.15))
    # the exact top-3 of row 0 by hand
    top = sorted(range(1, 21), key=lambda t: -scores[0, t])[:3]
    assert sorted(np.flatnonzero(chosen[0]).tolist()) == sorted(top)


@pytest.mark.parametrize("n, ratio, k", [(20, 0.15, 3), (1, 0.15, 1), (7, 0.15, 2), (30, 0.1, 3), (4, 0.5, 2),
                                         (10, 1.0, 10), (3, 0.01, 1), (40, 0.15, 6), (100, 0.07, 7)])
def test_select_tokens_count_is_ceil_ratio_n(n, ratio, k):
    """k = ⌈ratio·n⌉ (at least 1), without float error rounding an exact product up (0.15·20, 0.1·30)."""
    scores = torch.linspace(0, 1, n + 2).flip(0).unsqueeze(0)
    eligible = torch.zeros(1, n + 2, dtype=torch.bool)
    eligible[0, 1:n + 1] = True
    chosen = select_tokens(scores, eligible, ratio)
    assert int(chosen.sum()) == k
    assert chosen[0, 1:k + 1].all()  # scores decrease with position, so the first k eligible ones


def test_select_tokens_row_without_eligible_tokens_chooses_nothing():
    """A sentence that is only special tokens/padding gets no perturbed token."""
    scores = torch.tensor([[5.0, 4.0, 3.0], [1.0, 2.0, 3.0]])
    eligible = torch.tensor([[False, False, False], [False, True, True]])
    chosen = select_tokens(scores, eligible, 0.5)
    assert chosen.tolist() == [[False, False, False], [False, False, True]]


def test_select_tokens_ranks_negative_scores():
    """Negative scores rank normally and a high-scoring ineligible token is still skipped."""
    scores = torch.tensor([[-7.0, -5.0, -1.0, 100.0, -3.0]])
    eligible = torch.tensor([[True, True, True, False, True]])
    chosen = select_tokens(scores, eligible, 0.5)  # n = 4 → k = 2
    assert chosen.tolist() == [[False, False, True, False, True]]


def test_select_tokens_eligible_minus_inf_scores_still_count():
    """An eligible token with score −inf is still chosen when k covers it (k = n = 1 here)."""
    scores = torch.tensor([[-math.inf, 100.0, -math.inf]])
    eligible = torch.tensor([[False, False, True]])
    assert select_tokens(scores, eligible, 1.0).tolist() == [[False, False, True]]


# ---------------------------------------------------------------------------------------------- operators
VOCAB = 43
SPECIAL = [1, 3, 0, 2, 4]  # the tiny BERT's [UNK] [SEP] [PAD] [CLS] [MASK]


def _ids_and_chosen(seed=0, B=16, T=60):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (B, T), generator=g)
    ids[:, 0] = 2
    ids[:, -1] = 3
    ids[:, 1] = 5            # the first candidate id
    ids[:, 2] = VOCAB - 1    # the last candidate id
    chosen = torch.rand(B, T, generator=g) < 0.6
    chosen[:, 1:3] = True
    chosen[:, 0] = chosen[:, -1] = False
    return ids, chosen


def test_random_replacement_never_special_never_original_only_chosen():
    """"random": chosen ids become a different non-special id; nothing else changes."""
    ids, chosen = _ids_and_chosen()
    torch.manual_seed(0)
    out = TokenPerturber("random", VOCAB, SPECIAL).replace_ids(ids, chosen)
    assert out.dtype == ids.dtype and out.shape == ids.shape
    torch.testing.assert_close(out[~chosen], ids[~chosen], rtol=0, atol=0)
    new = out[chosen]
    assert (new != ids[chosen]).all()
    assert not np.isin(new.numpy(), SPECIAL).any()
    assert ((new >= 0) & (new < VOCAB)).all()
    assert ids.equal(_ids_and_chosen()[0])  # the input is not modified in place


def test_random_replacement_is_uniform_over_other_candidates():
    """For a fixed original id, every other non-special id is drawn about equally often."""
    n = 38 * 400
    ids = torch.full((1, n), 20)
    chosen = torch.ones(1, n, dtype=torch.bool)
    torch.manual_seed(1)
    new = TokenPerturber("random", VOCAB, SPECIAL).replace_ids(ids, chosen)[0].numpy()
    counts = np.bincount(new, minlength=VOCAB)
    assert counts[SPECIAL].sum() == 0 and counts[20] == 0
    others = np.delete(counts[5:], 20 - 5)
    assert len(others) == 37 and others.min() > 0.7 * n / 37 and others.max() < 1.3 * n / 37


def test_random_replacement_with_scattered_special_ids():
    """Special ids in the middle of the vocabulary (and ids >= vocab_size in the list) are never drawn."""
    special = [0, 7, 8, 15, 99]
    ids = torch.tensor([[6, 9, 14, 16, 1, 19] * 200])
    chosen = torch.ones_like(ids, dtype=torch.bool)
    torch.manual_seed(2)
    new = TokenPerturber("random", 20, special).replace_ids(ids, chosen)
    assert (new != ids).all()
    assert not np.isin(new.numpy(), special).any()
    assert set(np.unique(new.numpy())) == set(range(20)) - {0, 7, 8, 15}


def test_random_replacement_of_non_candidate_original_is_uniform():
    """An original that is itself a special id ([UNK] = 1, real inside a text) may become any non-special id."""
    n = 38 * 400
    ids = torch.full((1, n), 1)
    chosen = torch.ones(1, n, dtype=torch.bool)
    torch.manual_seed(5)
    new = TokenPerturber("random", VOCAB, SPECIAL).replace_ids(ids, chosen)[0].numpy()
    counts = np.bincount(new, minlength=VOCAB)[5:]
    assert len(counts) == 38 and counts.min() > 0.7 * n / 38


def test_mask_replacement():
    """"mask": chosen positions become mask_id, others keep their id."""
    ids, chosen = _ids_and_chosen(seed=4)
    out = TokenPerturber("mask", VOCAB, SPECIAL, mask_id=4).replace_ids(ids, chosen)
    assert (out[chosen] == 4).all()
    torch.testing.assert_close(out[~chosen], ids[~chosen], rtol=0, atol=0)


def test_unigram_replacement_follows_corpus_counts():
    """"unigram": replacements come only from ids with corpus mass (special ids' counts are dropped),
    in proportion to the counts."""
    counts = torch.zeros(VOCAB, dtype=torch.long)
    counts[7], counts[9] = 300, 100
    counts[2] = 10_000  # [CLS] counted by mistake: must never be drawn
    ids = torch.full((1, 4000), 20)
    chosen = torch.ones_like(ids, dtype=torch.bool)
    torch.manual_seed(3)
    perturber = TokenPerturber("unigram", VOCAB, SPECIAL, unigram_counts=counts)
    np.testing.assert_allclose(perturber.unigram_probs[[7, 9]].numpy(), [0.75, 0.25], rtol=1e-6)
    new = perturber.replace_ids(ids, chosen)[0].numpy()
    assert set(np.unique(new)) == {7, 9}
    assert abs((new == 7).mean() - 0.75) < 0.04


def test_unigram_replacement_redraws_originals():
    """An original that is itself a likely draw is redrawn: with mass 1/2 on each of {7, 9}, an original 7
    stays 7 with probability 2⁻⁹ (8 redraws), not 1/2; with all mass on 7 it must stay 7."""
    counts = torch.zeros(VOCAB)
    counts[7] = counts[9] = 1
    ids = torch.tensor([[7, 9] * 2000])
    chosen = torch.ones_like(ids, dtype=torch.bool)
    torch.manual_seed(4)
    new = TokenPerturber("unigram", VOCAB, SPECIAL, unigram_counts=counts).replace_ids(ids, chosen)
    assert set(np.unique(new.numpy())) <= {7, 9}
    assert int((new == ids).sum()) <= 30  # expected ≈ 4000 / 512 ≈ 8; ≈ 2000 without the redraws
    only7 = torch.zeros(VOCAB)
    only7[7] = 5
    new = TokenPerturber("unigram", VOCAB, SPECIAL, unigram_counts=only7).replace_ids(ids, chosen)
    assert (new == 7).all()


def test_adversarial_shift_only_chosen_with_expected_norm_and_direction():
    """"adversarial": δ is zero off the chosen tokens; at a chosen token it is
    ε·mean(‖E_it‖ over real tokens)·g_it/‖g_it‖."""
    rng = np.random.default_rng(5)
    E = rng.normal(size=(2, 6, 4))
    G = rng.normal(size=(2, 6, 4))
    real = np.array([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype=bool)
    chosen = np.array([[0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0]], dtype=bool)
    E[~real] *= 50.0  # huge special/padding embeddings must not enter the mean norm
    eps = 0.5
    embeds = torch.tensor(E, dtype=torch.float32, requires_grad=True)
    out = TokenPerturber("adversarial", VOCAB, SPECIAL, eps=eps).shift_embeddings(
        embeds, torch.tensor(G, dtype=torch.float32), torch.tensor(chosen), torch.tensor(real))
    delta = (out - embeds).detach().double().numpy()
    mean_norm = np.mean([np.linalg.norm(E[i, t]) for i, t in zip(*np.nonzero(real))])
    for i in range(2):
        for t in range(6):
            if chosen[i, t]:
                expected = eps * mean_norm * G[i, t] / np.linalg.norm(G[i, t])
                np.testing.assert_allclose(delta[i, t], expected, rtol=1e-4, atol=1e-5)
            else:
                assert np.abs(delta[i, t]).max() < 1e-4 * np.abs(E[i, t]).max()
    # δ is a constant: the gradient of the shifted embeddings w.r.t. E is the identity
    out.sum().backward()
    torch.testing.assert_close(embeds.grad, torch.ones_like(embeds))


def test_adversarial_shift_with_zero_or_nan_gradient_is_finite():
    """A chosen token with a zero (or nan) gradient gets no shift and no nan."""
    E = torch.ones(1, 3, 2)
    G = torch.tensor([[[0.0, 0.0], [float("nan"), 1.0], [3.0, 4.0]]])
    chosen = torch.tensor([[True, True, True]])
    out = TokenPerturber("adversarial", VOCAB, SPECIAL, eps=1.0).shift_embeddings(E, G, chosen, chosen)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 0], E[0, 0])
    norm = math.sqrt(2)
    torch.testing.assert_close(out[0, 2], E[0, 2] + norm * torch.tensor([0.6, 0.8]))


def test_adversarial_shift_of_a_batch_without_real_tokens_leaves_it_unchanged():
    """Blank texts only ([CLS] [SEP]): no norm to average, no token to shift, no nan."""
    E = torch.randn(2, 2, 4)
    nothing = torch.zeros(2, 2, dtype=torch.bool)
    out = TokenPerturber("adversarial", VOCAB, SPECIAL, eps=0.1).shift_embeddings(E, torch.randn(2, 2, 4),
                                                                                   nothing, nothing)
    torch.testing.assert_close(out, E)


def test_perturber_constructor_errors():
    """Unknown kind, mask without mask_id, unigram without non-special mass are ValueErrors."""
    with pytest.raises(ValueError, match="swap"):
        TokenPerturber("swap", VOCAB, SPECIAL)
    with pytest.raises(ValueError, match="mask"):
        TokenPerturber("mask", VOCAB, SPECIAL, mask_id=None)
    counts = torch.zeros(VOCAB)
    counts[2] = 5
    with pytest.raises(ValueError, match="unigram"):
        TokenPerturber("unigram", VOCAB, SPECIAL, unigram_counts=counts)


def test_perturber_candidates_exclude_special_ids():
    """The replacement candidates are exactly the non-special ids, sorted."""
    perturber = TokenPerturber("random", 10, [9, 0, 3, 3, 42])
    assert perturber.candidates.tolist() == [1, 2, 4, 5, 6, 7, 8]


# ---------------------------------------------------------------------------------------------- a real encoder
TEXTS = STEP_TEXTS


def test_saliency_of_autograd_gradient_picks_the_token_the_loss_reads(backbone):
    """A loss reading only token p_i of each sentence's embeddings: both saliencies are zero elsewhere and
    select_tokens (k = 1) picks exactly p_i."""
    tokenizer, encoder = backbone
    net = CARLNetwork(copy.deepcopy(encoder), projection_dim=8)
    tokens = tokenize(tokenizer, TEXTS[:3], 32)
    batch = pad_batch(tokens, [0, 1, 2], tokenizer.pad_token_id, "cpu")
    embeds = net.embed_tokens(batch["input_ids"])
    embeds.retain_grad()
    positions = [3, 5, 1]
    loss = sum((embeds[i, p] ** 2).sum() * (i + 1) for i, p in enumerate(positions))
    loss.backward()
    assert embeds.grad is not None
    for mode in ("grad_norm", "grad_x_input"):
        scores = token_saliency(embeds.grad, embeds.detach(), mode)
        expected = np.zeros(scores.shape, dtype=bool)
        expected[[0, 1, 2], positions] = True
        assert (scores.numpy()[~expected] == 0).all() and (scores.numpy()[expected] > 0).all()
        chosen = select_tokens(scores, batch["real_tokens"], 0.1)
        np.testing.assert_array_equal(chosen.numpy(), expected)
