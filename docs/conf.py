"""Sphinx configuration for the zasync documentation."""

import os
import sys
import tomllib

from pygments.lexer import bygroups, inherit
from pygments.lexers.configs import ApacheConfLexer
from pygments.token import Comment, Name, Text

# Document the source tree, not whatever zasync happens to be installed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

project = "zasync"
author = "zasync contributors"
copyright = "zasync contributors"
with open(os.path.join(HERE, "..", "pyproject.toml"), "rb") as f:
    release = tomllib.load(f)["project"]["version"]
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    # Documents zope.interface Interfaces (automodule :members: picks them up,
    # or use `.. autointerface::`).
    "repoze.sphinx.autointerface",
    "sphinx.ext.viewcode",
]

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "markdown",
}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: ``` fences with {directive}; also ::: fences and definition lists.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: interfaces carry the documentation (zope.interface style).
# Sphinx 9 rewrote autodoc; third-party documenters such as autointerface's
# only take part through the legacy class-based implementation.
autodoc_use_legacy_class_based = True
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "description"

# No intersphinx: CI has no network, and an unreachable inventory is a warning,
# which -W turns into a failure.

# Warnings are errors (make docs uses -W). Suppress nothing by default; add a
# specific type here only with a comment saying why it cannot be fixed.
suppress_warnings: list[str] = []

html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {
    "description": "Durable, transactional background jobs for ZODB",
    "fixed_sidebar": True,
}


class ZConfigLexer(ApacheConfLexer):
    """ZConfig files: zope.conf, a ZEO server's configuration, the ZODB
    configuration files of ``zasync --zodb-conf``. Apache's sections and
    keys, plus the ``%import``, ``%define`` and ``%include`` directives that
    Pygments' apacheconf lexer stops at (a highlighting failure, which -W
    makes an error)."""

    name = "ZConfig"
    aliases = ["zconfig"]
    tokens = {
        "root": [
            (
                r"^([ \t]*)(%(?:import|define|include))\b(.*)$",
                bygroups(Text, Comment.Preproc, Name.Constant),
            ),
            inherit,
        ]
    }


def setup(app):
    # ```zconfig, and ```apacheconf too: every apacheconf block of these
    # docs is a ZConfig file (see tests/docs/docexamples.py).
    app.add_lexer("zconfig", ZConfigLexer)
    app.add_lexer("apacheconf", ZConfigLexer)
