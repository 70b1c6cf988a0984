# Configuration file for the Sphinx documentation builder (modelled on cookiecutter-scverse).
# https://www.sphinx-doc.org/en/master/usage/configuration.html
#
# Build locally (output outside the repository):
#     python -m sphinx -b html docs /tmp/docs_build
# Offline (no inventories fetched; references to other projects stay unresolved, as tests/test_docs.py does):
#     AESTETIK_DOCS_OFFLINE=1 python -m sphinx -b html docs /tmp/docs_build
# Project metadata comes from the installed distribution: after changing pyproject.toml,
# reinstall (`pip install -e ".[doc]"`) to refresh it.
from __future__ import annotations

import os
import sys
from datetime import datetime
from importlib.metadata import metadata
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "extensions"))

# -- Project information -----------------------------------------------------

info = metadata("aestetik")
project_name = info["Name"]
project = project_name
author = info["Author"] or "aestetik developers"
copyright = f"{datetime.now():%Y}, {author}."
version = info["Version"]
release = info["Version"]
urls = dict(pu.split(", ", 1) for pu in info.get_all("Project-URL") or [])
repository_url = urls.get("Source", "https://github.com/ratschlab/aestetik")

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
nitpicky = True  # warn about every reference that does not resolve
needs_sphinx = "7.0"

html_context = {
    "display_github": True,
    "github_user": "ratschlab",
    "github_repo": project_name,
    "github_version": "main",
    "conf_py_path": "/docs/",
}

# -- General configuration ---------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinxcontrib.bibtex",
    "sphinx_autodoc_typehints",
    "sphinx.ext.mathjax",
    "sphinx_design",
    *[p.stem for p in (HERE / "extensions").glob("*.py")],
]

autosummary_generate = True
autodoc_member_order = "groupwise"
default_role = "literal"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
myst_heading_anchors = 6
myst_enable_extensions = [
    "amsmath",
    "colon_fence",
    "deflist",
    "dollarmath",
    "html_image",
    "html_admonition",
]
myst_url_schemes = ("http", "https", "mailto")
# Notebooks keep their outputs and are rendered as they are; CI executes them separately.
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True
typehints_defaults = "braces"

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "myst-nb",
    ".ipynb": "myst-nb",
    ".myst": "myst-nb",
}

# Only inventories are fetched here; nothing of these packages is imported by this file.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "squidpy": ("https://squidpy.readthedocs.io/en/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}
if os.environ.get("AESTETIK_DOCS_OFFLINE"):  # tests/test_docs.py: no network, no inventories
    intersphinx_mapping = {}

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# -- Options for HTML output -------------------------------------------------

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_title = project_name

html_theme_options = {
    "repository_url": repository_url,
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}

pygments_style = "default"

nitpick_ignore = [
    # If a reference outside our control cannot resolve, add it here, e.g. ("py:class", "igraph.Graph").
    # numpy's typing aliases have no entry in numpy's inventory.
    ("py:class", "numpy.typing.NDArray"),
    ("py:class", "numpy.typing.ArrayLike"),
    ("py:class", "NDArray"),
    ("py:class", "ArrayLike"),
    # `tl.fit(strategy=...)`'s type hint: Lightning is not in intersphinx_mapping (no inventory we rely on).
    ("py:class", "lightning.pytorch.strategies.strategy.Strategy"),
]

# Type hints resolve to the module that defines a class; the inventories list it under its public name.
qualname_overrides = {
    "anndata._core.anndata.AnnData": "anndata.AnnData",
    "matplotlib.axes._axes.Axes": "matplotlib.axes.Axes",
}


def _resolve_public_name(app, env, node, contnode):
    """Retry an unresolved reference under the public name of its target (see ``qualname_overrides``)."""
    from sphinx.ext.intersphinx import missing_reference

    target = qualname_overrides.get(node.get("reftarget"))
    if target is None:
        return None
    node["reftarget"] = target
    return missing_reference(app, env, node, contnode)


def setup(app):
    """Sphinx hook."""
    app.connect("missing-reference", _resolve_public_name)
