"""Keeps PyMuPDF's layout model from loading at import (see pagemill.pdf.layout_model).

PyMuPDF 2.0 imports ``pymupdf.layout`` while pymupdf itself is imported, pymupdf4llm imports it
again while it is imported, and that import loads the layout model: 0.4 s of CPU and 50 MB in
every process that imports pymupdf. The finder installed here fails those two imports, made
while pymupdf or pymupdf4llm is being initialized, with ImportError (both take the package for
not installed and go on); any later import of it, layout_model's or a caller's of
``pymupdf4llm.use_layout(True)``, goes through. No pymupdf import here: pagemill's package init
installs it before any pagemill module imports pymupdf.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

LAYOUT_PACKAGE = "pymupdf.layout"
_IMPORTERS = ("pymupdf", "pymupdf4llm")


class _ImportTimeLayoutDeferral(MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname == LAYOUT_PACKAGE and any(_initializing(name) for name in _IMPORTERS):
            raise ImportError(f"{LAYOUT_PACKAGE} is loaded by pagemill when a page first needs it")
        return None


def _initializing(name: str) -> bool:
    # importlib marks a module's spec while its body runs (``_initializing``; CPython since 3.4).
    module = sys.modules.get(name)
    return module is not None and getattr(module.__spec__, "_initializing", False)


def install() -> None:
    """Only if pymupdf is not imported yet (then its model is loaded already)."""
    if "pymupdf" not in sys.modules:
        sys.meta_path.insert(0, _ImportTimeLayoutDeferral())
