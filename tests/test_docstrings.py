"""Every public function and class documents itself: an ``Example`` section with a ``>>>``
line (run as a doctest by ``python -m pytest``) and, for functions, a ``Returns`` section.

``MISSING`` lists the sections that are known to be absent today. The test asserts that it
is *exactly* the set of missing sections, so adding an example means removing its entry.
"""

from __future__ import annotations

import inspect
import re

import pytest

import torch_artic
import torch_artic.testing

MODULES = (torch_artic, torch_artic.testing)

EXAMPLE = ("Example", "Examples")
RETURNS = ("Returns", "Yields")  # a generator / context manager documents what it yields

# (public name, section) pairs known to be absent; remove an entry when it is written.
MISSING: set[tuple[str, str]] = set()


def public_objects():
    """``(qualified public name, object)`` for every function and class in the public API
    (``__version__`` and other data are not documented by a docstring of their own)."""
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isroutine(obj):
                yield f"{module.__name__}.{name}", obj


def section(doc: str, headers: tuple[str, ...]) -> list[str] | None:
    """The lines of the Google-style section headed ``<header>:`` (any of ``headers``),
    up to the next line indented no deeper than the header; ``None`` if there is none."""
    lines = doc.splitlines()
    names = "|".join(map(re.escape, headers))
    pattern = re.compile(rf"^(\s*)(?:{names}):\s*$")
    for i, line in enumerate(lines):
        match = pattern.match(line)
        if match is None:
            continue
        indent = len(match.group(1))
        body = []
        for line2 in lines[i + 1 :]:
            if line2.strip() and len(line2) - len(line2.lstrip()) <= indent:
                break
            body.append(line2)
        return body
    return None


def missing_sections(name: str, obj) -> set[tuple[str, str]]:
    doc = inspect.getdoc(obj) or ""
    missing = set()
    example = section(doc, EXAMPLE)
    if example is None or not any(line.lstrip().startswith(">>>") for line in example):
        missing.add((name, "Example"))
    if not inspect.isclass(obj) and section(doc, RETURNS) is None:
        missing.add((name, "Returns"))
    return missing


def test_public_names_resolve():
    for module in MODULES:
        assert len(set(module.__all__)) == len(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name!r}"


@pytest.mark.parametrize("name", [name for name, _ in public_objects()])
def test_docstring_has_summary(name):
    doc = inspect.getdoc(dict(public_objects())[name])
    assert doc and doc.splitlines()[0].strip(), f"{name} has no docstring summary line"


def test_docstring_sections():
    found = set()
    for name, obj in public_objects():
        found |= missing_sections(name, obj)
    new = sorted(found - MISSING)
    fixed = sorted(MISSING - found)
    assert not new, (
        "public names lacking a docstring section (add an `Example:` with a `>>>` line "
        f"and/or a `Returns:` section): {new}"
    )
    assert not fixed, f"these sections exist now: remove them from MISSING in {__file__}: {fixed}"


def test_section_parser():
    doc = "Summary.\n\nArgs:\n    x: a thing.\n\nReturns:\n    y.\n\nExample:\n    >>> 1\n    1\n"
    assert section(doc, RETURNS) == ["    y.", ""]
    assert any(">>>" in line for line in section(doc, EXAMPLE))
    assert section("Summary.\n\nExample::\n\n    f(x)\n", EXAMPLE) is None
    assert missing_sections("f", lambda: None) == {("f", "Example"), ("f", "Returns")}
