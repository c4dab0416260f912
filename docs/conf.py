"""Sphinx configuration of the torch-artic docs (``sphinx-build -W -b html docs out``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from torch_artic._version import __version__  # noqa: E402

project = "torch-artic"
author = "torch-artic developers"
copyright = "2026, torch-artic developers"
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
myst_enable_extensions = ["dollarmath", "amsmath"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "figures"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
suppress_warnings = ["myst.header"]
html_theme = "furo"
html_static_path = ["_static"]
html_title = f"torch-artic {version}"
