"""skcarl: CARL (continuous adversarial text representation learning) for scikit-learn."""

__version__ = "0.1.0"

from .embedder import CARLEmbedder  # noqa: E402

__all__ = ["CARLEmbedder", "__version__"]
