"""The local engine's record of its runs in PostgreSQL, the one place other processes look:
``pagemill status`` reads the progress and the leases written here (a lapsed lease: the engine is
gone), ``pagemill cancel`` writes the cancellations read here, and ``pagemill redrive`` finds the
file a document came from."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pagemill.db import documents
from pagemill.db.connect import connect
from pagemill.errors import DatabaseUnavailable
from pagemill.operate.progress import current_state, read_history
from pagemill.records import SourceObject
from pagemill_tools.engine import local_runs

log = logging.getLogger(__name__)

# Progress is written at most this often per run (and always at the end): cheap for many runs.
WRITE_EVERY_S = 1.0
# After the database failed, bookkeeping waits this long before trying again.
RETRY_AFTER_S = 5.0
_FAILED = object()


@dataclass
class DocumentRun:
    """One input file's journey through the local pipeline."""

    path: Path
    source: SourceObject
    document_id: str
    execution_arn: str
    page_count: int | None = None
    pages_done: int = 0
    status: str = "RUNNING"  # the execution's status
    started_at: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    # The execution's error and cause once it ended FAILED (what the status-change event carries).
    error: str | None = None
    cause: str | None = None


class RunBook:
    def __init__(self, database_url: str, sfn: Any) -> None:
        self._url = database_url
        self._sfn = sfn
        self._conn: Any = None
        self._written: dict[str, tuple[float, tuple[Any, ...]]] = {}
        # Ended runs whose end could not be written (database away): tried again at close.
        self._unfinished: dict[str, Callable[[Any], Any]] = {}
        self._retry_at = 0.0

    def submitted(self, run: DocumentRun) -> None:
        recorded = self._safely(
            "record the run",
            lambda conn: local_runs.record_run(
                conn, execution_arn=run.execution_arn, document_id=run.document_id, path=str(run.path.resolve()),
                host=socket.gethostname(), pid=os.getpid(), status=run.status,
            ),
        )
        if recorded is not _FAILED:
            # Its progress is first written a while after this: a small document's run is over
            # before then, and then only its end is written (reading an execution's history for
            # its current state and writing it cost a one-page document a fifth of the engine's CPU).
            self._written[run.execution_arn] = (time.monotonic(), (run.status, run.page_count, run.pages_done))

    def observed(self, run: DocumentRun, *, terminal: bool) -> None:
        seen = (run.status, run.page_count, run.pages_done)
        last_at, last_seen = self._written.get(run.execution_arn, (0.0, None))
        now = time.monotonic()
        if seen == last_seen or (not terminal and now - last_at < WRITE_EVERY_S):
            return
        # A finished run has no current state (`pagemill status` shows one for live runs only).
        state = None if terminal else current_state(read_history(self._sfn, run.execution_arn))

        def record(conn: Any) -> None:
            local_runs.update_run(
                conn, run.execution_arn, status=run.status, current_state=state, page_count=run.page_count,
                pages_done=run.pages_done,
            )

        if self._safely("record progress", record) is not _FAILED:
            self._written[run.execution_arn] = (now, seen)
            self._unfinished.pop(run.execution_arn, None)
        elif terminal:
            # The run leaves the engine's watch now: its end is written at close, if not before.
            self._unfinished[run.execution_arn] = record

    def page_count(self, document_id: str) -> int | None:
        """The document's pages (None when unknown, or with the database away)."""
        found = self._safely("read a page count", lambda conn: documents.page_count(conn, document_id))
        return None if found is _FAILED else found

    def heartbeat(self, execution_arns: list[str]) -> dict[str, str]:
        """Renew the leases of the runs the engine still watches; return those of them that
        were cancelled (``pagemill cancel`` from another process) and why."""
        if not execution_arns:
            return {}

        def beat(conn: Any) -> dict[str, str]:
            local_runs.renew_leases(conn, execution_arns)
            return local_runs.cancellation_reasons(conn, execution_arns)

        found = self._safely("renew leases and read cancellations", beat)
        return {} if found is _FAILED else found

    def cancel(self, execution_arn: str, reason: str) -> None:
        """Mark the execution's running document cancelled (a Write in flight then commits first
        or not at all: pagemill.db.documents.cancel_execution)."""
        self._safely("cancel a run", lambda conn: documents.cancel_execution(conn, execution_arn, reason))

    def close(self) -> None:
        if self._unfinished:
            self._retry_at = 0.0
            for arn, record in list(self._unfinished.items()):
                if self._safely("record the end of a run", record) is _FAILED:
                    break
                del self._unfinished[arn]
        if self._conn is not None:
            self._conn.close()

    def _safely(self, what: str, action: Callable[[Any], Any]) -> Any:
        # Bookkeeping must not fail or slow a run: with the database away the pipeline's own
        # retries decide the documents' fate, and this record catches up once it is back (an
        # ended run's record at the latest when the engine closes).
        if time.monotonic() < self._retry_at:
            return _FAILED
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self._url, autocommit=True)
            return action(self._conn)
        except DatabaseUnavailable as exc:
            log.warning("run bookkeeping skipped", extra={"action": what, "error": str(exc)})
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            return _FAILED
