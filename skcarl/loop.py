"""The training loop: epochs of shuffled batches, one step of a :class:`~skcarl.training.CARLTrainer` each, and
the callbacks (:mod:`skcarl.callbacks`) called at its events.

In a data-parallel fit every rank draws the same permutation of the training texts (one seed), and each global
batch of ``batch_size`` × world size texts is cut into one part per rank (:meth:`skcarl._ddp.DataParallel.share`);
an epoch's record holds the global batch's mean losses, the same on every rank.
"""

from __future__ import annotations

import numpy as np
import torch

from .callbacks import default_callbacks
from .tokens import TokenizedTexts, pad_batch


def run_epochs(trainer, tokens: TokenizedTexts, label_rows: np.ndarray, rng: np.random.Generator,
               validation: tuple[TokenizedTexts, np.ndarray] | None = None) -> list[dict]:
    """Train ``trainer`` for up to ``config.max_epochs`` epochs; the epochs' records.

    The loop runs the epochs and steps only. Around them it calls the built-in callbacks of
    :func:`~skcarl.callbacks.default_callbacks` (with ``validation``, the held-out texts and their label
    rows: validation loss, early stopping, the best epoch's weights), then ``config.callbacks``. A callback
    ends training after the current epoch by setting ``trainer.stop_training``.

    Parameters
    ----------
    trainer : skcarl.training.CARLTrainer
    tokens : skcarl.tokens.TokenizedTexts
        The training texts.
    label_rows : ndarray of shape (n_texts, label_dim)
    rng : numpy.random.Generator
        Draws each epoch's permutation.
    validation : tuple of (TokenizedTexts, ndarray) or None, default=None

    Returns
    -------
    list of dict
        One record per epoch run: ``epoch``, the mean losses, and what the callbacks added.
    """
    cfg, device = trainer.config, trainer.device
    rows = torch.as_tensor(label_rows, dtype=torch.float32, device=device)
    if validation is not None:
        validation = (validation[0], torch.as_tensor(validation[1], dtype=torch.float32, device=device))
    callbacks = default_callbacks(cfg, validation) + list(cfg.callbacks or ())
    real_counts = None  # real tokens per text: a rank's share of L_det is its share of the global batch's
    if trainer.parallel is not None:
        real_counts = np.array([len(s) - sum(s) for s in tokens.special_tokens_mask])
    history, trainer.stop_training = [], False
    _notify(callbacks, "on_train_begin", trainer)
    for epoch in range(1, cfg.max_epochs + 1):
        record = {"epoch": epoch, **_run_epoch(trainer, tokens, rows, rng, real_counts, epoch, callbacks)}
        _notify(callbacks, "on_epoch_end", trainer, record)
        history.append(record)
        if trainer.stop_training:
            break
    _notify(callbacks, "on_train_end", trainer, history)
    return history


def _run_epoch(trainer, tokens, rows, rng, real_counts, epoch: int, callbacks) -> dict:
    """One pass over the training texts in shuffled batches: the epoch's mean losses over all texts."""
    cfg, parallel, task = trainer.config, trainer.parallel, trainer.task
    order = rng.permutation(len(tokens))
    global_batch = cfg.batch_size * (1 if parallel is None else parallel.world_size)
    batches = [order[i:i + global_batch] for i in range(0, len(order), global_batch)]
    _notify(callbacks, "on_epoch_begin", trainer, epoch, len(batches))
    sums: dict[str, float] = {}
    n_seen = 0
    for index in batches:
        share = None if parallel is None else parallel.share(index, order, real_counts)
        local = index if share is None else share.local_index
        targets = task.targets[local] if task is not None else None
        losses = trainer.training_step(pad_batch(tokens, local, trainer.pad_id, trainer.device), rows[local],
                                       targets, example_index=local, share=share)
        counted, n_batch = losses, len(index)
        if share is not None:  # this rank's part of the global batch's means
            counted = share.contributions(losses, cfg.detection_weight, None if task is None else task.weight,
                                          {"view_loss": cfg.perturbed_view_weight,
                                           "consistency_loss": cfg.consistency_weight})
            n_batch = len(share.index)
        for key, value in counted.items():
            sums[key] = sums.get(key, 0.0) + value * n_batch
        n_seen += n_batch
        _notify(callbacks, "on_batch_end", trainer, losses)
    if parallel is not None:
        sums = parallel.sum_floats(sums)
    return {k: v / n_seen for k, v in sums.items()}


def _notify(callbacks, event: str, trainer, *args) -> None:
    for callback in callbacks:
        getattr(callback, event)(trainer, *args)
