"""Ctrl-C and SIGTERM during a local run.

While the engine watches its executions, the first signal asks it to stop them: it marks their
documents cancelled ("interrupted (Ctrl-C)"), stops the executions, ends its worker processes and
returns, and the command exits 130. A second signal exits at once (the workers follow their
parent: ``parent_watch``; documents left running are marked interrupted once the run's lease
lapses). Before and after the watch, a signal interrupts as Python's default does.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from pagemill_tools.exit_codes import INTERRUPTED

_REASONS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "interrupted (SIGTERM)"}


class StopRequest:
    """Set by a signal; the engine's watch loop reads it (``armed`` while it watches)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.armed = threading.Event()

    @contextmanager
    def watching(self) -> Iterator[None]:
        self.armed.set()
        try:
            yield
        finally:
            self.armed.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.reason is not None:
            os._exit(INTERRUPTED)
        if not self.armed.is_set():
            raise KeyboardInterrupt
        self.reason = _REASONS.get(signal.Signals(signum), f"interrupted (signal {signum})")


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to a StopRequest for the duration (main thread only)."""
    request = StopRequest()
    previous = {signum: signal.signal(signum, request._on_signal) for signum in _REASONS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
