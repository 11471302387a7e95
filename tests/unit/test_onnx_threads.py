"""The extraction models' ONNX sessions do not spin, and the layout model loads when a page needs
it (pagemill.pdf.onnx_threads, pagemill.pdf.layout_model)."""

from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime
import pytest

from pagemill.onnx_threads import QuietSessionOptions, sessions_without_spinning

# Run in a new interpreter: which sessions exist, and when pymupdf was imported, is per process.
EXTRACTION = """
import gc, json, sys
{first}
import pagemill.pipeline.extract_batch
import onnxruntime, pymupdf
from pagemill.pdf.markdown import page_markdown
from pagemill.pdf.ocr import rapidocr_engine
from pagemill_tools.sample import add_text_grid
loaded_at_import = callable(pymupdf._get_layout)
doc = pymupdf.open()
add_text_grid(doc.new_page())
markdown = page_markdown(doc, [0], set(), "legacy")[0]  # an unruled table: the layout model reads it
rapidocr_engine()
sessions = [s for s in gc.get_objects() if isinstance(s, onnxruntime.InferenceSession)]
print(json.dumps({{
    "loaded_at_import": loaded_at_import,
    "table": "|" in markdown and "cell53" in markdown,
    "sessions": sorted((str(s._model_path).rsplit("/", 1)[-1], type(s._sess_options_initial).__name__)
                       for s in sessions),
}}))
"""


@pytest.mark.parametrize("first", ["", "import pymupdf"], ids=["pagemill-first", "pymupdf-first"])
def test_every_extraction_model_session_sleeps_when_idle(first: str) -> None:
    # GIVEN a worker process that imports the extraction code (or, as a script may, pymupdf before it)
    # WHEN a page goes through the layout model and the OCR engine is made
    out = subprocess.run([sys.executable, "-c", EXTRACTION.format(first=first)],
                         check=True, capture_output=True, text=True).stdout
    got = json.loads(out.splitlines()[-1])
    # THEN the layout model was loaded by the page that needed it, not by the import (when pagemill
    # came first), and every session in the process, layout and OCR, has options that do not spin
    assert got["loaded_at_import"] is bool(first)
    assert got["table"]
    names = [name for name, _ in got["sessions"]]
    assert any("layout" in name for name in names) and any("det" in name for name in names), names
    assert any("rec" in name for name in names), names
    assert {options for _, options in got["sessions"]} == {"QuietSessionOptions"}


def test_quiet_options_turn_spinning_off_and_the_names_come_back() -> None:
    original = onnxruntime.SessionOptions
    with pytest.raises(RuntimeError), sessions_without_spinning():
        made = onnxruntime.SessionOptions()
        raise RuntimeError("a model that fails to load")
    assert isinstance(made, QuietSessionOptions)
    assert made.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert onnxruntime.SessionOptions is original


def test_a_caller_of_pymupdf4llm_can_still_turn_its_layout_mode_on() -> None:
    # GIVEN a process where pagemill imported pymupdf (Plan's modules) with the model deferred
    # WHEN something imports pymupdf4llm itself and asks for its layout mode
    code = ("import json, pagemill.pipeline.plan, pymupdf, pymupdf4llm; "
            "deferred = not callable(pymupdf._get_layout); pymupdf4llm.use_layout(True); "
            "print(json.dumps([deferred, callable(pymupdf._get_layout)]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    # THEN the import had skipped the model, and the mode loads it as pymupdf4llm would
    assert json.loads(out.splitlines()[-1]) == [True, True]
