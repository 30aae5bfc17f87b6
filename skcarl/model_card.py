"""The README.md model card written into every saved and exported model folder.

The card is built from the fitted estimator itself: its class, its backbone, the parameters that differ from
the defaults, what it learnt from y (label columns and range, or classes), the training record (texts, epochs,
fit time, validation losses) and the versions; then how to load the folder in each format it supports, and
the model's limits. Nothing in it is a blank to fill in by hand.
"""

from __future__ import annotations

import numpy as np

from ._version import __version__

__all__ = ["model_card"]

# Languages of backbones whose own cards state them; any other backbone is named with a pointer to its card.
_BACKBONE_LANGUAGES = {"sentence-transformers/all-MiniLM-L6-v2": "English"}

# How each kind of folder is loaded; a folder lists the ways that work for it.
_FORMAT_TITLES = {
    "skcarl": "a saved skcarl model (`est.save`)",
    "sentence-transformers": "a sentence-transformers folder exported by skcarl",
    "transformers": "a Hugging Face transformers folder exported by skcarl",
    "onnx": "an ONNX folder exported by skcarl",
}


def model_card(estimator, fmt: str = "skcarl", *, quantize: str | None = None, max_length: int | None = None) -> str:
    """The Markdown model card of a fitted CARL estimator, for a folder of format ``fmt``.

    Parameters
    ----------
    estimator : CARLEmbedder, CARLRegressor or CARLClassifier
        A fitted estimator.
    fmt : {"skcarl", "sentence-transformers", "transformers", "onnx"}, default="skcarl"
        The folder the card goes into; it decides the loading instructions.
    quantize : {None, "int8"}, default=None
        The ONNX model's quantisation, stated on the card.
    max_length : int or None, default=None
        The truncation length written into the folder (default: the estimator's ``max_length``).

    Returns
    -------
    str

    Examples
    --------
    >>> from skcarl.model_card import model_card
    >>> card = model_card(fitted_regressor, "onnx")  # doctest: +SKIP
    >>> card.splitlines()[0]  # doctest: +SKIP
    '# CARLRegressor fine-tuned from sentence-transformers/all-MiniLM-L6-v2'
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "network_")
    if fmt not in _FORMAT_TITLES:
        raise ValueError(f"fmt must be one of {', '.join(map(repr, _FORMAT_TITLES))}; got {fmt!r}.")
    name = type(estimator).__name__
    backbone = str(estimator.model_name_or_path)
    network = estimator.network_
    max_length = max_length or estimator.max_length
    lines = [f"# {name} fine-tuned from {backbone}", "",
             f"A {_what(estimator)} trained with CARL (continuous adversarial representation learning; Son et al. "
             "2025, arXiv:2502.20613) by [skcarl](https://arxiv.org/abs/2502.20613). This folder is "
             f"{_FORMAT_TITLES[fmt]}" + (f", quantised to {quantize}" if quantize else "") + ".", "",
             "## Model", "",
             "| | |", "|---|---|",
             f"| estimator | `{name}` |",
             f"| backbone | `{backbone}` |",
             f"| embedding | {network.encoder.config.hidden_size} dimensions, {_pooling_words(network.pooling)}, "
             "L2-normalised |",
             f"| max_length | {max_length} tokens (longer texts are truncated) |"]
    lines += _label_rows(estimator)
    lines += ["", "## Training", ""] + _training_lines(estimator)
    lines += ["", "## Loading", ""] + _loading_lines(estimator, fmt, max_length)
    lines += ["", "## Limits", ""] + _limits_lines(estimator, backbone, max_length, quantize)
    return "\n".join(lines) + "\n"


def _what(estimator) -> str:
    return {"CARLEmbedder": "sentence embedding model for affect (valence and arousal)",
            "CARLRegressor": "regressor of continuous affect labels (e.g. valence and arousal) from text",
            "CARLClassifier": "text classifier of emotion classes"}[type(estimator).__name__]


def _pooling_words(pooling: str) -> str:
    return {"mean": "mean of the token states (special tokens included, padding excluded)",
            "cls": "the first ([CLS]) token's state"}[pooling]


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if isinstance(value, np.ndarray):
        return "[" + ", ".join(_fmt(v) for v in value.tolist()) + "]"
    return repr(value)


def _label_rows(estimator) -> list[str]:
    metadata = getattr(estimator, "metadata_", None) or {}
    low, high = getattr(estimator, "label_min_", None), getattr(estimator, "label_max_", None)
    rows = []
    if hasattr(estimator, "classes_"):
        classes = [str(c) for c in np.asarray(estimator.classes_).tolist()]
        kind = "multi-label (independent sigmoids)" if getattr(estimator, "multilabel_", False) else \
            "single-label (softmax)"
        rows.append(f"| classes | {len(classes)}, {kind}: {', '.join(f'`{c}`' for c in classes)} |")
        va_map = getattr(estimator, "va_map_", None)
        if va_map:
            rows.append("| class positions on the valence–arousal plane | "
                        + "; ".join(f"`{c}` ({v[0]:.2f}, {v[1]:.2f})" for c, v in va_map.items()) + " |")
    elif low is not None:
        names = metadata.get("va_cols") or [f"column {i}" for i in range(len(np.atleast_1d(low)))]
        ranges = ", ".join(f"{n} {_fmt(lo)}–{_fmt(hi)}" for n, lo, hi in zip(names, np.atleast_1d(low),
                                                                             np.atleast_1d(high)))
        rows.append(f"| labels (range mapped to [0, 1] for the contrastive loss) | {ranges} |")
    if metadata:
        rows.append(f"| metadata | `{_fmt(metadata)}` |")
    return rows


def _non_default_params(estimator) -> dict:
    from .io import saved_params

    defaults = type(estimator)().get_params(deep=False)
    changed = {}
    for key, value in saved_params(estimator).items():
        default = defaults.get(key)
        try:
            same = bool(np.all(value == default)) and type(value) is type(default)
        except Exception:  # values that do not compare (e.g. a RandomState)
            same = False
        if not same:
            changed[key] = value
    return changed


def _training_lines(estimator) -> list[str]:
    lines = []
    n_texts = getattr(estimator, "n_samples_fit_", None)
    epochs = getattr(estimator, "n_iter_", None)
    lines.append(f"- Trained on {n_texts:,} texts" if n_texts is not None else "- Number of training texts: not "
                 "recorded (fitted with an older skcarl)")
    if epochs is not None:
        lines[-1] += f", {epochs} epoch(s) of at most {estimator.max_epochs}; weights of epoch {estimator.best_epoch_}"
    fit_time = getattr(estimator, "fit_time_", None)
    if fit_time is not None:
        lines[-1] += f"; fit took {fit_time:.0f} s on {getattr(estimator, 'device_', 'cpu')}."
    curve = getattr(estimator, "loss_curve_", None)
    if curve:
        lines.append(f"- Training loss per epoch: {', '.join(f'{v:.4f}' for v in curve)}")
    scores = getattr(estimator, "validation_scores_", None)
    if scores:
        lines.append(f"- Validation loss per epoch ({estimator.validation_fraction:.0%} of the texts held out): "
                     f"{', '.join(f'{v:.4f}' for v in scores)}")
    else:
        lines.append("- No validation split (validation_fraction=None): no validation scores.")
    changed = _non_default_params(estimator)
    if changed:
        lines.append("- Parameters that differ from the defaults: "
                     + ", ".join(f"`{k}={_fmt(v)}`" for k, v in sorted(changed.items())))
    else:
        lines.append("- All parameters at their defaults.")
    for attribute, meaning in (("label_temperature_", "label temperature τ_y"),
                               ("ranking_weight_", "ranking weight w"),
                               ("learning_rate_", "encoder learning rate"),
                               ("max_epochs_", "epochs of the budget"),
                               ("head_init_", "head start")):
        if hasattr(estimator, attribute):
            lines.append(f"- {meaning} used: {_fmt(getattr(estimator, attribute))}")
    lines.append(f"- skcarl {__version__}" + _versions())
    return lines


def _versions() -> str:
    try:
        import torch
        import transformers
    except ImportError:  # pragma: no cover - torch and transformers are requirements of skcarl
        return ""
    return f", torch {torch.__version__}, transformers {transformers.__version__}"


def _loading_lines(estimator, fmt: str, max_length: int) -> list[str]:
    name = type(estimator).__name__
    predict = {"CARLEmbedder": "transform", "CARLRegressor": "predict", "CARLClassifier": "predict_proba"}[name]
    if fmt == "onnx":
        output = {"CARLEmbedder": "embedding", "CARLRegressor": "prediction", "CARLClassifier": "probabilities"}[name]
        return ["Needs only `onnxruntime`, `tokenizers` and `numpy` (no torch):", "", "```python",
                "from skcarl.onnx import ONNXModel", "", 'model = ONNXModel("path/to/this/folder")',
                f'model.{predict}(["What a wonderful day!"])', "```", "",
                "Or with onnxruntime directly: inputs `input_ids` and `attention_mask` (int64, batch × tokens, "
                "tokenised by `tokenizer.json` with truncation at the max_length above); outputs "
                "`embedding` (L2-normalised)" + (f" and `{output}`." if output != "embedding" else ".")]
    lines = ["With skcarl (the estimator, heads included):", "", "```python", "import skcarl", "",
             'model = skcarl.load("path/to/this/folder")', f'model.{predict}(["What a wonderful day!"])', "```"]
    if fmt == "sentence-transformers":
        lines += ["", "With sentence-transformers (the embedding `transform` returns):", "", "```python",
                  "from sentence_transformers import SentenceTransformer", "",
                  'model = SentenceTransformer("path/to/this/folder")',
                  'embeddings = model.encode(["What a wonderful day!"])', "```"]
    if fmt in ("sentence-transformers", "transformers"):
        pooled = ("(out.last_hidden_state * mask).sum(1) / mask.sum(1)" if estimator.network_.pooling == "mean"
                  else "out.last_hidden_state[:, 0]")
        lines += ["", f"With transformers (pooling: {_pooling_words(estimator.network_.pooling)}, then L2 "
                  "normalisation):", "", "```python", "import torch", "from transformers import AutoModel, "
                  "AutoTokenizer", "", 'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
                  'encoder = AutoModel.from_pretrained("path/to/this/folder").eval()',
                  'batch = tokenizer(["What a wonderful day!"], padding=True, truncation=True, '
                  f'max_length={max_length}, return_tensors="pt")',
                  "with torch.no_grad():", "    out = encoder(**batch)",
                  'mask = batch["attention_mask"].unsqueeze(-1).float()',
                  f"embeddings = torch.nn.functional.normalize({pooled}, dim=-1)", "```"]
        if name != "CARLEmbedder":
            lines += ["", "The prediction head is in `skcarl_heads.safetensors` (tensor `task_head.weight` and "
                      "`task_head.bias`, applied to the pooled vector before normalisation); `skcarl_config.json` "
                      "holds what turns its output into predictions (see the Deploying guide of skcarl)."]
    return lines


def _limits_lines(estimator, backbone: str, max_length: int, quantize) -> list[str]:
    language = _BACKBONE_LANGUAGES.get(backbone)
    lines = [f"- Language: {language}, the language of the backbone." if language else
             f"- Language: that of the backbone `{backbone}` (see its own model card)."]
    name = type(estimator).__name__
    if name == "CARLClassifier":
        lines.append("- Predicts only the classes above, as they were used in the training labels.")
    else:
        lines.append("- The labels mean what they meant in the training data (e.g. EmoBank's 1–5 valence and "
                     "arousal ratings); predictions outside the label range above are extrapolations.")
    lines.append(f"- Texts longer than {max_length} tokens are truncated; the embedding reflects affect as it was "
                 "labelled in the training texts, not a general-purpose semantic similarity.")
    if quantize:
        lines.append(f"- {quantize} weights: embeddings differ slightly from the float32 model's (see skcarl's "
                     "performance page for the measured cosine and probe scores).")
    return lines
