"""The CARL losses against independent float64 NumPy references on small hand-built inputs.

Every contrastive case uses B=3 queries and N=7 candidates: the 3 batch keys followed by 4 "queue" keys,
with 2-D labels, exactly the layout :class:`skcarl.training.CARLTrainer` builds.
"""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from skcarl.losses import (
    CONTRASTIVE_LOSSES,
    RankNContrastLoss,
    RankRegularisedLoss,
    SoftInfoNCELoss,
    TokenDetectionLoss,
    WeightedSupConLoss,
    make_contrastive_loss,
)

TAU = 0.2
TAU_Y = 0.3


# ---------------------------------------------------------------------------------------------- references
def _logsumexp(a):
    m = a.max()
    return m + math.log(sum(math.exp(x - m) for x in a))


def _label_dist(y, yk):
    d = np.empty((len(y), len(yk)))
    for i in range(len(y)):
        for j in range(len(yk)):
            d[i, j] = math.sqrt(sum((y[i, c] - yk[j, c]) ** 2 for c in range(y.shape[1])))
    return d


def _sims(q, k, tau):
    return np.array([[float(np.dot(q[i], k[j])) / tau for j in range(len(k))] for i in range(len(q))])


def ref_soft_targets(y, yk, tau_y):
    d = _label_dist(y, yk)
    t = np.empty_like(d)
    for i in range(len(y)):
        z = _logsumexp(-d[i] / tau_y)
        t[i] = np.exp(-d[i] / tau_y - z)
    return t


def ref_soft_infonce(q, k, y, yk, tau, tau_y):
    s = _sims(q, k, tau)
    t = ref_soft_targets(y, yk, tau_y)
    total = 0.0
    for i in range(len(q)):
        lse = _logsumexp(s[i])
        total += -sum(t[i, j] * (s[i, j] - lse) for j in range(len(k)))
    return total / len(q)


def ref_weighted_supcon(q, k, y, yk, tau, sigma):
    s = _sims(q, k, tau)
    d = _label_dist(y, yk)
    total = 0.0
    for i in range(len(q)):
        lse = _logsumexp(s[i])
        w = [math.exp(-d[i, j] ** 2 / (2 * sigma**2)) for j in range(len(k))]
        total += -sum(w[j] * (s[i, j] - lse) for j in range(len(k))) / sum(w)
    return total / len(q)


def ref_rank_n_contrast(q, k, y, yk, tau, strict=False):
    """Explicit O(B·N·N) mask: negatives of (i, j) are all l with d_il >= d_ij (ties included).

    ``strict=True`` is the wrong variant (d_il > d_ij, plus j itself), used to show ties matter.
    """
    s = _sims(q, k, tau)
    d = _label_dist(y, yk)
    B, N = s.shape
    mask = np.zeros((B, N, N), dtype=bool)
    for i in range(B):
        for j in range(N):
            for k in range(N):
                mask[i, j, k] = (d[i, k] > d[i, j] or k == j) if strict else d[i, k] >= d[i, j]
    total = 0.0
    for i in range(B):
        row = 0.0
        for j in range(N):
            row += s[i, j] - _logsumexp(s[i][mask[i, j]])
        total += -row / N
    return total / B


def finite_diff_grad(f, q, h=1e-6):
    g = np.zeros_like(q)
    for idx in np.ndindex(q.shape):
        qp, qm = q.copy(), q.copy()
        qp[idx] += h
        qm[idx] -= h
        g[idx] = (f(qp) - f(qm)) / (2 * h)
    return g


# ---------------------------------------------------------------------------------------------- inputs
def _unit(rows):
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# D = 4. Batch keys are noisy copies of the queries; the queue holds 4 other keys.
Q = _unit([[1.0, 0.2, -0.3, 0.5], [-0.4, 1.0, 0.1, 0.2], [0.3, -0.2, 1.0, -0.6]])
K = _unit([[0.9, 0.3, -0.2, 0.6], [-0.5, 0.8, 0.2, 0.1], [0.2, -0.1, 1.1, -0.4],      # batch keys
           [0.1, 0.1, 0.1, 1.0], [-1.0, -0.2, 0.3, 0.0], [0.5, 0.5, -0.5, -0.5], [0.0, -1.0, 0.2, 0.3]])
Y = np.array([[0.1, 0.9], [0.7, 0.3], [0.4, 0.5]])
# no two candidates at (nearly) the same distance from a query: the smallest gap in a row is 0.004
YK = np.concatenate([Y, [[0.2, 0.85], [0.9, 0.15], [0.45, 0.57], [0.03, 0.02]]])

