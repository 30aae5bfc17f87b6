"""Data-parallel training over ``torch.distributed``: which processes take part, and what they exchange.

A fit runs data-parallel when ``distributed`` allows it and the process is one of several ranks: a default
process group is initialised already, or the variables that ``torchrun`` sets are present (the group is then
initialised here, NCCL for CUDA devices, Gloo otherwise). Every rank holds all the training texts and draws
the same permutation of them each epoch; each global batch (``batch_size`` × world size texts) is cut into one
contiguous part per rank, in rank order. So the keys and label rows gathered from all ranks stand in the
order of the global batch, and N processes compute what one process with N times the batch would compute.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# How long a process that finds torchrun's variables waits for the other ranks to join the process group, in
# seconds, unless the environment variable below says otherwise. Short: variables inherited by a process that
# torchrun did not start (a notebook kernel, a CI runner) name ranks that never come, and fit must not hang.
RENDEZVOUS_TIMEOUT_S = 20.0
RENDEZVOUS_TIMEOUT_VARIABLE = "SKCARL_RENDEZVOUS_TIMEOUT"


class RendezvousError(TimeoutError, RuntimeError):
    """The other ranks named by torchrun's variables did not join in time (a ``TimeoutError``, and a
    ``RuntimeError`` as torch's own rendezvous errors are)."""


def rendezvous_timeout() -> float:
    """Seconds to wait for the other ranks: ``SKCARL_RENDEZVOUS_TIMEOUT`` if set, else ``RENDEZVOUS_TIMEOUT_S``."""
    value = os.environ.get(RENDEZVOUS_TIMEOUT_VARIABLE)
    if value is None:
        return RENDEZVOUS_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{RENDEZVOUS_TIMEOUT_VARIABLE}={value!r} must be a number of seconds > 0.")
    return seconds


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else ""


def _join_group(backend: str) -> None:
    """Initialise the default process group from torchrun's variables, waiting at most
    :func:`rendezvous_timeout` seconds for the other ranks; the group's own collectives keep torch's timeout."""
    dist = _dist()
    seconds = rendezvous_timeout()
    try:
        store, rank, world_size = next(dist.rendezvous("env://", timeout=timedelta(seconds=seconds)))
    except (RuntimeError, ValueError, OSError) as exc:
        found = ", ".join(f"{name}={os.environ.get(name)!r}" for name in TORCHRUN_VARIABLES)
        raise RendezvousError(
            f"This fit found torchrun's variables in the environment ({found}), but the process group "
            f"could not be formed within {seconds:g} s: {type(exc).__name__}: {_first_line(exc)}. If torchrun "
            "did not start this process (the variables were inherited, e.g. by a notebook kernel or a CI job), "
            "pass distributed=False, or unset " + ", ".join(TORCHRUN_VARIABLES) + ". If it is a real distributed "
            f"run whose ranks start further apart, set {RENDEZVOUS_TIMEOUT_VARIABLE} to more seconds.") from exc
    store.set_timeout(dist.default_pg_timeout)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)


def _dist():
    import torch.distributed as dist

    return dist


def group_ready() -> bool:
    """Whether this process belongs to an initialised default process group of more than one rank."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or a launcher that sets the same variables) started this process as one of several."""
    if not all(os.environ.get(name) for name in TORCHRUN_VARIABLES):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def rank() -> int:
    """This process' rank in the default process group; 0 without one."""
    dist = _dist()
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@dataclass(frozen=True)
class BatchShare:
    """This rank's part of one global batch.

    ``sizes`` holds the number of texts of every rank's part, ``index`` the training indices of the whole
    global batch, ``token_fraction`` this part's share of the global batch's real tokens (L_det averages
    over tokens, the other losses over texts).

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl._ddp import BatchShare
    >>> share = BatchShare(rank=1, sizes=(3, 2), index=np.arange(5), token_fraction=0.25)
    >>> share.offset, share.text_fraction, share.local_index.tolist()
    (3, 0.4, [3, 4])
    """

    rank: int
    sizes: tuple
    index: np.ndarray
    token_fraction: float

    @property
    def offset(self) -> int:
        return int(sum(self.sizes[: self.rank]))

    @property
    def text_fraction(self) -> float:
        return self.sizes[self.rank] / sum(self.sizes)

    @property
    def local_index(self) -> np.ndarray:
        return self.index[self.offset: self.offset + self.sizes[self.rank]]

    def contributions(self, step: dict, detection_weight: float, task_weight: float | None,
                      adversarial_weights: dict | None = None) -> dict:
        """This rank's part of the global batch's mean losses; summed over ranks they give those means.
        ``adversarial_weights`` maps ``"view_loss"`` / ``"consistency_loss"`` to their weights."""
        out = {key: value * (self.token_fraction if key == "detection_loss" else self.text_fraction)
               for key, value in step.items() if key != "loss"}
        out["loss"] = out["contrastive_loss"] + detection_weight * out["detection_loss"]
        if "task_loss" in out:
            out["loss"] += task_weight * out["task_loss"]
        for key, weight in (adversarial_weights or {}).items():
            if key in out:
                out["loss"] += weight * out[key]
        return out


