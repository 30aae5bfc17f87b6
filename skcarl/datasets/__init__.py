"""Datasets: the small affect corpus shipped with skcarl."""

from ._demo import load_affect_demo

__all__ = ["load_affect_demo"]