# Dyadic labels with exact ties: candidate 3 duplicates label of query 0 (= its own key's label), and
# for query 0 = (0.5, 0.25) the candidates (0.75, 0.25), (0.5, 0.5), (0.25, 0.25) are all at distance 0.25.
Y_TIE = np.array([[0.5, 0.25], [0.75, 0.25], [0.5, 0.5]])
YK_TIE = np.concatenate([Y_TIE, [[0.5, 0.25], [0.25, 0.25], [0.0, 1.0], [0.75, 0.25]]])


def _torch_loss(loss, q, k=K, y=Y, yk=YK, dtype=torch.float64):
    qt = torch.tensor(q, dtype=dtype, requires_grad=True)
    value = loss(qt, torch.tensor(k, dtype=dtype), torch.tensor(y, dtype=dtype), torch.tensor(yk, dtype=dtype))
    value.backward()
    return float(value.detach()), qt.grad.double().numpy()


CASES = [
    ("soft_infonce", lambda: SoftInfoNCELoss(TAU, TAU_Y), lambda q, y, yk: ref_soft_infonce(q, K, y, yk, TAU, TAU_Y)),
    ("weighted_supcon", lambda: WeightedSupConLoss(TAU, TAU_Y),
     lambda q, y, yk: ref_weighted_supcon(q, K, y, yk, TAU, TAU_Y)),
    ("rank_n_contrast", lambda: RankNContrastLoss(TAU), lambda q, y, yk: ref_rank_n_contrast(q, K, y, yk, TAU)),
]


