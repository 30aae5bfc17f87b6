"""Batched, order-preserving sentence embedding with any CARLNetwork."""

from __future__ import annotations

import numpy as np

from .tokens import length_sorted_batches, pad_batch, tokenize


def embed_texts(network, tokenizer, texts, *, max_length: int, batch_size: int, device):
    """Embed ``texts`` in length-sorted batches; returns ``(embeddings in input order, n_truncated)``."""
    return map_texts(network.embed_sentences, network.encoder.config.hidden_size, tokenizer, texts,
                     max_length=max_length, batch_size=batch_size, device=device, network=network)


def map_texts(fn, width, tokenizer, texts, *, max_length, batch_size, device, network):
    """Apply ``fn(input_ids, attention_mask) -> (B, width)`` to length-sorted batches of ``texts``;
    returns ``(rows in input order, n_truncated)``."""
    tokens = tokenize(tokenizer, texts, max_length)
    out = map_tokens(fn, width, tokens, pad_id=tokenizer.pad_token_id, batch_size=batch_size, device=device,
                     network=network)
    return out, tokens.n_truncated


def map_tokens(fn, width, tokens, *, pad_id, batch_size, device, network, train_mode=False) -> np.ndarray:
    """:func:`map_texts` for texts tokenised already; ``train_mode`` keeps dropout on."""
    out = np.empty((len(tokens), width), dtype=np.float32)
    network.train(train_mode)
    for index in length_sorted_batches(tokens.lengths, batch_size):
        batch = pad_batch(tokens, index, pad_id, device)
        out[index] = fn(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()
    return out
