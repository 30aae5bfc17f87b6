"""The ``skcarl`` command line, end to end: fit, embed, predict, evaluate.

Writes a training and a test CSV from the shipped corpus into a temporary folder, then runs the same
commands you would type in a shell (``python -m skcarl`` is the ``skcarl`` command)::

    skcarl fit train.csv --text-col text --va-cols valence arousal \\
        --param max_epochs=1 --param va_range=[1,9] --out model --quiet --seed 0
    skcarl embed model test.csv --out embeddings.npy
    skcarl predict model test.csv --out predictions.csv
    skcarl evaluate model test.csv

Each command's output is printed. About 25 s on two idle CPU cores::

    python examples/cli_walkthrough.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from skcarl.datasets import load_affect_demo


def skcarl(*args, cwd):
    """Run one ``skcarl`` command, print it and its output, stop on failure."""
    command = [sys.executable, "-m", "skcarl", *map(str, args)]
    print("$ skcarl " + " ".join(map(str, args)), flush=True)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    print(result.stdout.rstrip() or "(no output)")
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"skcarl {args[0]} failed with exit code {result.returncode}")
    return result.stdout


data = load_affect_demo().sample(n=168, random_state=0)
with tempfile.TemporaryDirectory() as tmp:
    work = Path(tmp)
    data.iloc[:128].to_csv(work / "train.csv", index=False)
    data.iloc[128:].to_csv(work / "test.csv", index=False)

    skcarl("fit", "train.csv", "--text-col", "text", "--va-cols", "valence", "arousal",
           "--param", "max_epochs=1", "--param", "max_length=48", "--param", "va_range=[1,9]",
           "--out", "model", "--quiet", "--seed", "0", cwd=work)
    print("model folder:", sorted(p.name for p in (work / "model").iterdir()))

    skcarl("embed", "model", "test.csv", "--out", "embeddings.npy", "--quiet", cwd=work)
    print("embeddings:", np.load(work / "embeddings.npy").shape)

    skcarl("predict", "model", "test.csv", "--out", "predictions.csv", "--quiet", cwd=work)
    print(pd.read_csv(work / "predictions.csv").head().round(2).to_string(index=False))

    skcarl("evaluate", "model", "test.csv", "--quiet", cwd=work)
print("CLI walk-through finished")
