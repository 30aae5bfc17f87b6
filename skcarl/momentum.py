"""The momentum (EMA) key encoder and the FIFO queue of past keys with their labels (MoCo, He et al. 2020)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_key_network(query_network: nn.Module) -> nn.Module:
    """A frozen copy of the query network: the key encoder ξ, which only ever moves by EMA.

    Examples
    --------
    >>> from torch import nn
    >>> from skcarl.momentum import make_key_network
    >>> query = nn.Linear(3, 2)
    >>> key = make_key_network(query)
    >>> any(p.requires_grad for p in key.parameters()), key.weight is query.weight
    (False, False)
    """
    key_network = copy.deepcopy(query_network)
    key_network.requires_grad_(False)
    return key_network


@torch.no_grad()
def momentum_update(key_network: nn.Module, query_network: nn.Module, momentum: float) -> None:
    """ξ ← m·ξ + (1 − m)·θ for every parameter; buffers are copied from the query network.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skcarl.momentum import make_key_network, momentum_update
    >>> query = nn.Linear(1, 1, bias=False)
    >>> _ = query.weight.data.fill_(1.0)
    >>> key = make_key_network(query)
    >>> _ = query.weight.data.fill_(3.0)
    >>> momentum_update(key, query, momentum=0.9)
    >>> round(key.weight.item(), 4)                                  # 0.9 * 1 + 0.1 * 3
    1.2
    """
    key_params = list(key_network.parameters())
    query_params = [p.detach() for p in query_network.parameters()]
    torch._foreach_lerp_(key_params, query_params, 1.0 - momentum)
    for key_buffer, query_buffer in zip(key_network.buffers(), query_network.buffers()):
        key_buffer.copy_(query_buffer)


class KeyQueue:
    """A first-in first-out ring of the last ``size`` keys and the labels they were computed for.

    Parameters
    ----------
    size : int
        Capacity K. ``0`` disables the queue (the candidates are then the batch keys alone).
    key_dim, label_dim : int
        Width of a key and of a label vector.
    device : torch.device or str

    Examples
    --------
    >>> import torch
    >>> from skcarl.momentum import KeyQueue
    >>> queue = KeyQueue(size=3, key_dim=2, label_dim=1)
    >>> for step in range(4):
    ...     queue.enqueue(torch.full((1, 2), float(step)), torch.tensor([[step / 10]]))
    >>> keys, labels = queue.contents()                             # the oldest key (step 0) is gone
    >>> keys[:, 0].tolist(), len(queue)
    ([1.0, 2.0, 3.0], 3)
    """

    def __init__(self, size: int, key_dim: int, label_dim: int, device="cpu"):
        self.size = int(size)
        self.keys = torch.zeros(self.size, key_dim, device=device)
        self.labels = torch.zeros(self.size, label_dim, device=device)
        self._next = 0  # slot the next key is written to
        self.n_filled = 0

    def __len__(self) -> int:
        return self.n_filled

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch; once full, each new key overwrites the oldest one."""
        if self.size == 0:
            return
        keys, labels = keys[-self.size:], labels[-self.size:]
        slots = (self._next + torch.arange(len(keys), device=self.keys.device)) % self.size
        self.keys[slots] = keys.detach().to(self.keys.dtype)
        self.labels[slots] = labels.detach().to(self.labels.dtype)
        self._next = (self._next + len(keys)) % self.size
        self.n_filled = min(self.size, self.n_filled + len(keys))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored ``(keys, labels)``, oldest first."""
        if self.n_filled < self.size:
            return self.keys[: self.n_filled], self.labels[: self.n_filled]
        order = (self._next + torch.arange(self.size, device=self.keys.device)) % self.size
        return self.keys[order], self.labels[order]
