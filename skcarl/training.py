"""CARL's training step (the epochs that run it: :mod:`skcarl.loop`; what happens around them: :mod:`skcarl.callbacks`).

The step follows the method section of the paper:

1. encode the batch with the query encoder, keeping the input token embeddings' gradient;
2. encode it again with the momentum key encoder (own dropout, no gradient);
3. L_cont over the batch keys and the queue; its backward gives both the parameter gradients and the
   token saliency ∂L_cont/∂E;
4. perturb the most salient tokens and encode the perturbed sentence once more: the token head learns to
   find them (L_det), and its query can serve the adversarial terms — a second view in L_cont with the
   same label (L_view), and the consistency of its candidate distribution with the clean one's (L_adv);
5. one AdamW step on L_cont + λ·L_det + μ_view·L_view + μ_adv·L_adv, an EMA step of the key encoder, and the
   keys enter the queue.

With ``saliency_refresh="cached"`` steps 3 and 4 share one pass: the tokens are chosen by the saliency each
text had at its previous visit, and the query encoder runs once, on the perturbed sentence, to serve both
losses (see :meth:`CARLTrainer.training_step`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.profiler import record_function

from ._devices import resolve_device  # noqa: F401  (re-exported: the one device check, see _devices.py)
from .loop import run_epochs
from .losses import SimilarityConsistencyLoss, TokenDetectionLoss, make_contrastive_loss
from .momentum import KeyQueue, make_key_network, momentum_update
from .perturbation import TokenPerturber, select_tokens, token_saliency
from .query_model import QueryModel
from .tokens import TokenizedTexts, pad_batch
from .va_labels import ContinuousLabels

SALIENCY_REFRESHES = ("step", "cached")

# max_epochs="auto": as many epochs as give AUTO_MIN_STEPS optimiser steps, within AUTO_EPOCH_RANGE. From about
# 2,700 texts up (84 steps an epoch at batch 32) that is the lower bound, the fixed default it replaced, so
# full-data budgets are unchanged; a few hundred texts take more passes, where 3 epochs gave a few dozen steps.
# The upper bound is the dev choice among 3, 10 and 20 passes at 8 GoEmotions rows per class and 64 EmoBank
# texts (docs/study_log.md); AUTO_MIN_STEPS is one epoch of 8,000 texts, not a studied value.
AUTO_MIN_STEPS = 250
AUTO_EPOCH_RANGE = (3, 10)


def resolve_max_epochs(max_epochs, n_texts: int, batch_size: int) -> int:
    """The number of epochs ``max_epochs`` means for ``n_texts`` training texts in batches of ``batch_size``.

    An int is kept; ``"auto"`` takes enough epochs for ``AUTO_MIN_STEPS`` optimiser steps, clipped to
    ``AUTO_EPOCH_RANGE``.

    Examples
    --------
    >>> from skcarl.training import resolve_max_epochs
    >>> resolve_max_epochs("auto", 8000, 32), resolve_max_epochs("auto", 1024, 32), resolve_max_epochs("auto", 56, 32)
    (3, 8, 10)
    >>> resolve_max_epochs(2, 56, 32)
    2
    """
    if not (isinstance(max_epochs, str) and max_epochs == "auto"):
        return int(max_epochs)
    steps_per_epoch = math.ceil(n_texts / batch_size)
    low, high = AUTO_EPOCH_RANGE
    return min(high, max(low, math.ceil(AUTO_MIN_STEPS / steps_per_epoch)))


# learning_rate="auto": AUTO_LEARNING_RATE for a budget of AUTO_MIN_STEPS optimiser steps or more; a shorter budget
# keeps the product of rate and steps, up to AUTO_MAX_LEARNING_RATE. The full-data rate is the dev choice after one
# epoch of all 8,062 EmoBank texts (252 steps); the cap is the dev-best rate of the shortest budgets studied (1,500
# texts for one epoch, 8 GoEmotions rows per class, 64 EmoBank texts: 20 to 47 steps). docs/study_log.md.
AUTO_LEARNING_RATE = 5e-5
AUTO_MAX_LEARNING_RATE = 2e-4


def resolve_learning_rate(learning_rate, total_steps: int) -> float:
    """The encoder's learning rate that ``learning_rate`` means for a budget of ``total_steps`` optimiser steps.

    A number is kept; ``"auto"`` is ``AUTO_LEARNING_RATE × AUTO_MIN_STEPS / total_steps``, within
    ``[AUTO_LEARNING_RATE, AUTO_MAX_LEARNING_RATE]``: a run too short to move the encoder far at the full-data
    rate takes larger steps.

    Examples
    --------
    >>> from skcarl.training import resolve_learning_rate
    >>> resolve_learning_rate("auto", 750), resolve_learning_rate("auto", 125), resolve_learning_rate("auto", 20)
    (5e-05, 0.0001, 0.0002)
    >>> resolve_learning_rate(3e-5, 20)
    3e-05
    """
    if not (isinstance(learning_rate, str) and learning_rate == "auto"):
        return float(learning_rate)
    scaled = AUTO_LEARNING_RATE * AUTO_MIN_STEPS / max(total_steps, 1)
    return min(AUTO_MAX_LEARNING_RATE, max(AUTO_LEARNING_RATE, scaled))


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class MixedPrecision:
    """autocast + (for float16 only) a gradient scaler; a no-op off CUDA or when disabled.

    ``use_amp``: ``False``; ``True`` (bfloat16 where the GPU supports it, else float16); or the name of
    the dtype, ``"bfloat16"`` or ``"float16"``. ``training=False`` (inference) makes no gradient scaler.

    Examples
    --------
    >>> import torch
    >>> from skcarl.training import MixedPrecision
    >>> MixedPrecision(torch.device("cpu"), use_amp=True).enabled     # mixed precision is for CUDA only
    False
    """

    def __init__(self, device: torch.device, use_amp, training: bool = True):
        device = torch.device(device)
        self.enabled = use_amp is not False and device.type == "cuda"
        self.dtype = None
        self.scaler = None
        if self.enabled:
            if use_amp is True:
                self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                self.dtype = AMP_DTYPES[use_amp]
            if self.dtype == torch.float16 and training:  # inference has no gradients to scale
                self.scaler = torch.amp.GradScaler("cuda")

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer, parameters, max_grad_norm: float | None) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()


# parameters whose "auto" an estimator resolves in fit, from the data
_RESOLVED_AT_FIT = ("label_temperature", "ranking_weight", "max_epochs", "learning_rate")


@dataclass
class TrainingConfig:
    """The estimator's training parameters, resolved, as the trainer reads them.

    It has no defaults of its own: the estimators' ``__init__`` is the one home of every default, and
    :meth:`from_params` builds a config from an estimator's parameters, with the values that "auto"
    settings resolve to at ``fit`` time.

    Examples
    --------
    >>> from skcarl import CARLEmbedder
    >>> from skcarl.training import TrainingConfig
    >>> config = TrainingConfig.from_params(CARLEmbedder(max_epochs=1).get_params(), label_temperature=0.02,
    ...                                     ranking_weight=0.0, learning_rate=5e-5)
    >>> config.max_epochs, config.queue_size
    (1, 4096)
    """

    contrastive_loss: str
    temperature: float
    label_temperature: float
    ranking_weight: float
    ranking_temperature: float
    momentum: float
    queue_size: int
    saliency: str
    token_selection: str
    saliency_refresh: str
    perturb_ratio: float
    detection_weight: float
    perturbed_view_weight: float
    consistency_weight: float
    learning_rate: float
    head_learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float | None
    batch_size: int
    max_epochs: int
    n_iter_no_change: int
    use_amp: bool | str
    verbose: int
    callbacks: list | None

    @classmethod
    def from_params(cls, params: Mapping, **resolved) -> TrainingConfig:
        """The config of an estimator's ``params`` (``get_params()``), ``resolved`` taking the place of
        raw values ("auto" label temperature, ranking weight, epochs and learning rate; the clipped queue size)."""
        values = {**params, **resolved}
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            raise TypeError(f"TrainingConfig.from_params needs values for {missing}.")
        unresolved = [name for name in _RESOLVED_AT_FIT if isinstance(values[name], str)]
        if unresolved:
            raise ValueError(f"TrainingConfig.from_params needs the numbers that {unresolved} resolve to at fit "
                             "time; pass them as keyword arguments.")
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def _linear_warmup_decay(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


@dataclass
class SupervisedTask:
    """A prediction head trained jointly with CARL: L = L_cont + λ·L_det + ``weight``·``loss``(head(s), targets).

    ``targets`` holds one row per training text (indexed like the texts); the head reads the pooled sentence
    vector s, the representation ``transform`` returns before normalisation.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> from skcarl.training import SupervisedTask
    >>> task = SupervisedTask(mse_loss, targets=torch.zeros(4, 2), weight=0.5)
    >>> float(task.loss(torch.ones(4, 2), task.targets[:4]))
    1.0
    """

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    targets: torch.Tensor
    weight: float = 1.0
    validation_targets: torch.Tensor | None = None


def _parameter_groups(network, label_points, config: TrainingConfig):
    """Encoder at ``learning_rate``; the freshly initialised heads (and learnable VA anchors) at
    ``head_learning_rate``; no weight decay on biases, normalisation weights and anchors."""
    heads = [network.projection, network.token_head, label_points]
    if network.task_head is not None:
        heads.append(network.task_head)
    groups = []
    for part, lr in ((network.encoder, config.learning_rate),
                     (torch.nn.ModuleList(heads), config.head_learning_rate)):
        params = [p for p in part.parameters() if p.requires_grad]
        decayed = [p for p in params if p.ndim >= 2 and not getattr(p, "no_weight_decay", False)]
        groups.append({"params": decayed, "lr": lr, "weight_decay": config.weight_decay})
        groups.append({"params": [p for p in params if all(p is not d for d in decayed)], "lr": lr,
                       "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


class CARLTrainer:
    """Owns everything that exists only while training: key encoder, queue, optimizer, schedule; and the step.

    :meth:`training_step` is one optimisation step; :meth:`fit` runs it over epochs (:mod:`skcarl.loop`),
    with the callbacks of :mod:`skcarl.callbacks` around the epochs. A callback reads the trainer and may set
    ``stop_training``; :class:`~skcarl.callbacks.BestWeights` sets ``best_epoch``.

    Parameters
    ----------
    network : CARLNetwork
    config : TrainingConfig
    device : torch.device
    perturber : TokenPerturber or None
        None switches the detection objective off.
    label_dim : int
        Width of a label row.
    steps_per_epoch : int
    pad_id : int
    task : SupervisedTask or None
        A prediction head trained jointly (regressor, classifier).
    label_points : nn.Module or None
        Maps a text's label row (what the queue stores) to its point in the [0, 1] label space that L_cont
        compares: the identity for continuous labels (the default), the VA anchors of its classes for class
        labels.
    parallel : skcarl._ddp.DataParallel or None
        The process group of a data-parallel fit; None for one process. The query side then runs inside
        DistributedDataParallel, and each step gathers every rank's keys and label rows (MoCo).

    Examples
    --------
    One training step on a two-sentence batch with a tiny random encoder:

    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> encoder = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                                intermediate_size=16))
    >>> from skcarl.network import CARLNetwork
    >>> from skcarl.perturbation import TokenPerturber
    >>> from skcarl import CARLEmbedder
    >>> from skcarl.training import CARLTrainer, TrainingConfig
    >>> config = TrainingConfig.from_params(CARLEmbedder(queue_size=4, batch_size=2, detection_weight=0.1).get_params(),
    ...                                     label_temperature=0.02, ranking_weight=0.0, max_epochs=3,
    ...                                     learning_rate=5e-5)
    >>> _ = torch.manual_seed(0)
    >>> trainer = CARLTrainer(CARLNetwork(encoder, projection_dim=4), config,
    ...                       torch.device("cpu"), TokenPerturber("random", 30, [0, 1, 2, 3]),
    ...                       label_dim=2, steps_per_epoch=1, pad_id=0)
    >>> batch = {"input_ids": torch.tensor([[2, 7, 8, 3], [2, 9, 3, 0]]),
    ...          "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]).bool(),
    ...          "real_tokens": torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]]).bool()}
    >>> losses = trainer.training_step(batch, torch.tensor([[0.9, 0.8], [0.1, 0.2]]))
    >>> sorted(losses), len(trainer.queue)
    (['contrastive_loss', 'detection_loss', 'loss'], 2)
    """

    def __init__(self, network, config: TrainingConfig, device: torch.device, perturber: TokenPerturber | None,
                 label_dim: int, steps_per_epoch: int, pad_id: int, task: SupervisedTask | None = None,
                 label_points: torch.nn.Module | None = None, parallel=None):
        self.pad_id = pad_id
        self.network = network.to(device)
        self.label_points = (label_points if label_points is not None else ContinuousLabels()).to(device)
        self.task = task
        self.config = config
        self.device = device
        self.perturber = perturber.to(device) if perturber is not None else None
        self.detection_on = perturber is not None and config.detection_weight > 0
        # the adversarial terms that read the perturbed sentence's query (L_view, L_adv)
        self.adversarial_on = perturber is not None and (config.perturbed_view_weight > 0
                                                         or config.consistency_weight > 0)
        self.perturbed_pass = self.detection_on or self.adversarial_on
        self.parallel = parallel
        self._pending_checks = []  # losses whose finiteness the ranks decide together (data-parallel only)
        self.model = QueryModel(self.network, self.label_points)
        if parallel is not None:
            # wrapping broadcasts rank 0's weights, so the key encoder copied next starts equal on all ranks
            self.model = parallel.wrap(self.model)
        self.key_network = make_key_network(self.network)
        if self.network.is_compiled:
            self.key_network.compile_encoder()
        self.queue = KeyQueue(config.queue_size, self.network.key_dim, label_dim, device)
        self.contrastive_loss = make_contrastive_loss(config.contrastive_loss, config.temperature,
                                                      config.label_temperature, config.ranking_weight,
                                                      config.ranking_temperature)
        self.detection_loss = TokenDetectionLoss()
        self.consistency_loss = SimilarityConsistencyLoss(config.temperature)
        self.optimizer = torch.optim.AdamW(_parameter_groups(self.network, self.label_points, config))
        total = max(1, steps_per_epoch * config.max_epochs)
        warmup = max(1, math.ceil(config.warmup_ratio * total)) if config.warmup_ratio > 0 else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _linear_warmup_decay(warmup, total))
        self.precision = MixedPrecision(device, config.use_amp)
        self.global_step = 0
        self.best_epoch = None  # the epoch whose weights fit kept (set by skcarl.callbacks.BestWeights)
        self.stop_training = False  # set by a callback to end fit after the current epoch
        self.saliency_cache = None  # made by fit when saliency_refresh="cached"

    # ------------------------------------------------------------------ the step
    def training_step(self, batch: dict, label_rows: torch.Tensor, task_targets: torch.Tensor | None = None,
                      example_index=None, share=None) -> dict:
        """One optimisation step; ``example_index`` (the texts' training indices) keys the saliency cache.

        In a data-parallel fit ``batch`` is this rank's part of a global batch, described by ``share`` (a
        :class:`skcarl._ddp.BatchShare`); the returned losses are this rank's means.
        """
        if self.saliency_cache is not None:
            return self._one_pass_step(batch, label_rows, task_targets, example_index, share)
        cfg = self.config
        ids, mask, real = self._begin_step(batch)
        batch_rows, candidate_rows, queue_keys = self._candidates(label_rows, share)

        # With two passes the gradients are exchanged once, after the second backward (they add up locally).
        with self._local_gradients(self.perturbed_pass):
            # 1-2. Queries from the query encoder, keys from the momentum encoder on the same sentences.
            with self.precision.autocast():
                with record_function("carl/query_forward"):
                    embeds, sentence, queries, task_outputs, points = self.model(
                        "contrastive", ids, mask, candidate_rows, self.perturbed_pass, self.task is not None)
                keys = self._keys(ids, mask)

                # 3. L_cont over the candidates C = batch keys ∪ queue, compared at their VA points.
                l_cont, l_task, batch_keys = self._sentence_losses(queries, keys, queue_keys, points,
                                                                   task_outputs, task_targets, share)
            with record_function("carl/backward_contrastive"):
                self.precision.backward(self._scaled(self._weighted(l_cont, l_task), share))

        # 4. The most salient tokens perturbed (saliency from the backward above), the perturbed sentence encoded.
        l_det = l_view = l_adv = None
        if self.perturbed_pass:
            embeds = embeds.tensor
            grad = embeds.grad
            perturbed_ids, shift, was_perturbed = self._perturb(
                ids, real, lambda: token_saliency(grad, embeds.detach(), cfg.saliency), grad)
            with self.precision.autocast(), record_function("carl/detection_forward"):
                if not self.adversarial_on:
                    logits = self.model("detection", perturbed_ids, mask, shift)
                else:
                    logits, perturbed_queries = self.model("perturbed", perturbed_ids, mask, shift)
                    l_view, l_adv = self._adversarial_losses(queries, perturbed_queries, batch_keys, queue_keys,
                                                             points, share)
                # L_det: which tokens were perturbed?
                l_det = self.detection_loss(logits, was_perturbed, real) if self.detection_on else None
            with record_function("carl/backward_detection"):
                self.precision.backward(self._perturbed_objective(l_det, l_view, l_adv, share))

        # 5. θ ← AdamW(θ), ξ ← m·ξ + (1−m)·θ, enqueue the keys with their label rows.
        self._update(batch_keys, batch_rows)
        return self._loss_values(l_cont, l_det, l_task, l_view, l_adv)

    def _one_pass_step(self, batch, label_rows, task_targets, example_index, share=None) -> dict:
        """The step with ``saliency_refresh="cached"``: one pass of the query encoder serves both losses.

        1. choose each text's tokens by the saliency it had at its previous visit (at random on its first
           visit) and perturb them;
        2. keys from the momentum encoder on the clean sentences;
        3. one forward of the query encoder on the perturbed sentences: the pooled vector is the query of
           L_cont (the perturbation doubles as an augmentation of the query view, the key view stays clean),
           the token states give the logits of L_det;
        4. one backward of L_cont + λ·L_det; the gradient it leaves at the input embeddings is stored as each
           text's saliency for its next visit;
        5. as in the per-step mode.

        The stored saliency is that of the whole loss at the perturbed sentence, not of L_cont alone at the
        clean one: separating the two would cost the extra backward this mode exists to save.
        """
        cfg = self.config
        ids, mask, real = self._begin_step(batch)
        batch_rows, candidate_rows, queue_keys = self._candidates(label_rows, share)

        # 1. Tokens chosen by last visit's saliency.
        perturbed_ids, _, was_perturbed = self._perturb(
            ids, real, lambda: self.saliency_cache.lookup(example_index, ids.shape[1]))

        with self.precision.autocast():
            # 2. Keys from the clean sentences.
            keys = self._keys(ids, mask)
            # 3. One query pass over the perturbed sentences.
            with record_function("carl/query_forward"):
                embeds, logits, sentence, queries, task_outputs, points = self.model(
                    "one_pass", perturbed_ids, mask, candidate_rows, self.task is not None)
                l_det = self.detection_loss(logits, was_perturbed, real)
            l_cont, l_task, batch_keys = self._sentence_losses(queries, keys, queue_keys, points, task_outputs,
                                                               task_targets, share)
        self._check_finite(l_det, "detection loss L_det")

        # 4. One backward; its input gradient is the saliency of the next visit.
        with record_function("carl/backward"):
            self.precision.backward(self._scaled(self._weighted(l_cont, l_task), share)
                                    + self._scaled(cfg.detection_weight * l_det, share, per_token=True))
        with record_function("carl/select_and_perturb"):
            embeds = embeds.tensor
            saliency = token_saliency(embeds.grad, embeds.detach(), cfg.saliency)
            if share is None:
                self.saliency_cache.store(example_index, saliency)
            else:  # every rank keeps the whole global batch's saliency: a text's next visit may be elsewhere
                width = self.saliency_cache.scores.shape[1]
                saliency = torch.nn.functional.pad(saliency, (0, width - saliency.shape[1]))
                self.saliency_cache.store(share.index, self.parallel.gather_rows(saliency, share.sizes))

        # 5. θ ← AdamW(θ), ξ ← m·ξ + (1−m)·θ, enqueue the keys with their label rows.
        self._update(batch_keys, batch_rows)
        return self._loss_values(l_cont, l_det, l_task)

    # ------------------------------------------------------------------ parts of the step
    def _adversarial_losses(self, queries, perturbed_queries, batch_keys, queue_keys, points, share):
        """L_view: the perturbed query in L_cont with its sentence's label; L_adv: the KL from the clean query's
        candidate distribution to the perturbed one's. None where the weight is 0."""
        cfg = self.config
        candidates = torch.cat([batch_keys, queue_keys])
        offset = 0 if share is None else share.offset
        l_view = l_adv = None
        if cfg.perturbed_view_weight > 0:
            l_view = self.contrastive_loss(perturbed_queries, candidates, points[offset: offset + len(queries)],
                                           points)
            self._check_finite(l_view, "perturbed-view loss L_view")
        if cfg.consistency_weight > 0:
            l_adv = self.consistency_loss(queries, perturbed_queries, candidates)
            self._check_finite(l_adv, "consistency loss L_adv")
        return l_view, l_adv

    def _perturbed_objective(self, l_det, l_view, l_adv, share):
        """λ·L_det + μ_view·L_view + μ_adv·L_adv, each rank's part weighted by its share of the global batch."""
        cfg = self.config
        total = 0.0
        if l_det is not None:
            self._check_finite(l_det, "detection loss L_det")
            total = total + self._scaled(cfg.detection_weight * l_det, share, per_token=True)
        if l_view is not None:
            total = total + self._scaled(cfg.perturbed_view_weight * l_view, share)
        if l_adv is not None:
            total = total + self._scaled(cfg.consistency_weight * l_adv, share)
        return total

    def _keys(self, ids, mask) -> torch.Tensor:
        with torch.no_grad(), record_function("carl/key_forward"):
            return self.key_network.query(ids, mask)

    def _candidates(self, label_rows, share):
        """The label rows of the (global) batch; those followed by the queue's (the candidates' rows); the
        queue's keys."""
        queue_keys, queue_rows = self.queue.contents()
        if share is not None:
            label_rows = self.parallel.gather_rows(label_rows, share.sizes)
        return label_rows, torch.cat([label_rows, queue_rows]), queue_keys

    def _sentence_losses(self, queries, keys, queue_keys, points, task_outputs, task_targets, share):
        """L_cont over the candidates C = batch keys ∪ queue, the supervised head's loss (or None), and the
        batch keys (every rank's, in a data-parallel fit: MoCo's shuffle-free gather)."""
        with record_function("carl/losses"):
            offset = 0
            if share is not None:
                keys, offset = self.parallel.gather_rows(keys, share.sizes), share.offset
            candidates = torch.cat([keys, queue_keys])
            l_cont = self.contrastive_loss(queries, candidates, points[offset: offset + len(queries)], points)
            l_task = None
            if task_outputs is not None:  # the supervised head shares this forward and backward
                l_task = self.task.loss(task_outputs, task_targets)
        self._check_finite(l_cont, "contrastive loss L_cont")
        if l_task is not None:
            self._check_finite(l_task, "supervised loss of the prediction head")
        return l_cont, l_task, keys

    def _local_gradients(self, accumulate: bool):
        """Keep this pass's gradients on this rank (``no_sync``); a later pass exchanges the sum."""
        if self.parallel is None or not accumulate:
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _scaled(self, loss, share, per_token: bool = False):
        """A rank's mean loss weighted by its share of the global batch (texts, or real tokens for L_det).

        DistributedDataParallel averages the ranks' gradients; with this weight the average is the gradient
        of the global batch's mean loss, also when the parts differ in size.
        """
        if share is None:
            return loss
        fraction = share.token_fraction if per_token else share.text_fraction
        return loss * (self.parallel.world_size * fraction)

    def _weighted(self, l_cont, l_task):
        return l_cont if l_task is None else l_cont + self.task.weight * l_task

    def _begin_step(self, batch: dict):
        """Both encoders in training mode (dropout on); the batch's token ids, attention mask and real tokens."""
        self.network.train()
        self.key_network.train()
        return batch["input_ids"], batch["attention_mask"], batch["real_tokens"]

    def _perturb(self, ids, real, saliency: Callable[[], torch.Tensor], grad=None):
        """Choose the top-ρ real tokens by ``saliency()`` (at random in the random-selection ablation, which
        never computes it) and perturb them.

        Returns the ids to embed, the shift of their embeddings (adversarial only: it reads this step's
        gradient ``grad``) and which tokens now differ from the clean sentence.
        """
        cfg = self.config
        with record_function("carl/select_and_perturb"):
            if cfg.token_selection == "saliency":
                scores = saliency()
            else:
                scores = torch.rand(ids.shape, device=ids.device)
            chosen = select_tokens(scores, real, cfg.perturb_ratio)
            if self.perturber.kind == "adversarial":
                shift = functools.partial(self.perturber.shift_embeddings, grad=grad, chosen=chosen, real=real)
                return ids, shift, chosen
            perturbed_ids = self.perturber.replace_ids(ids, chosen)
            return perturbed_ids, None, perturbed_ids != ids

    def _update(self, keys, label_rows) -> None:
        if self.parallel is not None:
            self._agree_finite()
        with record_function("carl/optimizer"):
            self.precision.step(self.optimizer, self._trained_parameters(), self.config.max_grad_norm)
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.label_points.constrain()
        with record_function("carl/momentum_update"):
            momentum_update(self.key_network, self.network, self.config.momentum)
            self.queue.enqueue(keys, label_rows)
        self.global_step += 1

    def _loss_values(self, l_cont, l_det, l_task, l_view=None, l_adv=None) -> dict:
        cfg = self.config
        values = {"contrastive_loss": float(l_cont.detach()),
                  "detection_loss": float(l_det.detach()) if l_det is not None else 0.0}
        values["loss"] = values["contrastive_loss"] + cfg.detection_weight * values["detection_loss"]
        for name, loss, weight in (("view_loss", l_view, cfg.perturbed_view_weight),
                                   ("consistency_loss", l_adv, cfg.consistency_weight)):
            if loss is not None:
                values[name] = float(loss.detach())
                values["loss"] += weight * values[name]
        if l_task is not None:
            values["task_loss"] = float(l_task.detach())
            values["loss"] += self.task.weight * values["task_loss"]
        return values

    def _trained_parameters(self):
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _check_finite(self, loss: torch.Tensor, name: str) -> None:
        if self.parallel is not None:
            # a rank that raised alone would leave the others waiting in the next collective
            self._pending_checks.append((loss.detach(), name))
            return
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(self._non_finite_message(f"The {name} became {float(loss.detach())}"))

    def _agree_finite(self) -> None:
        """Raise on every rank, before the optimizer step, when a loss was not finite on any rank."""
        checks, self._pending_checks = self._pending_checks, []
        bad = [f"The {name} became {float(loss)}" for loss, name in checks if not torch.isfinite(loss)]
        if not self.parallel.all_finite(not bad):
            raise FloatingPointError(self._non_finite_message(bad[0] if bad else "A loss became non-finite on "
                                                              "another rank"))

    def _non_finite_message(self, what: str) -> str:
        return (f"{what} at training step {self.global_step + 1}; the weights were not updated by this step. "
                f"Lower learning_rate (this fit's: {self.config.learning_rate:g}), raise temperature, or set "
                "use_amp=False.")

    @property
    def is_main(self) -> bool:
        """Whether this process shows progress (the only one in a single-process fit, rank 0 otherwise)."""
        return self.parallel is None or self.parallel.is_main

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validation_loss(self, tokens: TokenizedTexts, label_rows: torch.Tensor) -> float:
        """The loss of the held-out texts, without dropout.

        With a prediction head, its supervised loss (what the user's predictions are judged by). Without,
        the contrastive loss of the held-out texts against each other: queries and keys both come from the
        query encoder in eval mode, so the figure measures the embedding itself, not the lagging key
        encoder or the queue.
        """
        self.network.eval()
        bs = self.config.batch_size
        sentences = []
        for start in range(0, len(tokens), bs):
            batch = pad_batch(tokens, range(start, min(start + bs, len(tokens))), self.pad_id, self.device)
            hidden = self.network.encode(self.network.embed_tokens(batch["input_ids"]), batch["attention_mask"])
            sentences.append(self.network.sentence(hidden, batch["attention_mask"]))
        sentences = torch.cat(sentences)
        if self.task is not None:
            return float(self.task.loss(self.network.task_head(sentences), self.task.validation_targets))
        queries = self.network.project(sentences)
        points = self.label_points(label_rows)
        total = 0.0
        for start in range(0, len(queries), bs):
            chunk = slice(start, start + bs)
            total += float(self.contrastive_loss(queries[chunk], queries, points[chunk], points)) * len(queries[chunk])
        return total / len(queries)

    # ------------------------------------------------------------------ training
    def fit(self, tokens: TokenizedTexts, label_rows: np.ndarray, rng: np.random.Generator,
            validation: tuple[TokenizedTexts, np.ndarray] | None = None) -> list[dict]:
        """Train on ``tokens`` for up to ``config.max_epochs`` epochs; the epochs' records (``history_``).

        The epochs are :func:`skcarl.loop.run_epochs`; ``validation`` (held-out texts and their label rows)
        adds the validation loss, early stopping and the best epoch's weights. The network is left in eval mode.
        """
        if self.config.saliency_refresh == "cached" and self.detection_on:
            self.saliency_cache = SaliencyCache(len(tokens), int(tokens.lengths.max()), self.device)
        history = run_epochs(self, tokens, label_rows, rng, validation)
        self.network.eval()
        return history


