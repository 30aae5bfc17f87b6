"""The few-shot draws: training rows sampled per draw, evaluation rows fixed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.affect.tasks import emobank_corpus, goemotions_corpus

# training rows per class (GoEmotions, Ekman groups) and training texts (EmoBank)
EKMAN_SHOTS = (8, 16, 64)
EMOBANK_SIZES = (64, 256, 1024)
# the rows of dev kept by --n-eval are drawn with this seed, the same for every draw and method
EVAL_SAMPLE_SEED = 12345


@dataclass
class Task:
    """One task of the protocol: the pool of training rows and the evaluation rows of one split."""

    name: str  # "ekman" (classification) or "va" (regression)
    pool: pd.DataFrame
    evaluation: pd.DataFrame

    @property
    def sizes(self):
        return EKMAN_SHOTS if self.name == "ekman" else EMOBANK_SIZES

    def draw(self, size: int, draw: int) -> pd.DataFrame:
        """The training rows of one draw: ``size`` per class (ekman) or ``size`` texts (va), seed ``draw``."""
        if self.name == "ekman":
            rows = self.pool.groupby("ekman").sample(n=size, random_state=draw)
        else:
            rows = self.pool.sample(n=size, random_state=draw)
        return rows.sort_index().reset_index(drop=True)

    def n_train(self, size: int) -> int:
        return size * self.pool["ekman"].nunique() if self.name == "ekman" else size

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["ekman"].to_numpy(object) if self.name == "ekman" else frame[["V", "A"]].to_numpy(float)


def load_task(name: str, split: str, data_dir=None, n_eval: int | None = None) -> Task:
    """The training pool and the ``split`` rows of ``name`` ("ekman" or "va"), ``n_eval`` of them if given."""
    if name == "ekman":
        corpus = goemotions_corpus(data_dir)
        evaluation = corpus.frames[split]
        evaluation = evaluation[evaluation["ekman"].notna()]
    elif name == "va":
        corpus = emobank_corpus(data_dir)
        evaluation = corpus.frames[split]
    else:
        raise ValueError(f"task={name!r}; use 'ekman' or 'va'.")
    if n_eval is not None and n_eval < len(evaluation):
        evaluation = evaluation.sample(n=n_eval, random_state=EVAL_SAMPLE_SEED).sort_index()
    return Task(name, corpus.frames["train"], evaluation.reset_index(drop=True))
