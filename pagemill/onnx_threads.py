"""ONNX Runtime sessions whose idle threads sleep instead of spinning.

By default a session's intra-op threads spin for a while after each parallel section, waiting
for more work. The models that extraction runs through libraries (pymupdf's layout model,
RapidOCR) alternate short ONNX runs with Python work, so the spinning threads burn a core the
Python thread or another worker wants: on 2 cores, six dpr-paper pages through the layout model
took 3.0 s of CPU for 1.7 s of wall, and 2.0 s of CPU for 1.5 s of wall without spinning (the
same markdown). Those libraries build their sessions' options themselves, with
``onnxruntime.SessionOptions()``; within ``sessions_without_spinning`` that name gives options
that do not spin. The CLIP worker makes its own (pagemill.clip.model).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import onnxruntime

ALLOW_SPINNING = "session.intra_op.allow_spinning"


class QuietSessionOptions(onnxruntime.SessionOptions):
    """Session options whose intra-op threads sleep when they run out of work."""

    def __init__(self) -> None:
        super().__init__()
        self.add_session_config_entry(ALLOW_SPINNING, "0")


@contextmanager
def sessions_without_spinning(*bound: ModuleType) -> Iterator[None]:
    """Sessions made in this block with ``onnxruntime.SessionOptions()``, or with the name
    ``SessionOptions`` of a module in ``bound`` (one that imported it from onnxruntime), get
    QuietSessionOptions. Models load in the worker's one extraction thread, so swapping the names
    for the block is safe; a session made before keeps its options."""
    holders = [onnxruntime, *bound]
    originals = [holder.SessionOptions for holder in holders]
    for holder in holders:
        holder.SessionOptions = QuietSessionOptions
    try:
        yield
    finally:
        for holder, original in zip(holders, originals, strict=True):
            holder.SessionOptions = original
