"""Persistence of a fitted CARL estimator: pickle-free ``save``, ``export`` to other formats, and pickling.

Pickling is skorch-style: ``__getstate__`` stores ``network_`` as ``torch.save`` bytes and drops the
``encoder_`` alias; ``__setstate__`` maps the tensors to the saved device, or to the CPU with a warning when
that device is CUDA and CUDA is absent. The file formats themselves live in :mod:`skcarl.io` and
:mod:`skcarl.export`, imported on first use so that the estimators do not import them.
"""

from __future__ import annotations

import io

import torch

from ._version import __version__
from ._warnings import warn


class PersistenceMixin:
    """``save``, ``export`` and pickling for an estimator whose fitted model is ``network_``."""

    def save(self, path, metadata=None):
        """Save the fitted estimator to a folder that :func:`skcarl.load` reads back without pickle.

        The folder holds ``config.json`` (parameters, fitted attributes, versions, ``metadata``),
        ``encoder_config.json``, ``model.safetensors`` (all network weights) and ``tokenizer/``.

        Parameters
        ----------
        path : str or path-like
            The folder to write (created if needed). An existing folder must be empty or hold a saved
            skcarl model, which is replaced.
        metadata : dict or None, default=None
            JSON-like information to keep with the model; ``metadata_`` after loading.

        Returns
        -------
        pathlib.Path
            The folder written.

        Examples
        --------
        >>> import skcarl
        >>> emb = skcarl.CARLEmbedder(max_epochs=1).fit(texts, va)  # doctest: +SKIP
        >>> emb.save("my-model", metadata={"text_col": "text"})  # doctest: +SKIP
        PosixPath('my-model')
        >>> skcarl.load("my-model").transform(["Hello"]).shape  # doctest: +SKIP
        (1, 384)
        """
        from .io import save

        return save(self, path, metadata=metadata)

    def export(self, path, format="sentence-transformers", *, quantize=None, overwrite=False):
        """Export the fitted estimator to a sentence-transformers, transformers or ONNX folder.

        Parameters
        ----------
        path : str or path-like
            The folder to create (written beside under a temporary name, then renamed).
        format : {"sentence-transformers", "transformers", "onnx"}, default="sentence-transformers"
            ``"sentence-transformers"``: ``SentenceTransformer(path).encode(texts)`` gives ``transform(texts)``;
            ``"transformers"``: ``AutoModel``/``AutoTokenizer.from_pretrained(path)`` plus the pooling named on
            the model card; both also load with :func:`skcarl.load`. ``"onnx"``: one ONNX graph (embedding, and
            the regressor's predictions or the classifier's probabilities) served by
            :class:`skcarl.onnx.ONNXModel` without torch. See :mod:`skcarl.export`.
        quantize : {None, "int8"}, default=None
            ONNX only: dynamically quantised int8 weights.
        overwrite : bool, default=False
            Replace ``path`` if it exists.

        Returns
        -------
        pathlib.Path
            The folder written, with a README.md model card.

        Examples
        --------
        >>> emb = skcarl.CARLEmbedder(max_epochs=1).fit(texts, va)  # doctest: +SKIP
        >>> emb.export("carl-st")  # doctest: +SKIP
        PosixPath('carl-st')
        >>> from sentence_transformers import SentenceTransformer  # doctest: +SKIP
        >>> SentenceTransformer("carl-st").encode(["Hello"]).shape  # doctest: +SKIP
        (1, 384)
        """
        from .export import export

        return export(self, path, format, quantize=quantize, overwrite=overwrite)

    # ------------------------------------------------------------------ pickling (skorch-style)
    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ returns __dict__ itself
        state["_skcarl_version"] = __version__
        if "network_" in state:
            # torch.save keeps the device of every tensor; __setstate__ maps them to one that exists.
            buffer = io.BytesIO()
            torch.save(state["network_"], buffer)
            state["network_"] = buffer.getvalue()
            state.pop("encoder_", None)
        return state

    def __setstate__(self, state):
        saved_version = state.pop("_skcarl_version", None)
        if saved_version is not None and saved_version != __version__:
            warn(f"This {type(self).__name__} was pickled with skcarl {saved_version} and is loaded with skcarl "
                 f"{__version__}; results may differ.")
        if isinstance(state.get("network_"), bytes):
            device = state.get("device_", torch.device("cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                warn("This model was trained on CUDA, which is not available here; it is loaded on the CPU.")
                device = torch.device("cpu")
            network = torch.load(io.BytesIO(state["network_"]), map_location=device, weights_only=False)
            state["network_"], state["encoder_"], state["device_"] = network, network.encoder, device
        super().__setstate__(state)
