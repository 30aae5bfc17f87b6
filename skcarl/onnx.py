"""Serving an exported ONNX model with onnxruntime, tokenizers and NumPy only (no torch).

:class:`ONNXModel` reads a folder written by ``estimator.export(path, format="onnx")`` and offers the
estimator's inference methods: ``transform`` (all three), ``predict`` (regressor and classifier) and
``predict_proba`` (classifier). Texts are tokenised by the ``tokenizers`` library with the estimator's
truncation length, and run in length-sorted batches of the estimator's ``batch_size``, a chunk of texts at a
time, as ``transform`` does, so the results match the estimator's (within 1e-4 for a float32 model).

This module imports neither torch nor transformers, so a serving image needs only
``pip install onnxruntime tokenizers numpy`` and skcarl installed without its dependencies
(``pip install --no-deps skcarl``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["ONNXModel"]

_CONFIG_FILE = "skcarl_onnx.json"  # written by skcarl.export (which imports torch, so the name lives in both)
_FORMAT = "skcarl-onnx"
_FORMAT_VERSION = 1


class ONNXModel:
    """An exported CARL model run by onnxruntime.

    Parameters
    ----------
    path : str or path-like
        A folder written by ``export(path, format="onnx")``.
    batch_size : int or None, default=None
        Texts per onnxruntime call; ``None`` uses the estimator's ``batch_size``.
    n_threads : int or None, default=None
        onnxruntime's intra-op threads; ``None`` lets onnxruntime choose (all cores).
    providers : list of str or None, default=None
        onnxruntime execution providers; ``None`` runs on the CPU.

    Attributes
    ----------
    config_ : dict
        The folder's ``skcarl_onnx.json``: estimator, outputs, max_length, classes, ...
    session_ : onnxruntime.InferenceSession
    tokenizer_ : tokenizers.Tokenizer

    Examples
    --------
    >>> from skcarl.onnx import ONNXModel
    >>> model = ONNXModel("carl-onnx", n_threads=2)  # doctest: +SKIP
    >>> model.predict(["What a wonderful day!"])  # doctest: +SKIP
    array([[3.9, 3.4]], dtype=float32)
    """

    def __init__(self, path, *, batch_size=None, n_threads=None, providers=None):
        import onnxruntime
        from tokenizers import Tokenizer

        path = Path(path)
        if not (path / _CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{str(path)!r} is not an ONNX folder exported by skcarl (no {_CONFIG_FILE}).")
        with open(path / _CONFIG_FILE, encoding="utf-8") as f:
            config = json.load(f)
        if config.get("format") != _FORMAT or not 1 <= int(config.get("format_version", 0)) <= _FORMAT_VERSION:
            raise ValueError(f"{path / _CONFIG_FILE} is not a skcarl ONNX configuration this skcarl reads "
                             f"(format {config.get('format')!r}, version {config.get('format_version')!r}).")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError("The 'batch_size' parameter of ONNXModel must be an int >= 1 or None; "
                             f"got {batch_size!r}.")
        self.path = path
        self.config_ = config
        self.batch_size = batch_size or int(config["batch_size"])
        options = onnxruntime.SessionOptions()
        if n_threads is not None:
            options.intra_op_num_threads = int(n_threads)
            options.inter_op_num_threads = 1
        self.session_ = onnxruntime.InferenceSession(os.fspath(path / config["model"]), options,
                                                     providers=providers or ["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(os.fspath(path / config["tokenizer"]))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=int(config["max_length"]))
        self.tokenizer_ = tokenizer

    # ------------------------------------------------------------------ estimator-like API
    def transform(self, texts) -> np.ndarray:
        """L2-normalised sentence embeddings, shape (n_texts, embedding_dim), as ``transform`` returns."""
        return self.run(texts, ["embedding"])["embedding"]

    def predict(self, texts) -> np.ndarray:
        """The regressor's predictions, or the classifier's labels, as the estimator's ``predict``."""
        estimator = self.config_["estimator"]
        if estimator == "CARLRegressor":
            prediction = self.run(texts, ["prediction"])["prediction"]
            return prediction.ravel() if self.config_.get("ravel") else prediction
        proba = self.predict_proba(texts)
        if self.config_.get("multilabel"):
            return (proba >= 0.5).astype(int)
        return self.classes_[proba.argmax(1)]

    def predict_proba(self, texts) -> np.ndarray:
        """The classifier's class probabilities, columns in ``classes_`` order."""
        self._needs("probabilities", "predict_proba")
        return self.run(texts, ["probabilities"])["probabilities"]

    @property
    def classes_(self) -> np.ndarray:
        """The classifier's classes, as ``classes_`` of the estimator."""
        self._needs("probabilities", "classes_")
        dtype = self.config_.get("classes_dtype")
        return np.asarray(self.config_["classes"], dtype=None if dtype is None else np.dtype(dtype))

    def _needs(self, output: str, what: str) -> None:
        if output not in self.config_["outputs"]:
            raise AttributeError(f"This ONNX model was exported from a {self.config_['estimator']}, which has no "
                                 f"{what}.")

    # ------------------------------------------------------------------ batching
    def run(self, texts, outputs=None) -> dict:
        """The named ONNX outputs (default: all) for ``texts``, rows in the input order.

        Texts are tokenised ``chunk_size`` at a time and run in batches of similar length, longest first.
        """
        texts = _check_texts(texts)
        outputs = list(outputs or self.config_["outputs"])
        if self.config_["estimator"] == "CARLEmbedder" and outputs != ["embedding"]:
            raise AttributeError("This ONNX model was exported from a CARLEmbedder, which has no predict.")
        widths = self.config_["output_widths"]
        result = {name: np.empty((len(texts), int(widths[name])), dtype=np.float32) for name in outputs}
        chunk, pad_id, n_truncated = int(self.config_["chunk_size"]), int(self.config_["pad_token_id"]), 0
        for start in range(0, len(texts), chunk):
            encodings = self.tokenizer_.encode_batch(texts[start:start + chunk])
            n_truncated += sum(1 for e in encodings if e.overflowing)
            lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
            order = np.argsort(-lengths, kind="stable")
            for first in range(0, len(order), self.batch_size):
                index = order[first:first + self.batch_size]
                width = int(lengths[index].max())
                ids = np.full((len(index), width), pad_id, dtype=np.int64)
                mask = np.zeros((len(index), width), dtype=np.int64)
                for row, i in enumerate(index):
                    ids[row, :lengths[i]] = encodings[i].ids
                    mask[row, :lengths[i]] = 1
                values = self.session_.run(outputs, {"input_ids": ids, "attention_mask": mask})
                for name, value in zip(outputs, values):
                    result[name][start + index] = value
        if n_truncated:
            warnings.warn(f"{n_truncated} of {len(texts)} texts are longer than max_length="
                          f"{self.config_['max_length']} tokens and were truncated.", UserWarning, stacklevel=3)
        return result


def _check_texts(texts) -> list:
    if isinstance(texts, (str, bytes)):
        raise TypeError("Expected a sequence of texts (a list, array or Series of str), got a single str. Wrap it "
                        "in a list: [text].")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"Every text must be a str; item {bad} is a {type(texts[bad]).__name__}.")
    return texts
