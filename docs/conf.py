"""Sphinx configuration for txsio's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "txsio"
author = "the txsio developers"
copyright = "2026, the txsio developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping = {}
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
