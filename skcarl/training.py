"""CARL's training step and loop: device, mixed precision, schedule, early stopping and progress.

The step follows the method section of the paper:

1. encode the batch with the query encoder, keeping the input token embeddings' gradient;
2. encode it again with the momentum key encoder (own dropout, no gradient);
3. L_cont over the batch keys and the queue; its backward gives both the parameter gradients and the
   token saliency ∂L_cont/∂E;
4. perturb the most salient tokens and train the token head to find them (L_det);
5. one AdamW step on L_cont + λ·L_det, an EMA step of the key encoder, and the keys enter the queue.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import TokenDetectionLoss, make_contrastive_loss
from .momentum import KeyQueue, make_key_network, momentum_update
from .perturbation import TokenPerturber, select_tokens, token_saliency
from .tokens import TokenizedTexts, pad_batch


def resolve_device(device) -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available on this machine "
                         "(CPU-only torch build or no GPU). Use device='auto' or device='cpu'.")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} was requested but Apple MPS is not available; use device='auto'.")
    return resolved


class MixedPrecision:
    """autocast + (for float16 only) a gradient scaler; a no-op off CUDA or when disabled."""

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = bool(enabled) and device.type == "cuda"
        self.dtype = None
        self.scaler = None
        if self.enabled:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.dtype == torch.float16:
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


@dataclass
class TrainingConfig:
    """The estimator's training parameters, validated, as the trainer reads them."""

    contrastive_loss: str = "soft_infonce"
    temperature: float = 0.05
    label_temperature: float = 0.02
    momentum: float = 0.995
    queue_size: int = 1024
    saliency: str = "grad_norm"
    token_selection: str = "saliency"
    perturb_ratio: float = 0.15
    detection_weight: float = 0.1
    learning_rate: float = 2e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    batch_size: int = 32
    max_epochs: int = 3
    n_iter_no_change: int = 2
    use_amp: bool = True
    verbose: int = 0