# ---------------------------------------------------------------------------------------------- values & grads
@pytest.mark.parametrize("name, make, ref", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("labels", ["distinct", "ties"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_contrastive_loss_value_and_query_gradient_match_numpy(name, make, ref, labels, dtype):
    """Loss value (rtol 1e-5) and ∂L/∂q (vs float64 central differences) match the docstring formula."""
    y, yk = (Y, YK) if labels == "distinct" else (Y_TIE, YK_TIE)
    value, grad = _torch_loss(make(), Q, y=y, yk=yk, dtype=dtype)
    expected = ref(Q, y, yk)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    expected_grad = finite_diff_grad(lambda q: ref(q, y, yk), Q)
    assert np.abs(expected_grad).max() > 1e-2  # a gradient that can actually be wrong
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_soft_infonce_and_supcon_analytic_gradient():
    """∂L/∂q_i = Σ_j (p_ij − t̃_ij) k_j / (τB) for both target-weighted losses (t̃ = normalised targets)."""
    s = _sims(Q, K, TAU)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = _label_dist(Y, YK)
    targets = {
        "soft": ref_soft_targets(Y, YK, TAU_Y),
        "supcon": np.exp(-d**2 / (2 * TAU_Y**2)) / np.exp(-d**2 / (2 * TAU_Y**2)).sum(1, keepdims=True),
    }
    for key, loss in (("soft", SoftInfoNCELoss(TAU, TAU_Y)), ("supcon", WeightedSupConLoss(TAU, TAU_Y))):
        _, grad = _torch_loss(loss, Q)
        np.testing.assert_allclose(grad, (p - targets[key]) @ K / (TAU * len(Q)), rtol=1e-5, atol=1e-7)


def test_rank_n_contrast_ties_are_in_each_others_negative_sets():
    """With tied label distances the loss equals the ≥ mask, and differs from a strict-> mask."""
    value, _ = _torch_loss(RankNContrastLoss(TAU), Q, y=Y_TIE, yk=YK_TIE)
    with_ties = ref_rank_n_contrast(Q, K, Y_TIE, YK_TIE, TAU)
    strict = ref_rank_n_contrast(Q, K, Y_TIE, YK_TIE, TAU, strict=True)
    assert abs(with_ties - strict) > 1e-3  # the case really exercises ties
    np.testing.assert_allclose(value, with_ties, rtol=1e-5)


def test_rank_n_contrast_ignores_label_temperature_and_depends_only_on_ranking():
    """RnC is invariant to label_temperature and to a monotone rescaling of the labels."""
    base, _ = _torch_loss(RankNContrastLoss(TAU, 0.01), Q)
    other, _ = _torch_loss(RankNContrastLoss(TAU, 5.0), Q)
    scaled, _ = _torch_loss(RankNContrastLoss(TAU), Q, y=3 * Y + 1, yk=3 * YK + 1)
    np.testing.assert_allclose([other, scaled], [base, base], rtol=1e-6)


def test_weighted_supcon_uses_squared_distance_weights():
    """σ enters as exp(−d²/2σ²): the torch loss at σ differs from a reference with exp(−d/σ) weights."""
    value, _ = _torch_loss(WeightedSupConLoss(TAU, TAU_Y), Q)
    np.testing.assert_allclose(value, ref_weighted_supcon(Q, K, Y, YK, TAU, TAU_Y), rtol=1e-5)
    s = _sims(Q, K, TAU)
    logp = s - np.array([_logsumexp(r) for r in s])[:, None]
    w = np.exp(-_label_dist(Y, YK) / TAU_Y)
    wrong = float(np.mean(-(w * logp).sum(1) / w.sum(1)))
    assert abs(value - wrong) > 1e-3


# ---------------------------------------------------------------------------------------------- soft targets
def test_soft_targets_match_numpy_and_peak_on_nearest_label():
    """t_ij = softmax_j(−‖y_i−y_j‖/τ_y); rows sum to 1; argmax is the nearest candidate label."""
    loss = SoftInfoNCELoss(TAU, TAU_Y)
    # drop each query's own key so that the nearest label is a non-trivial candidate
    yk = YK[3:]
    t = loss.soft_targets(torch.tensor(Y), torch.tensor(yk)).double().numpy()
    np.testing.assert_allclose(t, ref_soft_targets(Y, yk, TAU_Y), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    d = _label_dist(Y, yk)
    np.testing.assert_array_equal(t.argmax(1), d.argmin(1))
    assert list(d.argmin(1)) == [0, 1, 2]  # hand-built: queue labels 0, 1, 2 are the nearest ones
    # order of target mass follows order of distance within each row
    for i in range(len(Y)):
        np.testing.assert_array_equal(np.argsort(-t[i], kind="stable"), np.argsort(d[i], kind="stable"))


def test_soft_targets_sharpen_with_smaller_label_temperature():
    """The nearest candidate's weight grows as τ_y shrinks, reaching ~1 for tiny τ_y."""
    y, yk = torch.tensor(Y), torch.tensor(YK[3:])
    peaks = [float(SoftInfoNCELoss(TAU, ty).soft_targets(y, yk)[0, 0]) for ty in (1.0, 0.3, 0.05, 0.001)]
    assert all(a < b for a, b in zip(peaks, peaks[1:]))
    assert peaks[-1] > 1 - 1e-6


# ---------------------------------------------------------------------------------------------- behaviour
def test_soft_infonce_reduces_to_infonce_with_one_hot_labels():
    """Far-apart label clusters + tiny τ_y: SoftInfoNCE == cross-entropy with the own key as positive."""
    y = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    yk = np.concatenate([y, [[-10.0, 0.0], [0.0, -10.0], [10.0, 10.0], [-10.0, -10.0]]])
    loss = SoftInfoNCELoss(TAU, 1e-3)
    value, grad = _torch_loss(loss, Q, y=y, yk=yk)
    s = torch.tensor(_sims(Q, K, TAU))
    ce = float(F.cross_entropy(s, torch.arange(3)))
    np.testing.assert_allclose(value, ce, rtol=1e-5)
    # and the MoCo gradient (p − onehot) k / (τB)
    p = torch.softmax(s, 1).numpy()
    np.testing.assert_allclose(grad, (p - np.eye(3, 7)) @ K / (TAU * 3), rtol=1e-4, atol=1e-6)
    # while a moderate τ_y does NOT give plain InfoNCE
    value_soft, _ = _torch_loss(SoftInfoNCELoss(TAU, 5.0), Q, y=y, yk=yk)
    assert abs(value_soft - ce) > 1e-2


def test_soft_infonce_decreases_when_query_rotates_toward_nearest_label_key():
    """Rotating q toward the key with the nearest label lowers the loss monotonically; toward the
    farthest-label key raises it."""
    keys = np.eye(8)[:7]  # orthonormal candidates
    q0 = _unit([[1, 1, 1, 1, 1, 1, 1, 1]])
    y = np.array([[0.5, 0.5]])
    yk = np.array([[0.9, 0.9], [0.55, 0.45], [0.1, 0.2], [0.0, 1.0], [1.0, 0.0], [0.3, 0.9], [0.8, 0.4]])
    nearest, farthest = int(_label_dist(y, yk).argmin()), int(_label_dist(y, yk).argmax())
    assert nearest == 1
    loss = SoftInfoNCELoss(TAU, 0.05)

    def value(q):
        return float(loss(torch.tensor(q), torch.tensor(keys), torch.tensor(y), torch.tensor(yk)))

    def rotated(target, alpha):
        return _unit(q0 + alpha * (keys[target] - q0))

    toward = [value(rotated(nearest, a)) for a in np.linspace(0, 1, 6)]
    away = [value(rotated(farthest, a)) for a in np.linspace(0, 1, 6)]
    assert all(b < a for a, b in zip(toward, toward[1:])), toward
    assert all(b > a for a, b in zip(away, away[1:])), away
    np.testing.assert_allclose(toward[0], ref_soft_infonce(q0, keys, y, yk, TAU, 0.05), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CONTRASTIVE_LOSSES))
@pytest.mark.parametrize("keys_require_grad", [False, True])
def test_gradient_flows_to_queries(name, keys_require_grad):
    """Queries get a nonzero gradient; keys given without requires_grad stay without a gradient."""
    loss = make_contrastive_loss(name, TAU, TAU_Y, 0.0, 0.25)
    q = torch.tensor(Q, dtype=torch.float32, requires_grad=True)
    k = torch.tensor(K, dtype=torch.float32, requires_grad=keys_require_grad)
    y, yk = torch.tensor(Y, dtype=torch.float32), torch.tensor(YK, dtype=torch.float32)
    loss(q, k, y, yk).backward()
    assert q.grad is not None and float(q.grad.abs().max()) > 1e-3
    if not keys_require_grad:
        assert k.grad is None
    assert y.grad is None and yk.grad is None


def test_losses_compute_in_float32_from_lower_precision_inputs():
    """bfloat16 queries/keys give (almost) the float32 loss: similarities are upcast before the softmax."""
    loss = SoftInfoNCELoss(0.05, TAU_Y)
    args32 = [torch.tensor(a, dtype=torch.float32) for a in (Q, K, Y, YK)]
    args16 = [a.to(torch.bfloat16) if i < 2 else a for i, a in enumerate(args32)]
    out16 = loss(*args16)
    assert out16.dtype == torch.float32
    q16, k16 = (a.float().double().numpy() for a in args16[:2])
    np.testing.assert_allclose(float(out16), ref_soft_infonce(q16, k16, Y, YK, 0.05, TAU_Y), rtol=1e-5)


# ---------------------------------------------------------------------------------------------- detection
def _bce_reference(logits, targets, real):
    total, n = 0.0, 0
    for (i, t), is_real in np.ndenumerate(real):
        if not is_real:
            continue
        h, m = float(logits[i, t]), float(targets[i, t])
        sig = 1.0 / (1.0 + math.exp(-h))
        total += -(m * math.log(sig) + (1 - m) * math.log(1 - sig))
        n += 1
    return total / n


def test_token_detection_loss_matches_numpy_bce_over_real_tokens():
    """BCE mean over real tokens only; huge wrong logits at padding/special positions change nothing."""
    # row 0: [CLS] a b c [SEP] PAD PAD ; row 1: [CLS] a b c d e [SEP]
    real = np.array([[0, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0]], dtype=bool)
    perturbed = np.array([[0, 1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0]], dtype=bool)
    logits = np.array([[0.3, 1.2, -0.7, 0.1, -2.0, 0.5, 0.9], [1.5, -0.4, 0.8, 2.1, -1.1, 0.2, -0.6]])
    loss = TokenDetectionLoss()
    value = float(loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(perturbed), torch.tensor(real)))
    np.testing.assert_allclose(value, _bce_reference(logits, perturbed, real), rtol=1e-5)
    # the mean over real tokens is not the mean over all tokens
    assert abs(value - _bce_reference(logits, perturbed, np.ones_like(real))) > 1e-2

    poisoned = logits.copy()
    poisoned[~real] = np.where(perturbed[~real], -1e4, 1e4)  # confidently wrong everywhere excluded
    poisoned_t = torch.tensor(poisoned, dtype=torch.float32, requires_grad=True)
    value2 = loss(poisoned_t, torch.tensor(perturbed), torch.tensor(real))
    np.testing.assert_allclose(float(value2.detach()), value, rtol=1e-6)
    value2.backward()
    assert torch.all(poisoned_t.grad[torch.tensor(~real)] == 0)
    # gradient at real positions is (σ(h) − m) / |R|
    sig = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(poisoned_t.grad.numpy()[real], ((sig - perturbed) / real.sum())[real], rtol=1e-5)


def test_token_detection_loss_without_real_tokens_is_zero_not_nan():
    """No real token at all (a batch of empty texts): the loss is 0 with a zero, finite gradient."""
    logits = torch.tensor([[3.0, -2.0], [0.5, 1.0]], requires_grad=True)
    none = torch.zeros(2, 2, dtype=torch.bool)
    value = TokenDetectionLoss()(logits, none, none)
    assert float(value.detach()) == 0.0
    value.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_token_detection_loss_accepts_integer_masks():
    """0/1 integer masks give the same loss as boolean ones."""
    real = torch.tensor([[0, 1, 1, 0]])
    pert = torch.tensor([[0, 1, 0, 0]])
    logits = torch.tensor([[5.0, 0.5, -0.25, -5.0]])
    got = float(TokenDetectionLoss()(logits, pert, real))
    np.testing.assert_allclose(got, _bce_reference(logits.numpy(), pert.numpy(), real.numpy().astype(bool)),
                               rtol=1e-6)


# ---------------------------------------------------------------------------------------------- factory
@pytest.mark.parametrize("name, cls", [("soft_infonce", SoftInfoNCELoss), ("weighted_supcon", WeightedSupConLoss),
                                       ("rank_n_contrast", RankNContrastLoss)])
def test_make_contrastive_loss_returns_configured_class(name, cls):
    """Each name builds its class with the given temperatures."""
    loss = make_contrastive_loss(name, 0.07, 0.3, 0.0, 0.25)
    assert type(loss) is cls
    assert loss.temperature == 0.07 and loss.label_temperature == 0.3


def test_make_contrastive_loss_unknown_name():
    """An unknown name is a KeyError, and the registry holds exactly the three losses."""
    assert set(CONTRASTIVE_LOSSES) == {"soft_infonce", "weighted_supcon", "rank_n_contrast"}
    with pytest.raises(KeyError):
        make_contrastive_loss("infonce", 0.1, 0.1, 0.0, 0.25)


# ---------------------------------------------------------------------------------------------- ranking term
def _far_order_case(swapped: bool):
    """One query labelled 0 whose own key matches it; two far candidates labelled 0.5 and 1.0, the nearer
    of them more similar to the query (``swapped``: the farther one)."""
    q = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=1)
    near_far = [[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]
    k = F.normalize(torch.tensor([[1.0, 0.0, 0.0]] + (near_far[::-1] if swapped else near_far)), dim=1)
    y = torch.tensor([[0.0]])
    yk = torch.tensor([[0.0], [0.5], [1.0]])
    return q, k, y, yk


def test_ranking_term_orders_far_candidates_that_sharp_soft_infonce_ignores():
    """With a sharp τ_y, soft InfoNCE cannot tell which far candidate is nearer (its value is the same
    when their similarities swap); the Rank-N-Contrast term can, and the sum prefers the right order."""
    base = SoftInfoNCELoss(TAU, 1e-3)
    loss = RankRegularisedLoss(base, RankNContrastLoss(0.5), weight=0.5)
    right, wrong = _far_order_case(False), _far_order_case(True)
    np.testing.assert_allclose(float(base(*right)), float(base(*wrong)), rtol=1e-6)
    assert float(loss(*right)) < float(loss(*wrong)) - 1e-3


def test_ranking_weight_scales_the_rank_n_contrast_term():
    """L = L_base + w·L_RnC(τ_r) for every w, against the two losses computed alone."""
    q, k, y, yk = (torch.tensor(a) for a in (Q, K, Y, YK))
    base, ranking = SoftInfoNCELoss(TAU, TAU_Y), RankNContrastLoss(0.5)
    for w in (0.25, 1.0, 3.0):
        got = float(make_contrastive_loss("soft_infonce", TAU, TAU_Y, ranking_weight=w, ranking_temperature=0.5)(
            q, k, y, yk))
        np.testing.assert_allclose(got, float(base(q, k, y, yk)) + w * float(ranking(q, k, y, yk)), rtol=1e-6)


def test_make_contrastive_loss_adds_the_ranking_term_only_with_positive_weight():
    off = make_contrastive_loss("soft_infonce", 0.05, 0.02, ranking_weight=0.0, ranking_temperature=0.25)
    assert type(off) is SoftInfoNCELoss
    loss = make_contrastive_loss("weighted_supcon", 0.05, 0.02, ranking_weight=2.0, ranking_temperature=0.7)
    assert isinstance(loss, RankRegularisedLoss) and type(loss.base) is WeightedSupConLoss
    assert loss.weight == 2.0 and loss.ranking.temperature == 0.7 and loss.base.temperature == 0.05
