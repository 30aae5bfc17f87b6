"""Batched, order-preserving sentence embedding with any CARLNetwork."""

from __future__ import annotations

import numpy as np

from ._oom import run_batches
from .tokens import length_sorted_batches, pad_batch, tokenize

# Texts tokenised at once by transform/predict: large enough that sorting them by length leaves little
# padding, small enough that their token ids take a few MB.
CHUNK_SIZE = 8192


def embed_texts(network, tokenizer, texts, *, max_length: int, batch_size: int, device):
    """Embed ``texts`` in length-sorted batches; returns ``(embeddings in input order, n_truncated)``.

    Examples
    --------
    >>> from skcarl.backbone import load_backbone
    >>> from skcarl.inference import embed_texts
    >>> from skcarl.network import CARLNetwork
    >>> tokenizer, encoder = load_backbone("sentence-transformers/all-MiniLM-L6-v2")
    >>> Z, n_cut = embed_texts(CARLNetwork(encoder), tokenizer, ["so happy!", "a long quiet day"],
    ...                        max_length=128, batch_size=8, device="cpu")
    >>> Z.shape, n_cut
    ((2, 384), 0)
    """
    return map_texts(network.embed_sentences, network.encoder.config.hidden_size, tokenizer, texts,
                     max_length=max_length, batch_size=batch_size, device=device, network=network)


def map_texts(fn, width, tokenizer, texts, *, max_length, batch_size, device, network,
              chunk_size: int = CHUNK_SIZE):
    """Apply ``fn(input_ids, attention_mask) -> (B, width)`` to length-sorted batches of ``texts``;
    returns ``(rows in input order, n_truncated)``.

    The texts are tokenised ``chunk_size`` at a time, so that memory holds the token ids of one chunk, not
    of the whole corpus: the result array is the only thing that grows with the number of texts.

    Examples
    --------
    >>> from skcarl.backbone import load_backbone
    >>> from skcarl.inference import map_texts
    >>> from skcarl.network import CARLNetwork
    >>> tokenizer, encoder = load_backbone("sentence-transformers/all-MiniLM-L6-v2")
    >>> network = CARLNetwork(encoder)
    >>> lengths, _ = map_texts(lambda ids, mask: mask.sum(1, keepdim=True), 1, tokenizer, ["hi", "hello there"],
    ...                        max_length=128, batch_size=8, device="cpu", network=network)
    >>> lengths.ravel().tolist()                                     # tokens incl. [CLS] and [SEP], input order
    [3.0, 4.0]
    """
    out = np.empty((len(texts), width), dtype=np.float32)
    n_truncated = 0
    for start in range(0, len(texts), chunk_size):
        tokens = tokenize(tokenizer, texts[start:start + chunk_size], max_length)
        out[start:start + len(tokens)] = map_tokens(fn, width, tokens, pad_id=tokenizer.pad_token_id,
                                                    batch_size=batch_size, device=device, network=network)
        n_truncated += tokens.n_truncated
    return out, n_truncated


def map_tokens(fn, width, tokens, *, pad_id, batch_size, device, network, train_mode=False) -> np.ndarray:
    """:func:`map_texts` for texts tokenised already; ``train_mode`` keeps dropout on.

    Examples
    --------
    >>> import torch
    >>> from skcarl.inference import map_tokens
    >>> from skcarl.tokens import TokenizedTexts
    >>> tokens = TokenizedTexts([[2, 7, 3], [2, 8, 9, 3]], [[1, 0, 1], [1, 0, 0, 1]], n_truncated=0)
    >>> map_tokens(lambda ids, mask: ids[:, 1:2], 1, tokens, pad_id=0, batch_size=8, device="cpu",
    ...            network=torch.nn.Identity()).ravel().tolist()
    [7.0, 8.0]
    """
    out = np.empty((len(tokens), width), dtype=np.float32)
    network.train(train_mode)

    def compute(index):
        batch = pad_batch(tokens, index, pad_id, device)
        out[index] = fn(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()

    run_batches(compute, length_sorted_batches(tokens.lengths, batch_size))  # halves a batch that runs out of memory
    return out