class SaliencyCache:
    """Each training text's token saliency at its last visit, for ``saliency_refresh="cached"``.

    Rows are scaled to a maximum of 1 and kept in float16: only the order within a text is ever used.
    A text not visited yet gets random scores, so its first visit perturbs random tokens.

    Examples
    --------
    >>> import torch
    >>> from skcarl.training import SaliencyCache
    >>> cache = SaliencyCache(n_texts=3, max_tokens=4, device="cpu")
    >>> cache.store([2], torch.tensor([[0.0, 2.0, 4.0]]))
    >>> cache.lookup([2], width=3)
    tensor([[0.0000, 0.5000, 1.0000]])
    """

    def __init__(self, n_texts: int, max_tokens: int, device):
        self.scores = torch.full((n_texts, max_tokens), math.nan, dtype=torch.float16, device=device)

    def lookup(self, index, width: int) -> torch.Tensor:
        index = torch.as_tensor(index, device=self.scores.device)
        scores = self.scores[index, :width].float()
        unseen = scores[:, 0].isnan()
        if unseen.any():
            scores[unseen] = torch.rand(int(unseen.sum()), width, device=scores.device)
        return scores

    @torch.no_grad()
    def store(self, index, scores: torch.Tensor) -> None:
        index = torch.as_tensor(index, device=self.scores.device)
        scores = scores.float()
        top = scores.amax(dim=1, keepdim=True)
        scaled = torch.where(top > 0, scores / top, torch.zeros_like(scores))
        self.scores[index, : scores.shape[1]] = torch.nan_to_num(scaled, nan=0.0).to(self.scores.dtype)

