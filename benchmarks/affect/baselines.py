"""The baselines CARL is measured against, each behind the interface the suite scores.

A model has ``fit(frame)`` (the training rows of its corpus), ``transform(texts)`` (features for the linear
probes), ``dense`` (whether its features are sentence embeddings, for the geometry metrics) and, where it
has a head of its own, ``predicts`` and ``predict(texts)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import LabelEncoder
from torch.nn import functional as F

from skcarl.backbone import load_backbone
from skcarl.inference import embed_texts, map_texts
from skcarl.network import CARLNetwork
from skcarl.tokens import pad_batch, tokenize
from skcarl.training import MixedPrecision, _linear_warmup_decay, resolve_device, resolve_learning_rate


class TfidfModel:
    """Word uni- and bigram TF-IDF (sublinear tf, terms in at least 2 training texts): the lexical baseline."""

    dense = False
    predicts = False

    def __init__(self, budget, task, seed):
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)

    def fit(self, frame):
        self.vectorizer.fit(frame["text"].tolist())
        return self

    def transform(self, texts):
        return self.vectorizer.transform(texts)


class FrozenEncoder:
    """The pretrained encoder as it is: mean pooling and L2 norm (the sentence-transformers embedding)."""

    dense = True
    predicts = False

    def __init__(self, budget, task, seed):
        self.budget = budget

    def fit(self, frame):
        self.tokenizer, encoder = load_backbone(self.budget.backbone)
        self.device = resolve_device(self.budget.device)
        self.network = CARLNetwork(encoder).to(self.device).eval()
        return self

    def transform(self, texts):
        with MixedPrecision(self.device, self.budget.use_amp, training=False).autocast():
            return embed_texts(self.network, self.tokenizer, texts, max_length=self.budget.max_length,
                               batch_size=self.budget.batch_size, device=self.device)[0]


class PlainFineTuning(FrozenEncoder):
    """Supervised fine-tuning of the encoder with a linear head on the pooled sentence vector.

    Valence and arousal: MSE on targets standardised per column; classes: cross-entropy. Same optimiser
    (AdamW, encoder at ``learning_rate``, head at ``head_learning_rate``), linear warm-up and decay, gradient
    clipping, batches, epochs and maximum length as CARL; no contrastive loss, no momentum encoder, no
    detection.
    """

    predicts = True

    def __init__(self, budget, task, seed):
        super().__init__(budget, task, seed)
        self.task = task
        self.seed = seed

    def fit(self, frame):
        budget = self.budget
        self.device = resolve_device(budget.device)
        with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            self.tokenizer, encoder = load_backbone(budget.backbone)
            targets, n_outputs, loss_fn = self._targets(frame)
            self.network = CARLNetwork(encoder, n_task_outputs=n_outputs).to(self.device)
            self._train(tokenize(self.tokenizer, frame["text"].tolist(), budget.max_length),
                        torch.as_tensor(targets, device=self.device), loss_fn)
        self.network.eval()
        return self

    def _targets(self, frame):
        if self.task == "va":
            y = frame[["V", "A"]].to_numpy(np.float64)
            self.mean_, self.scale_ = y.mean(0), y.std(0).clip(1e-12)
            return ((y - self.mean_) / self.scale_).astype(np.float32), 2, F.mse_loss
        self.classes_ = LabelEncoder().fit(frame["ekman"])
        return self.classes_.transform(frame["ekman"]), len(self.classes_.classes_), F.cross_entropy

    def _train(self, tokens, targets, loss_fn):
        budget, net = self.budget, self.network
        rng = np.random.default_rng(self.seed)
        steps = budget.epochs * math.ceil(len(tokens) / budget.batch_size)
        heads = list(net.task_head.parameters())
        rate = resolve_learning_rate(budget.learning_rate, steps)  # "auto" as CARL resolves it
        optimizer = torch.optim.AdamW([
            {"params": [p for p in net.encoder.parameters() if p.ndim >= 2], "lr": rate},
            {"params": [p for p in net.encoder.parameters() if p.ndim < 2], "lr": rate,
             "weight_decay": 0.0},
            {"params": heads, "lr": budget.head_learning_rate}], weight_decay=budget.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _linear_warmup_decay(max(1, int(budget.warmup_ratio * steps)), steps))
        precision = MixedPrecision(self.device, budget.use_amp)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        net.train()
        for _ in range(budget.epochs):
            order = rng.permutation(len(tokens))
            for start in range(0, len(order), budget.batch_size):
                index = order[start:start + budget.batch_size]
                batch = pad_batch(tokens, index, self.tokenizer.pad_token_id, self.device)
                with precision.autocast():
                    outputs = net.task_head(net.pooled(batch["input_ids"], batch["attention_mask"]))
                loss = loss_fn(outputs.float(), targets[index])
                precision.backward(loss)
                precision.step(optimizer, parameters, budget.max_grad_norm)
                optimizer.zero_grad(set_to_none=True)
                schedule.step()

    def predict(self, texts):
        with MixedPrecision(self.device, self.budget.use_amp, training=False).autocast():
            outputs, _ = map_texts(self.network.predict_outputs, self.network.task_head.out_features,
                                   self.tokenizer, texts, max_length=self.budget.max_length,
                                   batch_size=self.budget.batch_size, device=self.device, network=self.network)
        if self.task == "va":
            return outputs * self.scale_ + self.mean_
        return self.classes_.inverse_transform(outputs.argmax(1))
