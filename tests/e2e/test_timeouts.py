"""A function that runs past its timeout: the local runtime kills it as Lambda does
(Sandbox.Timedout), the state machine retries it with backoff, and when every try has timed out
the Catch records the document as failed with a reason, never leaving it running."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.sample import make_catalog
from tests.e2e.test_pipeline import counts, document, run_all

SHORT_TIMEOUT_S = 2.0
WRITE_TRIES = 3  # the first and the two crash retries


def test_write_past_its_timeout_is_killed_retried_then_recorded_as_failed(
    engine: LocalEngine, db, module_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = engine.runtime
    assert runtime is not None
    # GIVEN Write is deployed with a 2-second timeout
    (name, spec), = [(n, s) for n, s in runtime.functions.items() if s.handler == "handler.write"]
    monkeypatch.setitem(runtime.functions, name, replace(spec, timeout_s=SHORT_TIMEOUT_S))
    path = tmp_path / "slow-write.pdf"
    make_catalog(path, pages=6, seed=7)
    # AND the pages table is locked by another session while Write runs, so each try waits on it
    # past its timeout; the lock goes once every try has been killed (RecordFailure needs it too)
    blocker = psycopg.connect(module_database_url)
    blocker.execute("lock table pages in access exclusive mode")
    released = threading.Event()

    def release_after_the_last_write() -> None:
        while not released.wait(0.1):
            if sum(1 for fn, _, _ in runtime.invocations if fn == name) >= WRITE_TRIES:
                blocker.rollback()
                released.set()

    watcher = threading.Thread(target=release_after_the_last_write, daemon=True)
    watcher.start()
    try:
        # WHEN the document goes through
        (run,) = run_all(engine, [path])
    finally:
        released.set()
        watcher.join()
        blocker.close()
    # THEN each try of Write was killed at its timeout
    writes = [error for fn, _, error in runtime.invocations if fn == name]
    assert writes == ["Sandbox.Timedout"] * WRITE_TRIES
    # AND the execution ended through RecordFailure: failed, with a reason a person understands
    assert run.status == "FAILED"
    assert engine.visited_states(run.execution_arn)[-3:] == ["Write", "RecordFailure", "DocumentFailed"]
    row = document(db, run.document_id)
    assert row["status"] == "failed"
    assert (row["failed_state"], row["error_class"]) == ("Write", "Sandbox.Timedout")
    assert row["error"] == "Write did not finish in time (Sandbox.Timedout); it was retried and gave up"
    # AND no partial write survived the killed transactions
    assert counts(db, run.document_id) == (0, 0, 0)


def test_a_one_batch_document_whose_batch_never_finishes_fails_naming_the_state(
    engine: LocalEngine, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = engine.runtime
    assert runtime is not None
    # GIVEN ExtractBatch deployed with a timeout no batch can meet
    (name, spec), = [(n, s) for n, s in runtime.functions.items() if s.handler == "handler.extract_batch"]
    monkeypatch.setitem(runtime.functions, name, replace(spec, timeout_s=0.001))
    path = tmp_path / "two-pages.pdf"
    make_catalog(path, pages=2, seed=8)
    before = len(runtime.invocations)
    # WHEN a document of one batch goes through
    (run,) = run_all(engine, [path])
    # THEN its batch ran outside any map, was retried, and the failure names that state and why
    assert run.status == "FAILED"
    assert engine.visited_states(run.execution_arn)[-3:] == ["ExtractOnlyBatch", "RecordFailure", "DocumentFailed"]
    assert [error for fn, _, error in runtime.invocations[before:] if fn == name] == ["Sandbox.Timedout"] * 3
    row = document(db, run.document_id)
    assert (row["status"], row["failed_state"], row["error_class"]) == ("failed", "ExtractOnlyBatch", "Sandbox.Timedout")
    assert row["error"] == "ExtractOnlyBatch did not finish in time (Sandbox.Timedout); it was retried and gave up"
