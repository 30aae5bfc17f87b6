"""Where the benchmark datasets live, and reading them with a clear error when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class DataNotFoundError(FileNotFoundError):
    pass


def data_dir(path=None) -> Path:
    """``path``, else ``$SKCARL_DATA_DIR``, else ``../shared/data`` beside the repository."""
    return Path(path or os.environ.get("SKCARL_DATA_DIR") or DEFAULT_DATA_DIR)


def load_emobank(path=None, split=None) -> pd.DataFrame:
    """EmoBank (Buechel & Hahn 2017): ``text``, ``V``, ``A``, ``D`` on 1-5 and the official ``split``."""
    file = data_dir(path) / "emobank" / "emobank.csv"
    if not file.is_file():
        raise DataNotFoundError(
            f"EmoBank not found at {file}. Pass --data-dir pointing to a folder with emobank/emobank.csv "
            "(see ../shared/data/emobank/SOURCE.md for where it comes from), or set SKCARL_DATA_DIR.")
    frame = pd.read_csv(file, index_col=0, keep_default_na=False)
    return frame if split is None else frame[frame["split"] == split]


def emobank_texts(n: int, path=None, seed: int = 0) -> list[str]:
    """``n`` EmoBank sentences (repeated when ``n`` exceeds the corpus), shuffled with ``seed``."""
    texts = load_emobank(path)["text"].tolist()
    order = np.random.default_rng(seed).permutation(len(texts))
    reps = -(-n // len(texts))
    return [texts[i] for i in np.tile(order, reps)[:n]]
