"""Tokenising once, and cutting the token lists into padded batches."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

# A fast tokenizer keeps its truncation setting in shared state, set before each call: two threads calling
# one tokenizer with different settings could each encode with the other's. Calls are serialised.
TOKENIZER_LOCK = threading.Lock()


@dataclass
class TokenizedTexts:
    """Token ids of every text, unpadded, with the positions of special tokens.

    Examples
    --------
    >>> from skcarl.tokens import TokenizedTexts
    >>> tokens = TokenizedTexts([[2, 7, 3], [2, 8, 9, 3]], [[1, 0, 1], [1, 0, 0, 1]], n_truncated=0)
    >>> tokens.lengths.tolist(), len(tokens.subset([1]))
    ([3, 4], 1)
    """

    input_ids: list
    special_tokens_mask: list
    n_truncated: int

    def __len__(self):
        return len(self.input_ids)

    def subset(self, indices) -> TokenizedTexts:
        return TokenizedTexts([self.input_ids[i] for i in indices],
                              [self.special_tokens_mask[i] for i in indices], 0)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def tokenize(tokenizer, texts, max_length: int) -> TokenizedTexts:
    """Tokenise ``texts`` with truncation at ``max_length``, counting the texts that were cut.

    One pass over all texts; only the texts found too long are tokenised again, with truncation.

    Examples
    --------
    >>> from transformers import BertTokenizer
    >>> from skcarl.tokens import tokenize
    >>> vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "i", "feel", "happy"])}
    >>> tokens = tokenize(BertTokenizer(vocab=vocab), ["i feel happy", "happy " * 9], max_length=6)
    >>> tokens.input_ids[0], tokens.input_ids[1], tokens.n_truncated
    ([2, 4, 5, 6, 3], [2, 6, 6, 6, 6, 3], 1)
    """
    texts = list(texts)
    with TOKENIZER_LOCK:
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False, return_special_tokens_mask=True,
                            verbose=False)
    ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
    too_long = [i for i, row in enumerate(ids) if len(row) > max_length]
    if too_long:
        with TOKENIZER_LOCK:
            cut = tokenizer([texts[i] for i in too_long], add_special_tokens=True, truncation=True,
                            max_length=max_length, return_special_tokens_mask=True)
        for j, i in enumerate(too_long):
            ids[i], special[i] = cut["input_ids"][j], cut["special_tokens_mask"][j]
    return TokenizedTexts(ids, special, len(too_long))


def pad_batch(tokens: TokenizedTexts, indices, pad_id: int, device) -> dict:
    """Right-pad the texts at ``indices`` to the longest of them; tensors on ``device``.

    Returns ``input_ids``, ``attention_mask`` and ``real_tokens`` (neither padding nor special).

    Examples
    --------
    >>> from skcarl.tokens import TokenizedTexts, pad_batch
    >>> tokens = TokenizedTexts([[2, 7, 3], [2, 8, 9, 3]], [[1, 0, 1], [1, 0, 0, 1]], n_truncated=0)
    >>> batch = pad_batch(tokens, [0, 1], pad_id=0, device="cpu")
    >>> batch["input_ids"].tolist(), batch["real_tokens"].sum().item()
    ([[2, 7, 3, 0], [2, 8, 9, 3]], 3)
    """
    rows = [tokens.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=bool)
    special = np.ones((len(rows), width), dtype=bool)
    for r, i in enumerate(indices):
        n = len(tokens.input_ids[i])
        ids[r, :n] = tokens.input_ids[i]
        attention[r, :n] = True
        special[r, :n] = np.asarray(tokens.special_tokens_mask[i], dtype=bool)
    return {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(attention).to(device),
        "real_tokens": torch.from_numpy(attention & ~special).to(device),
    }


def length_sorted_batches(lengths: np.ndarray, batch_size: int):
    """Index batches of similar length (longest first), so that dynamic padding wastes little.

    Examples
    --------
    >>> import numpy as np
    >>> from skcarl.tokens import length_sorted_batches
    >>> [b.tolist() for b in length_sorted_batches(np.array([5, 30, 6, 29]), batch_size=2)]
    [[1, 3], [2, 0]]
    """
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def unigram_counts(tokens: TokenizedTexts, vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in the corpus, special tokens excluded.

    Examples
    --------
    >>> from skcarl.tokens import TokenizedTexts, unigram_counts
    >>> tokens = TokenizedTexts([[2, 7, 3], [2, 7, 8, 3]], [[1, 0, 1], [1, 0, 0, 1]], n_truncated=0)
    >>> unigram_counts(tokens, vocab_size=10).tolist()
    [0, 0, 0, 0, 0, 0, 0, 2, 1, 0]
    """
    counts = np.zeros(vocab_size, dtype=np.int64)
    for ids, special in zip(tokens.input_ids, tokens.special_tokens_mask):
        ids = np.asarray(ids)[~np.asarray(special, dtype=bool)]
        np.add.at(counts, ids[ids < vocab_size], 1)
    return torch.from_numpy(counts)
