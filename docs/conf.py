"""Sphinx configuration of the torch-artic docs (``sphinx-build -W -b html docs out``)."""

import importlib
import inspect
import os
import sys

from sphinx.util.docutils import SphinxDirective

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
    # MathJax bundled with the build (copied to _static/mathjax/; its SVG output is chosen
    # in setup() below): the maths renders offline, behind a firewall and in a packaged
    # copy of the docs, not only with a CDN. tests/test_docs_browser.py checks it.
    "sphinx-mathjax-offline",
]
myst_enable_extensions = ["dollarmath", "amsmath"]
# The bundled MathJax is version 3: load its `textmacros` package (from the bundle) so
# that macros inside \text{...}/\texttt{...} (e.g. ``\_``) typeset as they do in LaTeX.
mathjax3_config = {
    "loader": {"load": ["[tex]/textmacros"]},
    "tex": {"packages": {"[+]": ["textmacros"]}},
}
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


# --- The API index (docs/api.md): generated from the package at build time --------------

API_MODULES = ("torch_artic", "torch_artic.testing")


def _summary(name: str, obj) -> str:
    """The first paragraph of ``obj``'s docstring, as one line of reST."""
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        if name == "__version__":
            return f"The version of torch-artic (``{obj}``)."
        return f"``{obj!r}``"
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


class ApiIndexDirective(SphinxDirective):
    """``api-index <module>``: a table of every name in ``<module>.__all__`` with the
    first paragraph of its docstring, each name linked to where it is documented."""

    required_arguments = 1

    def run(self):
        module = importlib.import_module(self.arguments[0])
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", ""]
        lines += ["   * - name", "     - summary"]
        for name in sorted(module.__all__, key=lambda n: (n.lstrip("_").lower(), n)):
            obj = getattr(module, name)
            target = f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                ref = f":py:class:`{name} <{target}>`"
            elif inspect.isroutine(obj):
                ref = f":py:func:`{name} <{target}>`"
            else:
                ref = f"``{name}``"
            source = getattr(sys.modules.get(getattr(obj, "__module__", "")), "__file__", None)
            if source:  # re-read this page when the documented code changes
                self.env.note_dependency(source)
            lines += [f"   * - {ref}", f"     - {_summary(name, obj)}"]
        text = "\n".join(lines)
        if str(self.env.doc2path(self.env.docname)).endswith(".md"):  # MyST: a reST block
            text = f"```{{eval-rst}}\n{text}\n```"
        return self.parse_text_to_nodes(text)


def _public_object(target: str):
    """The object that a public name (``torch_artic.X``, ``torch_artic.testing.X``) names."""
    module_name, _, name = target.rpartition(".")
    if module_name not in API_MODULES:
        return None
    module = importlib.import_module(module_name)
    return getattr(module, name, None) if name in getattr(module, "__all__", ()) else None


def _resolve_public_name(app, env, node, contnode):
    """Resolve a reference to a public name (``torch_artic.pixel_grid``) to where the
    object is documented under its defining module (``torch_artic.coords.pixel_grid``)."""
    if node.get("refdomain") != "py":
        return None
    obj = _public_object(node.get("reftarget", ""))
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not (module and qualname) or f"{module}.{qualname}" == node["reftarget"]:
        return None
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], f"{module}.{qualname}", node, contnode
    )


def _viewcode_backlink_anchors(app, doctree, docname):
    """Give each documented object the anchor that viewcode's "[docs]" links point to.

    viewcode links a module's highlighted source back to ``#<name>.<object>``, where
    ``<name>`` is the module name under which the *first* object of that module was
    documented. Objects of the same module documented under another name
    (``torch_artic.soft_argmax2d`` vs ``torch_artic.soft_argmax.SoftArgmax2dResult``) would
    get a backlink to an anchor that does not exist; this adds it as a second id.
    """
    modules = getattr(app.env, "_viewcode_modules", None)
    if not isinstance(modules, dict):
        return
    from sphinx import addnodes
    from sphinx.ext.viewcode import _get_full_modname

    for signature in doctree.findall(addnodes.desc_signature):
        module, fullname = signature.get("module"), signature.get("fullname")
        if not (module and fullname):
            continue
        entry = modules.get(_get_full_modname(module, fullname) or "")
        if not (isinstance(entry, tuple) and len(entry) == 4):
            continue
        alias = f"{entry[3]}.{fullname}"
        if alias not in signature["ids"] and alias not in doctree.ids:
            signature["ids"].append(alias)
            doctree.ids[alias] = signature


def setup(app):
    # the bundled MathJax's SVG output (sphinx-mathjax-offline sets up its CHTML output):
    # it needs no web fonts, so nothing more is loaded from file://, and its boxes are
    # exact (CHTML's tall `cases` braces overflow and show a stray scrollbar)
    app.config.mathjax_path = "mathjax/tex-svg.js"
    app.add_directive("api-index", ApiIndexDirective)
    app.connect("missing-reference", _resolve_public_name)
    app.connect("doctree-resolved", _viewcode_backlink_anchors)
    return {"parallel_read_safe": True}
