"""Benchmark scripts of skcarl (not tests): ``python -m benchmarks.speed``, ``python -m benchmarks.step_fingerprint``.

They read the datasets from ``../shared/data`` beside the repository, or from ``--data-dir``.
"""
