"""The methods of the few-shot protocol, each behind ``fit(texts, y)`` and ``predict(texts)``.

Classification (Ekman groups): the frozen encoder + LogisticRegression (SetFit's head, without SetFit's
contrastive step), SetFit, and CARLClassifier. Regression (valence, arousal): the frozen encoder + RidgeCV,
plain fine-tuning, SetFit's contrastive body trained on valence–arousal bins + RidgeCV, and CARLRegressor.
Every method starts from the same MiniLM body; the CARL estimators run with their defaults (``random_state``
and the study's ``params`` aside).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeCV

from benchmarks.affect.baselines import FrozenEncoder, PlainFineTuning
from benchmarks.affect.evaluate import RIDGE_ALPHAS
from benchmarks.affect.methods import Budget
from skcarl import CARLClassifier, CARLRegressor
from skcarl.backbone import DEFAULT_BACKBONE, resolve_backbone

# SetFit's documented defaults (TrainingArguments()) except the number of sentence pairs: the default
# "oversampling" draws every negative pair, 10,752 steps of 16 pairs at 64 rows x 7 classes (hours on 2 CPU
# cores). num_iterations=5 (5 positive and 5 negative pairs per text) is the setting of the SetFit
# run; it draws fewer pairs than the default at every size of the protocol, so SetFit's fit time here is
# shorter than a user of its defaults would see.
SETFIT_NUM_ITERATIONS = 5
# the VA grid SetFit's contrastive body learns on for regression: each dimension cut at its training tertiles
VA_BINS_PER_DIMENSION = 3

_CARL_DEFAULTS = CARLClassifier().get_params()


class FrozenHead:
    """The pretrained MiniLM body, mean pooled and normalised, with a scikit-learn head on top."""

    def __init__(self, task: str, draw: int, params: dict):
        self.task = task
        self.encoder = FrozenEncoder(Budget(max_length=_CARL_DEFAULTS["max_length"]), task, draw)
        self.head = LogisticRegression(max_iter=1000) if task == "ekman" else RidgeCV(alphas=RIDGE_ALPHAS)

    def fit(self, texts, y):
        self.encoder.fit(None)
        self.head.fit(self.encoder.transform(texts), y)
        return self

    def predict(self, texts):
        return self.head.predict(self.encoder.transform(texts))


class SetFit:
    """SetFit 1.x: contrastive fine-tuning of the body on sentence pairs, then a LogisticRegression head.

    For regression (``task="va"``) the body is trained on the valence–arousal grid of
    ``VA_BINS_PER_DIMENSION``² bins (SetFit has no regression head) and RidgeCV reads its embeddings.
    """

    def __init__(self, task: str, draw: int, params: dict):
        self.task, self.draw = task, draw
        self.num_iterations = params.get("num_iterations", SETFIT_NUM_ITERATIONS)

    def fit(self, texts, y):
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        labels = y if self.task == "ekman" else va_bins(y)
        self.model = SetFitModel.from_pretrained(resolve_backbone(DEFAULT_BACKBONE)[0])
        # no checkpoints: SetFit would write the body and its optimiser state (180 MB) to ./checkpoints
        args = TrainingArguments(num_iterations=self.num_iterations, seed=self.draw, report_to="none",
                                 show_progress_bar=False, save_strategy="no", output_dir=tempfile.mkdtemp())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Trainer(model=self.model, args=args,
                    train_dataset=Dataset.from_dict({"text": list(texts), "label": list(labels)})).train()
        if self.task == "va":
            self.ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(self._embed(texts), y)
        return self

    def _embed(self, texts):
        return self.model.model_body.encode(list(texts), batch_size=64, normalize_embeddings=True)

    def predict(self, texts):
        if self.task == "va":
            return self.ridge.predict(self._embed(texts))
        return np.asarray(self.model.predict(list(texts)))


def va_bins(y: np.ndarray) -> list[int]:
    """Each (V, A) row's cell of the grid cut at the training tertiles of each dimension."""
    quantiles = np.linspace(0, 1, VA_BINS_PER_DIMENSION + 1)[1:-1]
    cells = [np.digitize(y[:, j], np.quantile(y[:, j], quantiles)) for j in range(y.shape[1])]
    return (cells[0] * VA_BINS_PER_DIMENSION + cells[1]).tolist()


class Plain:
    """Plain fine-tuning (benchmarks.affect's baseline): a linear MSE / cross-entropy head on the pooled vector,
    CARL's optimiser, schedule, learning rates (``"auto"`` resolved from its own steps) and batch size, for as
    many epochs as CARL's default runs on the same number of texts."""

    def __init__(self, task: str, draw: int, params: dict):
        self.task, self.draw = task, draw

    def fit(self, texts, y):
        from skcarl.training import resolve_max_epochs

        epochs = resolve_max_epochs(_CARL_DEFAULTS["max_epochs"], len(texts), _CARL_DEFAULTS["batch_size"])
        budget = Budget(epochs=epochs, max_length=_CARL_DEFAULTS["max_length"])
        self.model = PlainFineTuning(budget, self.task, self.draw)
        frame = pd.DataFrame({"text": list(texts)})
        if self.task == "va":
            frame["V"], frame["A"] = y[:, 0], y[:, 1]
        else:
            frame["ekman"] = y
        self.model.fit(frame)
        return self

    def predict(self, texts):
        return self.model.predict(list(texts))

    def params(self) -> dict:
        # what the budget is read from: CARL's defaults of the epochs, the batch, the text length and the rate
        return {k: _CARL_DEFAULTS[k] for k in ("max_epochs", "batch_size", "max_length", "learning_rate")}


class CARL:
    """CARLClassifier (Ekman groups) or CARLRegressor (valence, arousal) with their defaults."""

    def __init__(self, task: str, draw: int, params: dict):
        kind = CARLClassifier if task == "ekman" else CARLRegressor
        self.estimator = kind(random_state=draw, **params)

    def fit(self, texts, y):
        self.estimator.fit(list(texts), y)
        return self

    def predict(self, texts):
        return self.estimator.predict(list(texts))

    def params(self) -> dict:
        return {k: v for k, v in self.estimator.get_params().items() if k not in ("verbose", "callbacks")}

    def record(self) -> dict:
        est = self.estimator
        return {"epochs": est.n_iter_, "queue_size": est.queue_size_}


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    build: type
    tasks: tuple


METHODS = {m.name: m for m in (
    Method("frozen", "frozen MiniLM + LogisticRegression / RidgeCV", FrozenHead, ("ekman", "va")),
    Method("plain", "plain fine-tuning (MSE head)", Plain, ("va",)),
    Method("setfit", f"SetFit (num_iterations={SETFIT_NUM_ITERATIONS}); regression: its body on VA bins + "
                     "RidgeCV", SetFit, ("ekman", "va")),
    Method("carl", "CARLClassifier / CARLRegressor (defaults)", CARL, ("ekman", "va")),
)}