def _linear_warmup_decay(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def _parameter_groups(network, config: TrainingConfig):
    """Encoder at ``learning_rate``, the freshly initialised heads at ``head_learning_rate``;
    no weight decay on biases and normalisation weights."""
    groups = []
    for part, lr in ((network.encoder, config.learning_rate),
                     (torch.nn.ModuleList([network.projection, network.token_head]), config.head_learning_rate)):
        params = [p for p in part.parameters() if p.requires_grad]
        groups.append({"params": [p for p in params if p.ndim >= 2], "lr": lr, "weight_decay": config.weight_decay})
        groups.append({"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


class CARLTrainer:
    """Owns everything that exists only while training: key encoder, queue, optimizer, schedule."""

    def __init__(self, network, config: TrainingConfig, device: torch.device, perturber: TokenPerturber | None,
                 label_dim: int, steps_per_epoch: int, pad_id: int):
        self.pad_id = pad_id
        self.network = network.to(device)
        self.config = config
        self.device = device
        self.perturber = perturber.to(device) if perturber is not None else None
        self.detection_on = perturber is not None and config.detection_weight > 0
        self.key_network = make_key_network(self.network)
        projection_dim = self.network.projection[-1].out_features
        self.queue = KeyQueue(config.queue_size, projection_dim, label_dim, device)
        self.contrastive_loss = make_contrastive_loss(config.contrastive_loss, config.temperature,
                                                      config.label_temperature)
        self.detection_loss = TokenDetectionLoss()
        self.optimizer = torch.optim.AdamW(_parameter_groups(self.network, config))
        total = max(1, steps_per_epoch * config.max_epochs)
        warmup = max(1, math.ceil(config.warmup_ratio * total)) if config.warmup_ratio > 0 else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _linear_warmup_decay(warmup, total))
        self.precision = MixedPrecision(device, config.use_amp)
        self.global_step = 0

    # ------------------------------------------------------------------ the step
    def training_step(self, batch: dict, labels: torch.Tensor) -> dict:
        net, cfg = self.network, self.config
        ids, mask, real = batch["input_ids"], batch["attention_mask"], batch["real_tokens"]
        net.train()
        self.key_network.train()

        # 1-2. Queries from the query encoder, keys from the momentum encoder on the same sentences.
        with self.precision.autocast():
            embeds = net.embed(ids)
            if self.detection_on:
                embeds.retain_grad()
            queries = net.project(net.sentence(net.encode(embeds, mask), mask))
            with torch.no_grad():
                keys = self.key_network.query(ids, mask)

            # 3. L_cont over the candidates C = batch keys ∪ queue.
            queue_keys, queue_labels = self.queue.contents()
            l_cont = self.contrastive_loss(queries, torch.cat([keys, queue_keys]),
                                           labels, torch.cat([labels, queue_labels]))
        self._check_finite(l_cont, "contrastive loss L_cont")
        self.precision.backward(l_cont)

        # 4. Perturbed token detection on the most salient tokens, saliency from the backward above.
        l_det = None
        if self.detection_on:
            l_det = self._detection_loss(ids, mask, real, embeds)
            self._check_finite(l_det, "detection loss L_det")
            self.precision.backward(cfg.detection_weight * l_det)

        # 5. θ ← AdamW(θ), ξ ← m·ξ + (1−m)·θ, enqueue the keys with their labels.
        self.precision.step(self.optimizer, net.parameters(), cfg.max_grad_norm)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        momentum_update(self.key_network, net, cfg.momentum)
        self.queue.enqueue(keys, labels)
        self.global_step += 1

        l_cont_value = float(l_cont.detach())
        l_det_value = float(l_det.detach()) if l_det is not None else 0.0
        return {"loss": l_cont_value + cfg.detection_weight * l_det_value,
                "contrastive_loss": l_cont_value, "detection_loss": l_det_value}

    def _detection_loss(self, ids, mask, real, embeds):
        net, cfg = self.network, self.config
        grad = embeds.grad
        if cfg.token_selection == "saliency":
            scores = token_saliency(grad, embeds.detach(), cfg.saliency)
        else:  # the random-selection ablation
            scores = torch.rand(ids.shape, device=ids.device)
        chosen = select_tokens(scores, real, cfg.perturb_ratio)
        with self.precision.autocast():
            if self.perturber.kind == "adversarial":
                perturbed_embeds = self.perturber.shift_embeddings(net.embed(ids), grad, chosen, real)
                was_perturbed = chosen
            else:
                perturbed_ids = self.perturber.replace_ids(ids, chosen)
                perturbed_embeds = net.embed(perturbed_ids)
                was_perturbed = perturbed_ids != ids
            logits = net.detect(net.encode(perturbed_embeds, mask))
            return self.detection_loss(logits, was_perturbed, real)

    def _check_finite(self, loss: torch.Tensor, name: str) -> None:
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"The {name} became {float(loss.detach())} at training step {self.global_step + 1}; the weights "
                "were not updated by this step. Lower learning_rate, raise temperature, or set use_amp=False."
            )

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validation_loss(self, tokens: TokenizedTexts, labels: torch.Tensor) -> float:
        """The contrastive loss of the held-out texts against each other, without dropout.

        Queries and keys both come from the query encoder in eval mode, so the figure measures the
        embedding itself, not the lagging key encoder or the queue.
        """
        self.network.eval()
        bs = self.config.batch_size
        queries = torch.cat([
            self.network.query(**_ids_and_mask(pad_batch(tokens, range(i, min(i + bs, len(tokens))),
                                                         self.pad_id, self.device)))
            for i in range(0, len(tokens), bs)
        ])
        total = 0.0
        for i in range(0, len(queries), bs):
            chunk = slice(i, i + bs)
            total += float(self.contrastive_loss(queries[chunk], queries, labels[chunk], labels)) * len(queries[chunk])
        return total / len(queries)

    # ------------------------------------------------------------------ the loop
    def fit(self, tokens: TokenizedTexts, labels: np.ndarray, rng: np.random.Generator,
            validation: tuple[TokenizedTexts, np.ndarray] | None = None) -> list[dict]:
        cfg = self.config
        labels_t = torch.as_tensor(labels, dtype=torch.float32, device=self.device)
        val_labels_t = None
        if validation is not None:
            val_labels_t = torch.as_tensor(validation[1], dtype=torch.float32, device=self.device)
        history, best_loss, best_state, epochs_without_gain = [], math.inf, None, 0
        self.best_epoch = None
        for epoch in range(1, cfg.max_epochs + 1):
            started = time.perf_counter()
            order = rng.permutation(len(tokens))
            batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            sums = {"loss": 0.0, "contrastive_loss": 0.0, "detection_loss": 0.0}
            bar = tqdm(batches, desc=f"CARL epoch {epoch}/{cfg.max_epochs}", unit="batch",
                       disable=cfg.verbose < 1, leave=cfg.verbose >= 2)
            for index in bar:
                step = self.training_step(pad_batch(tokens, index, self.pad_id, self.device), labels_t[index])
                for key in sums:
                    sums[key] += step[key] * len(index)
                bar.set_postfix(L_cont=f"{step['contrastive_loss']:.4f}", L_det=f"{step['detection_loss']:.4f}")
            record = {"epoch": epoch, **{k: v / len(tokens) for k, v in sums.items()}}
            if validation is not None:
                record["validation_loss"] = self.validation_loss(validation[0], val_labels_t)
            record["duration"] = time.perf_counter() - started
            history.append(record)
            if cfg.verbose >= 1:
                tqdm.write("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if validation is None:
                self.best_epoch = epoch  # without a validation split the last epoch is kept
                continue
            if record["validation_loss"] < best_loss - 1e-4:
                best_loss, epochs_without_gain = record["validation_loss"], 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}
                self.best_epoch = epoch
            else:
                epochs_without_gain += 1
                if epochs_without_gain >= cfg.n_iter_no_change:
                    break
        if best_state is not None:
            self.network.load_state_dict(best_state)
        self.network.eval()
        return history


def _ids_and_mask(batch: dict) -> dict:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

