"""The momentum (EMA) key encoder and the FIFO key queue, against hand-computed expectations."""

import numpy as np
import pytest
import torch
from torch import nn

from skcarl.momentum import KeyQueue, make_key_network, momentum_update


def _net(weight, bias, running_mean, running_var):
    """Linear(3→2) followed by BatchNorm1d(2), with the given weights and running statistics."""
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(weight))
        net[0].bias.copy_(torch.tensor(bias))
        net[1].weight.copy_(torch.tensor([1.0, 1.0]))
        net[1].bias.copy_(torch.tensor([0.0, 0.0]))
        net[1].running_mean.copy_(torch.tensor(running_mean))
        net[1].running_var.copy_(torch.tensor(running_var))
    return net


KEY_W = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
KEY_B = np.array([0.5, -0.5])
QUERY_W = np.array([[0.0, -2.0, 1.0], [3.0, 1.5, -4.0]])
QUERY_B = np.array([2.0, 1.0])


def _pair():
    key = _net(KEY_W.tolist(), KEY_B.tolist(), [0.0, 0.0], [1.0, 1.0])
    query = _net(QUERY_W.tolist(), QUERY_B.tolist(), [0.25, -3.0], [2.0, 0.5])
    query[1].num_batches_tracked.fill_(7)
    with torch.no_grad():
        query[1].weight.copy_(torch.tensor([3.0, -1.0]))
    key.requires_grad_(False)
    return key, query


