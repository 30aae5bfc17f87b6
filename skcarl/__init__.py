"""skcarl: CARL (continuous adversarial text representation learning) for scikit-learn."""

from ._version import __version__
from .classifier import CARLClassifier
from .embedder import CARLEmbedder
from .io import load
from .regressor import CARLRegressor

__all__ = ["CARLClassifier", "CARLEmbedder", "CARLRegressor", "__version__", "load"]
