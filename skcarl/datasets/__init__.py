"""Datasets: the small affect corpus and the minimal-pairs contrast set shipped with skcarl."""

from ._demo import load_affect_demo
from ._minimal_pairs import load_minimal_pairs

__all__ = ["load_affect_demo", "load_minimal_pairs"]
