"""skcarl: CARL (continuous adversarial text representation learning) for scikit-learn."""

from ._version import __version__

__all__ = ["CARLClassifier", "CARLEmbedder", "CARLRegressor", "__version__", "load"]

# The estimators (and torch) are imported on first use, so that ``skcarl.onnx`` serves exported models in a
# process without torch.
_LAZY = {"CARLClassifier": "classifier", "CARLEmbedder": "embedder", "CARLRegressor": "regressor", "load": "io"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # submodules, as an eager import made them attributes (skcarl.io, ...)
        import importlib

        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError:
            pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
