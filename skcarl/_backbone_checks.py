"""Whether a loaded backbone is what its folder claims: a tokenizer read from files, whose ids fit the encoder.

transformers builds a tokenizer even from a folder with no tokenizer file at all (a BERT tokenizer of its five
special tokens, which maps every word to ``[UNK]``): such a model trains and predicts without complaint, on
nothing. And a tokenizer from another model gives ids that index the wrong rows of the embedding table, or
rows past its end. These functions return what is wrong, in words, for :func:`skcarl.backbone.load_backbone`
to raise with its error class; and name the file behind a failed load.
"""

from __future__ import annotations

import os

# Below this fraction of the embedding table's rows the tokenizer is not the encoder's: tables are at most
# padded (to a multiple of 8 or 64 rows, or with a few reserved ids), never twice the vocabulary.
MIN_VOCABULARY_SHARE = 0.5

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def _tokenizer_files(tokenizer) -> list[str]:
    return sorted(set(getattr(type(tokenizer), "vocab_files_names", {}).values()) | {"tokenizer.json"})


def tokenizer_problem(source: str, tokenizer, encoder) -> str | None:
    """What makes ``tokenizer`` unusable with ``encoder`` (loaded from ``source``), or None.

    Examples
    --------
    >>> from transformers import BertConfig, BertModel, BertTokenizer
    >>> tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hi"])})
    >>> encoder = BertModel(BertConfig(vocab_size=300, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                                intermediate_size=8))
    >>> tokenizer_problem("my-model", tokenizer, encoder).split(": ")[0]  # no folder: only the sizes are compared
    "the tokenizer of 'my-model' has 6 tokens, but the encoder's embedding table has 300 rows"
    """
    if os.path.isdir(source):
        names = _tokenizer_files(tokenizer)
        if not any(os.path.isfile(os.path.join(source, name)) for name in names):
            return (f"the folder {source!r} holds no tokenizer file (one of {', '.join(names)}); transformers "
                    f"fell back to a tokenizer of {len(tokenizer)} tokens, which would read every word as unknown")
    embeddings = encoder.get_input_embeddings() if hasattr(encoder, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if not isinstance(rows, int):
        return None
    n_tokens = len(tokenizer)
    if n_tokens > rows or n_tokens < MIN_VOCABULARY_SHARE * rows:
        files = _present(source, _tokenizer_files(tokenizer)) or ["no tokenizer file"]
        where = f" (files of {source!r}: {', '.join(files)} and config.json's vocab_size)" \
            if os.path.isdir(source) else ""
        return (f"the tokenizer of {source!r} has {n_tokens:,} tokens, but the encoder's embedding table has "
                f"{rows:,} rows{where}: the tokenizer belongs to another model")
    return None


def _present(folder: str, names) -> list[str]:
    return [name for name in names if os.path.isfile(os.path.join(folder, name))]


def failed_file(source: str, loading: str) -> str:
    """The file of the local folder ``source`` that ``loading`` ("tokenizer" or "encoder") reads, in words."""
    if not os.path.isdir(source):
        return ""
    if loading == "encoder":
        present = _present(source, WEIGHTS_FILES)
        if not present:
            return f" The folder {source!r} holds no weights file ({', '.join(WEIGHTS_FILES)})."
        return f" The file that failed: the weights file {present[0]} of the folder {source!r}."
    return f" The files that failed: the tokenizer files or config.json of the folder {source!r}."
