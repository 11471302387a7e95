"""PyMuPDF's layout model: loaded when a page first needs it, with sessions that do not spin,
and pymupdf4llm's process-global switch between it and legacy mode.

PyMuPDF 2.0 imports ``pymupdf.layout`` with itself (and pymupdf4llm imports it again), and that
import loads the layout model's ONNX sessions: 0.4 s of CPU and 50 MB in every process that
imports pymupdf, Plan's and every extraction worker's, though most documents never reach the
model. Those two imports fail (layout_deferral), and ``analyser`` imports the package for real
on the first page that needs it, its sessions made without spinning (see onnx_threads).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

import pymupdf
import pymupdf4llm

from pagemill.onnx_threads import sessions_without_spinning
from pagemill.pdf.layout_deferral import LAYOUT_PACKAGE


def use_mode(mode: str) -> None:
    """Switch pymupdf4llm to "layout" or "legacy". Turning layout off drops the loaded model
    (which turning it on would load again, about half a second of CPU): the analyser is loaded
    once and handed back each time."""
    want_layout = mode == "layout"
    if want_layout:
        pymupdf._get_layout = analyser()  # use_layout's activate() keeps an analyser it finds
    if pymupdf4llm._use_layout != want_layout:
        pymupdf4llm.use_layout(want_layout)


@cache
def analyser() -> Callable[..., Any]:
    """The layout model's page analyser (what ``pymupdf._get_layout`` holds while layout mode is
    on), loaded once per process."""
    # A process that imported pymupdf before pagemill has a model already, spinning: load again.
    pymupdf._get_layout = None
    with sessions_without_spinning():
        importlib.import_module(LAYOUT_PACKAGE).activate()  # a first import activates it already
    assert callable(pymupdf._get_layout)
    return pymupdf._get_layout
