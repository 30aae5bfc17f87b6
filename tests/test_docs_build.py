"""The Sphinx site builds with warnings as errors (``sphinx-build -W``), as the docs README says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

for _module, _extra in (("sphinx", "sphinx"), ("numpydoc", "numpydoc"), ("myst_parser", "myst-parser")):
    pytest.importorskip(_module, reason=f"{_extra} is not installed (pip install -e .[docs])")


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs-html")
    env = dict(os.environ, MPLBACKEND="Agg", HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_sphinx_build_has_no_warnings(built_site):
    assert (built_site / "index.html").is_file()


def _included_fragments() -> list[str]:
    """Markdown files that conf.py excludes as pages because another page includes them."""
    text = (DOCS / "conf.py").read_text(encoding="utf-8")
    return [line.split('"')[1] for line in text.splitlines() if "included by" in line]


def test_every_markdown_page_is_built(built_site):
    fragments = _included_fragments()
    assert fragments == ["performance/*.md", "benchmarks/*.md"]
    pages = sorted(p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md")
                   if "_build" not in p.parts and not any(p.relative_to(DOCS).match(f) for f in fragments))
    missing = [str(p) for p in pages if not (built_site / p).is_file()]
    assert not missing, f"pages without HTML output: {missing}"
    # the fragments reach the site through the page that includes them
    performance = (built_site / "performance.html").read_text(encoding="utf-8")
    assert "Transform throughput" in performance and "Training step" in performance
    study_log = (built_site / "study_log.html").read_text(encoding="utf-8")
    assert "EmoBank, test" in study_log and "GoEmotions (Ekman groups" in study_log
    benchmarks = (built_site / "benchmarks.html").read_text(encoding="utf-8")
    assert "Results at the defaults" in benchmarks and "Few labels" in benchmarks


def test_api_reference_documents_the_public_api(built_site):
    html = (built_site / "api.html").read_text(encoding="utf-8")
    expected = ["skcarl.CARLEmbedder", "skcarl.CARLRegressor", "skcarl.CARLClassifier",
                "skcarl.datasets.load_affect_demo", "skcarl.losses.SoftInfoNCELoss",
                "skcarl.losses.WeightedSupConLoss", "skcarl.losses.RankNContrastLoss",
                "skcarl.losses.TokenDetectionLoss", "skcarl.backbone.load_backbone", "skcarl.load",
                "skcarl.io.InvalidModelError", "skcarl.explain.explain", "skcarl.plot.va_plane",
                "skcarl.plot.token_saliency", "skcarl.plot.learning_curves", "skcarl.CARLEmbedder.save",
                "skcarl.CARLRegressor.explain"]
    # numpydoc rendered the sections (a plain autodoc build would show the raw "Parameters\n----------")
    assert 'class="field-list' in html or "Parameters" in html
    missing = [name for name in expected if f'id="{name}"' not in html]
    assert not missing, f"not documented on the API page: {missing}"


def test_examples_page_includes_every_example(built_site):
    html = (built_site / "examples.html").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
    assert scripts
    missing = [name for name in scripts if f"examples/{name}" not in (DOCS / "examples.md").read_text()]
    assert not missing, f"examples not included in docs/examples.md: {missing}"
    # literalinclude really pulled the source in (a docstring line of each script appears in the page)
    for name in scripts:
        assert f"python examples/{name}" in html, f"{name}'s source is not on the examples page"