@pytest.mark.parametrize("m", [0.9, 0.0, 1.0, 0.995])
def test_momentum_update_is_ema_of_parameters(m):
    """ξ ← m·ξ + (1−m)·θ for each parameter, θ untouched (m = 0.9, 0, 1, 0.995)."""
    key, query = _pair()
    momentum_update(key, query, m)
    np.testing.assert_allclose(key[0].weight.numpy(), m * KEY_W + (1 - m) * QUERY_W, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(key[0].bias.numpy(), m * KEY_B + (1 - m) * QUERY_B, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(key[1].weight.numpy(), m * np.ones(2) + (1 - m) * np.array([3.0, -1.0]),
                               rtol=1e-6, atol=1e-7)
    # the query network is not modified
    np.testing.assert_array_equal(query[0].weight.detach().numpy(), QUERY_W.astype(np.float32))
    np.testing.assert_array_equal(query[0].bias.detach().numpy(), QUERY_B.astype(np.float32))


def test_momentum_update_m1_keeps_key_and_m0_copies_query_exactly():
    """m=1 leaves ξ bit-identical; m=0 makes ξ bit-identical to θ."""
    key, query = _pair()
    momentum_update(key, query, 1.0)
    np.testing.assert_array_equal(key[0].weight.numpy(), KEY_W.astype(np.float32))
    momentum_update(key, query, 0.0)
    np.testing.assert_array_equal(key[0].weight.numpy(), query[0].weight.detach().numpy())


def test_momentum_update_repeated_steps_converge_geometrically():
    """After n steps with a fixed θ: ξ_n = θ + m^n (ξ_0 − θ)."""
    key, query = _pair()
    m, n = 0.9, 5
    for _ in range(n):
        momentum_update(key, query, m)
    expected = QUERY_W + m**n * (KEY_W - QUERY_W)
    np.testing.assert_allclose(key[0].weight.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m", [0.9, 0.0, 1.0])
def test_momentum_update_copies_buffers(m):
    """BatchNorm running statistics (and the batch counter) are copied, not averaged, whatever m."""
    key, query = _pair()
    momentum_update(key, query, m)
    np.testing.assert_array_equal(key[1].running_mean.numpy(), np.array([0.25, -3.0], dtype=np.float32))
    np.testing.assert_array_equal(key[1].running_var.numpy(), np.array([2.0, 0.5], dtype=np.float32))
    assert int(key[1].num_batches_tracked) == 7
    # a copy, not an alias: later changes of the query's buffers do not reach the key
    query[1].running_mean.fill_(100.0)
    np.testing.assert_array_equal(key[1].running_mean.numpy(), np.array([0.25, -3.0], dtype=np.float32))


def test_momentum_update_keeps_key_frozen():
    """The EMA step does not switch gradients on for the key network nor build a graph."""
    key, query = _pair()
    momentum_update(key, query, 0.5)
    assert all(not p.requires_grad for p in key.parameters())
    assert all(p.grad_fn is None for p in key.parameters())
    assert all(p.requires_grad for p in query.parameters())


def test_make_key_network_is_frozen_deep_copy():
    """Same values, different storage, no gradients; changing the query later leaves the key alone."""
    _, query = _pair()
    key = make_key_network(query)
    assert key is not query
    for (name_k, pk), (name_q, pq) in zip(key.named_parameters(), query.named_parameters()):
        assert name_k == name_q
        assert pk is not pq and pk.data_ptr() != pq.data_ptr()
        torch.testing.assert_close(pk, pq.detach(), rtol=0, atol=0)
        assert not pk.requires_grad
    assert all(p.requires_grad for p in query.parameters())  # the query stays trainable
    torch.testing.assert_close(key[1].running_mean, query[1].running_mean, rtol=0, atol=0)
    with torch.no_grad():
        query[0].weight.add_(10.0)
        query[1].running_var.mul_(3.0)
    np.testing.assert_array_equal(key[0].weight.numpy(), QUERY_W.astype(np.float32))
    np.testing.assert_array_equal(key[1].running_var.numpy(), np.array([2.0, 0.5], dtype=np.float32))


def test_make_key_network_backward_through_query_only():
    """A loss on both networks' outputs gives gradients to the query's parameters only."""
    _, query = _pair()
    key = make_key_network(query)
    query.eval()
    key.eval()
    x = torch.tensor([[1.0, -1.0, 0.5]])
    (query(x).sum() + key(x).sum()).backward()
    assert all(p.grad is None for p in key.parameters())
    assert query[0].weight.grad is not None and float(query[0].weight.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- queue
def _batch(start, n, key_dim=3, label_dim=2):
    """Rows whose values encode their global index: key row r = [r, r+0.1, r+0.2], label row = [-r, 10r]."""
    r = torch.arange(start, start + n, dtype=torch.float32).unsqueeze(1)
    return r + torch.tensor([0.0, 0.1, 0.2])[:key_dim], torch.cat([-r, 10 * r], 1)[:, :label_dim]


def _expected(indices):
    r = np.asarray(indices, dtype=np.float32)[:, None]
    return r + np.array([0.0, 0.1, 0.2], dtype=np.float32), np.concatenate([-r, 10 * r], 1)


def _check(queue, indices):
    keys, labels = queue.contents()
    exp_keys, exp_labels = _expected(indices)
    np.testing.assert_allclose(keys.numpy(), exp_keys.reshape(-1, 3), rtol=0, atol=1e-6)
    np.testing.assert_allclose(labels.numpy(), exp_labels.reshape(-1, 2), rtol=0, atol=1e-6)
    assert len(queue) == len(indices)


def test_key_queue_fifo_oldest_first():
    """Capacity 5, batches of 2, 2, 3: contents are the last 5 keys/labels, oldest first."""
    queue = KeyQueue(5, key_dim=3, label_dim=2)
    _check(queue, [])
    queue.enqueue(*_batch(0, 2))
    _check(queue, [0, 1])
    queue.enqueue(*_batch(2, 2))
    _check(queue, [0, 1, 2, 3])
    queue.enqueue(*_batch(4, 3))
    _check(queue, [2, 3, 4, 5, 6])
    queue.enqueue(*_batch(7, 2))
    _check(queue, [4, 5, 6, 7, 8])
    queue.enqueue(*_batch(9, 5))  # exactly the capacity
    _check(queue, [9, 10, 11, 12, 13])


def test_key_queue_batch_larger_than_capacity_keeps_last_rows():
    """A batch of 8 into a queue of 5 keeps its last 5 rows, in order (empty and partially full queue)."""
    queue = KeyQueue(5, 3, 2)
    queue.enqueue(*_batch(0, 8))
    _check(queue, [3, 4, 5, 6, 7])
    queue = KeyQueue(5, 3, 2)
    queue.enqueue(*_batch(0, 3))
    queue.enqueue(*_batch(3, 8))
    _check(queue, [6, 7, 8, 9, 10])
    queue.enqueue(*_batch(11, 1))
    _check(queue, [7, 8, 9, 10, 11])


def test_key_queue_size_zero_stays_empty():
    """size=0 disables the queue: enqueue is a no-op, contents are (0, D) and (0, L) tensors."""
    queue = KeyQueue(0, 3, 2)
    queue.enqueue(*_batch(0, 4))
    keys, labels = queue.contents()
    assert len(queue) == 0
    assert tuple(keys.shape) == (0, 3) and tuple(labels.shape) == (0, 2)


def test_key_queue_stores_detached_float32_copies():
    """Enqueued keys are detached and converted; later in-place changes of the source do not leak in."""
    queue = KeyQueue(4, 3, 2)
    keys, labels = _batch(0, 2)
    keys = keys.double().requires_grad_(True)
    queue.enqueue(keys * 1.0, labels)
    stored, _ = queue.contents()
    assert stored.dtype == torch.float32 and not stored.requires_grad
    labels.fill_(99.0)
    _check(queue, [0, 1])
