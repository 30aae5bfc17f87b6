"""Sphinx configuration of the skcarl documentation.

Build (warnings are errors, as in the test ``tests/test_docs_build.py``)::

    pip install -e .[docs]
    sphinx-build -W -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the working tree, installed or not
os.environ.setdefault("MPLBACKEND", "Agg")  # skcarl.plot imports matplotlib; never open a window

import skcarl  # noqa: E402

project = "skcarl"
author = "skcarl developers"
copyright = "skcarl developers"
release = skcarl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",  # Markdown pages
    "sphinx.ext.autodoc",  # API reference from the docstrings
    "sphinx.ext.autosummary",  # summary tables on the API page
    "numpydoc",  # the numpydoc docstring format of the scikit-learn ecosystem
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# Not pages: the build output, the figure script and its images, notes, anything editors leave behind.
exclude_patterns = [
    "_build",
    "**/_build",
    "make_figures.py",
    "images",
    "performance/*.md",  # generated tables, included by performance.md
    "benchmarks/*.md",  # generated tables, included by benchmarks.md
    "Thumbs.db",
    ".DS_Store",
    "**/.ipynb_checkpoints",
]

# MyST: `$...$` maths, ::: fences, and header anchors so that [text](page.md#section) links resolve.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# autodoc / autosummary: the API page writes its directives by hand, so nothing is generated into the
# source tree during a build.
autosummary_generate = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections already give the types

# numpydoc: render the Parameters/Returns/Attributes sections; the class pages list their methods through
# autodoc's :members:, so numpydoc's own member tables (which need generated stub pages) are off.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# No intersphinx: the build must work offline (tests, air-gapped machines) and with -W a failed inventory
# download would be an error.

html_theme = "alabaster"
html_title = f"skcarl {release}"
html_static_path = []
html_theme_options = {
    "description": "CARL affective text representations as scikit-learn estimators",
    "fixed_sidebar": True,
}