def split_global_batch(index: np.ndarray, world_size: int, order: np.ndarray) -> list[np.ndarray]:
    """Cut a global batch into ``world_size`` contiguous, nearly equal parts, in rank order.

    A last batch shorter than the world size is topped up from the start of the epoch's ``order`` (as
    :class:`torch.utils.data.DistributedSampler` pads), so that no rank steps on an empty batch.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl._ddp import split_global_batch
    >>> [p.tolist() for p in split_global_batch(np.array([4, 0, 3, 1, 2]), 2, order=np.arange(5))]
    [[4, 0, 3], [1, 2]]
    >>> [p.tolist() for p in split_global_batch(np.array([7]), 3, order=np.array([5, 6, 7]))]
    [[7], [5], [6]]
    """
    if len(index) < world_size:
        index = np.concatenate([index, np.resize(order, world_size - len(index))])
    return np.array_split(index, world_size)


class DataParallel:
    """The process group of a data-parallel fit, seen from one rank.

    Parameters
    ----------
    device : torch.device
        This rank's device; collectives run on it (NCCL needs CUDA tensors, Gloo takes CPU tensors).
    """

    def __init__(self, device: torch.device):
        dist = _dist()
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up
    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` inside DistributedDataParallel; its weights are broadcast from rank 0 here.

        ``find_unused_parameters``: each pass of a step uses only some of the modules (the L_cont pass
        not the token head, the L_det pass not the projection head, neither the encoder's pooler).
        """
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a seed drawn from fresh entropy must be shared)."""
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        _dist().broadcast(tensor, src=0)
        return int(tensor.item())

    def check_same(self, what: str, value: int) -> None:
        """Raise on every rank when the ranks disagree on ``value`` (each must be given the same data)."""
        values = self.gather_ints(value)
        if len(set(values)) > 1:
            raise ValueError(f"A distributed fit needs the same training data on every rank, but the {what} "
                             f"differ between ranks (checksums by rank: {values}). Load the whole data set on "
                             "every rank; skcarl gives each rank its own part of every batch.")

    def gather_ints(self, value: int) -> list[int]:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        _dist().all_gather(parts, tensor)
        return [int(p.item()) for p in parts]

    # ------------------------------------------------------------------ batches
    def share(self, index: np.ndarray, order: np.ndarray, real_counts: np.ndarray) -> BatchShare:
        """This rank's part of global batch ``index`` (``real_counts``: real tokens of every training text)."""
        parts = split_global_batch(index, self.world_size, order)
        mine = parts[self.rank]
        total = int(sum(real_counts[p].sum() for p in parts))
        return BatchShare(self.rank, tuple(len(p) for p in parts), np.concatenate(parts),
                          float(real_counts[mine].sum()) / max(total, 1))

    # ------------------------------------------------------------------ collectives of a step
    def gather_rows(self, tensor: torch.Tensor, sizes) -> torch.Tensor:
        """Every rank's rows of ``tensor`` (parts of ``sizes`` rows, padded for the exchange), in rank order."""
        tensor = tensor.detach()
        width = max(sizes)
        padded = tensor.new_zeros((width, *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        _dist().all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    def all_finite(self, local_ok: bool) -> bool:
        """Whether every rank's losses were finite (so that all ranks raise, or none)."""
        flag = torch.tensor([1.0 if local_ok else 0.0], device=self.device)
        _dist().all_reduce(flag, op=_dist().ReduceOp.MIN)
        return bool(flag.item() > 0)

    def sum_floats(self, values: dict) -> dict:
        keys = list(values)  # every rank inserted them in the same order
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        _dist().all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every rank: early stopping must decide the same everywhere."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        _dist().broadcast(tensor, src=0)
        return float(tensor.item())


def setup(distributed, device: torch.device) -> tuple[DataParallel | None, torch.device]:
    """The data-parallel context of a fit (None for a single process) and this rank's device.

    With ``device`` CUDA but no index, each rank takes GPU ``LOCAL_RANK`` (one GPU per process, as torchrun
    expects). The default process group is initialised from the torchrun variables when none exists.
    """
    if distributed is False or (not group_ready() and not launched_by_torchrun()):
        if distributed is True and not group_ready():
            raise ValueError("distributed=True, but this process is not part of a process group of several "
                             "ranks: launch the script with torchrun (e.g. torchrun --nproc_per_node=2 "
                             "train.py) or call torch.distributed.init_process_group first.")
        return None, device
    dist = _dist()
    if device.type == "cuda" and device.index is None:
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank() if dist.is_initialized() else 0))
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _join_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_backend() == "nccl" and device.type != "cuda":
        raise ValueError(f"The process group uses NCCL, which exchanges CUDA tensors only, but device={device}. "
                         "Train on the GPUs (device='auto' or 'cuda'), or initialise the group with "
                         "backend='gloo' for CPU training.")
    return DataParallel(device), device
