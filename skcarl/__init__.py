"""skcarl: CARL (continuous adversarial text representation learning) for scikit-learn."""

__version__ = "0.1.0"

from .classifier import CARLClassifier  # noqa: E402
from .embedder import CARLEmbedder  # noqa: E402
from .io import load  # noqa: E402
from .regressor import CARLRegressor  # noqa: E402

__all__ = ["CARLClassifier", "CARLEmbedder", "CARLRegressor", "__version__", "load"]
