"""The evaluation data: EmoBank and GoEmotions on their official splits, grouped as the suite needs them.

EmoBank (Buechel & Hahn 2017) gives valence and arousal on 1–5. Its polarity task splits valence at the scale
midpoint 3: V > 3 positive, V < 3 negative; the texts rated exactly 3 (about a quarter) are left out of it,
because a midpoint split has no side for them.

GoEmotions (Demszky et al. 2020) gives 27 emotions + neutral per Reddit comment. The Ekman task keeps the rows
whose labels all fall in one Ekman group (anger, disgust, fear, joy, sadness, surprise) or are ``neutral``
alone — 91% of the rows; a row labelled joy + love is joy, a row labelled joy + anger is dropped. The polarity
task keeps the rows whose labels are all positive or all negative in the dataset's ``sentiment_dict.json``
(ambiguous and neutral rows are dropped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks.data import DataNotFoundError, data_dir, load_emobank

EMOBANK_MIDPOINT = 3.0


@dataclass
class Corpus:
    """One training corpus with its splits: ``frames[split]`` has a ``text`` column and the label columns."""

    name: str
    frames: dict = field(default_factory=dict)

    def texts(self, split):
        return self.frames[split]["text"].tolist()


def emobank_corpus(path=None, n_train=None, n_eval=None, seed=0) -> Corpus:
    """EmoBank train (``n_train`` rows sampled with ``seed``, all when None), dev and test.

    Columns: ``text``, ``V``, ``A`` (1–5) and ``polarity`` (1 positive, 0 negative, -1 at the midpoint).
    """
    frame = load_emobank(path)
    frames = {}
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        part = frame[frame["split"] == split].reset_index(drop=True)
        part = _sample(part, n, seed)
        polarity = np.where(part["V"] > EMOBANK_MIDPOINT, 1, np.where(part["V"] < EMOBANK_MIDPOINT, 0, -1))
        frames[split] = part.assign(polarity=polarity)[["text", "V", "A", "polarity"]]
    return Corpus("emobank", frames)


def goemotions_corpus(path=None, n_train=None, n_eval=None, seed=0) -> Corpus:
    """GoEmotions train (``n_train`` Ekman rows sampled with ``seed``), dev and test.

    Columns: ``text``, ``ekman`` (a group name, or None where the row's labels span several groups) and
    ``polarity`` ("positive", "negative", or None). Train keeps only Ekman rows; dev and test keep all rows
    (each task selects its own), subsampled to ``n_eval`` Ekman rows when given.
    """
    folder = data_dir(path) / "goemotions"
    needed = [folder / f for f in ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt", "ekman_mapping.json",
                                   "sentiment_dict.json")]
    missing = [str(f) for f in needed if not f.is_file()]
    if missing:
        raise DataNotFoundError(
            f"GoEmotions not found: missing {', '.join(missing)}. Pass --data-dir pointing to a folder with "
            "goemotions/ (see ../shared/data/goemotions/SOURCE.md), or set SKCARL_DATA_DIR.")
    emotions = (folder / "emotions.txt").read_text().split()
    group_of = {e: g for g, members in json.loads((folder / "ekman_mapping.json").read_text()).items()
                for e in members}
    group_of["neutral"] = "neutral"
    sentiment_of = {e: s for s, members in json.loads((folder / "sentiment_dict.json").read_text()).items()
                    for e in members}
    frames = {}
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        raw = pd.read_csv(folder / f"{split}.tsv", sep="\t", header=None, names=["text", "labels", "id"],
                          quoting=3, keep_default_na=False, dtype=str)
        names = [[emotions[int(i)] for i in labels.split(",")] for labels in raw["labels"]]
        part = pd.DataFrame({"text": raw["text"],
                             "ekman": [_only({group_of[e] for e in row}) for row in names],
                             "polarity": [_only({sentiment_of.get(e, "other") for e in row}) for row in names]})
        part.loc[~part["polarity"].isin(["positive", "negative"]), "polarity"] = None
        if split == "train":
            part = part[part["ekman"].notna()]
        if n is not None and split != "train":
            ekman = part[part["ekman"].notna()]
            part = ekman.sample(min(n, len(ekman)), random_state=seed).sort_index()
        else:
            part = _sample(part, n, seed)
        frames[split] = part.reset_index(drop=True)
    return Corpus("goemotions", frames)


def _only(values: set):
    return next(iter(values)) if len(values) == 1 else None


def _sample(frame: pd.DataFrame, n, seed) -> pd.DataFrame:
    if n is None or n >= len(frame):
        return frame
    return frame.sample(n, random_state=seed).sort_index()


PAIR_COLUMNS = ["pair_id", "kind", "operator", "original", "edited", "dv", "da"]


def load_pairs() -> pd.DataFrame | None:
    """The minimal pairs shipped with skcarl (``skcarl.datasets.load_minimal_pairs``), or None where this
    version of skcarl has none. Columns: ``pair_id``, ``kind`` ("affect" or "control"), ``operator``,
    ``original``, ``edited``, ``dv``, ``da`` (expected sign of the edit's change of valence and arousal)."""
    try:
        from skcarl.datasets import load_minimal_pairs
    except ImportError:
        return None
    pairs = load_minimal_pairs()
    missing = sorted(set(PAIR_COLUMNS) - set(pairs.columns))
    if missing:
        raise ValueError(f"The minimal pairs lack the columns {missing}.")
    return pairs[PAIR_COLUMNS].reset_index(drop=True)
