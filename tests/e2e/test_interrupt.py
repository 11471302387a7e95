"""Stopping a real `pagemill run` process: Ctrl-C and SIGTERM stop it (documents cancelled, exit
130, no worker left), a second Ctrl-C exits at once, and a run killed with SIGKILL takes its
workers with it and leaves its document `interrupted`, which a new run processes cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest

from pagemill.errors import NotRunning
from pagemill.pipeline.context import document_id_for, file_sha256
from tests.e2e.conftest import ROOT
from tests.e2e.test_cli import PAGEMILL, pagemill
from tests.e2e.test_operate import text_pdf, wait_for

pytestmark = pytest.mark.heavy(130)

# Generous: "does not hang", not a speed requirement (the machine may be busy).
EXIT_TIMEOUT_S = 60


@dataclass
class LiveRun:
    process: subprocess.Popen[bytes]
    document_id: str
    workers: list[psutil.Process]
    output: Path

    def signal(self, signum: int, *, group: bool = False) -> float:
        """Send ``signum`` (to the process group, as a terminal's Ctrl-C does, when ``group``);
        return when."""
        sent = time.monotonic()
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        return sent

    def exit_code(self) -> int:
        return self.process.wait(timeout=EXIT_TIMEOUT_S)

    def workers_left(self) -> list[int]:
        """The engine's child processes still alive (zombies are dead), after a grace period."""
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while True:
            left = [w.pid for w in self.workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


@pytest.fixture
def long_pdf(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    # Each test its own content (its own document), about 300 pages: several seconds of work.
    return text_pdf(tmp_path / "long.pdf", pages=300, words=request.node.name)


@pytest.fixture
def start_run(tmp_path: Path, module_database_url: str, engine_home: Path) -> Iterator:
    started: list[LiveRun] = []

    def start(pdf: Path) -> LiveRun:
        document_id = document_id_for(file_sha256(pdf))
        output = tmp_path / f"run-{len(started)}.log"
        env = {**os.environ, "PAGEMILL_HOME": str(engine_home)}
        process = subprocess.Popen(
            [*PAGEMILL, "run", str(pdf), "--workers", "2", "--out", str(tmp_path / "out"), "--database-url",
             module_database_url],
            env=env, cwd=ROOT, stdout=output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        run = LiveRun(process, document_id, [], output)
        started.append(run)
        with psycopg.connect(module_database_url, autocommit=True) as db:
            # Mid-extraction: pages done, the workers busy.
            wait_for(lambda: _pages_done(db, document_id, process.pid) > 0, "pages to be extracted", timeout_s=300)
        run.workers = psutil.Process(process.pid).children(recursive=True)
        assert run.workers, "the engine started no worker process"
        return run

    yield start
    for run in started:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()


def _pages_done(db: psycopg.Connection, document_id: str, pid: int) -> int:
    row = db.execute("select pages_done from local_runs where document_id = %s and pid = %s",
                     (document_id, pid)).fetchone()
    return row[0] if row else 0


def _status(document_id: str, url: str, home: Path) -> dict:
    result = pagemill("status", document_id, "--json", "--database-url", url, home=home)
    return json.loads(result.stdout)


def _rows(db: psycopg.Connection, document_id: str) -> tuple[int, int]:
    return db.execute(
        "select (select count(*) from pages where document_id = %(d)s), (select count(*) from chunks where document_id = %(d)s)",
        {"d": document_id},
    ).fetchone()


@pytest.mark.parametrize(("signum", "group", "reason"), [
    (signal.SIGINT, True, "interrupted (Ctrl-C)"),  # Ctrl-C in a terminal: the whole process group
    (signal.SIGTERM, False, "interrupted (SIGTERM)"),  # a supervisor stopping the engine process
])
def test_ctrl_c_and_sigterm_stop_the_run_and_cancel_its_document(
    start_run, long_pdf: Path, db: psycopg.Connection, module_database_url: str, engine_home: Path,
    signum: int, group: bool, reason: str,
) -> None:
    # GIVEN `pagemill run` of a 300-page PDF, mid-extraction
    run = start_run(long_pdf)
    # WHEN it gets the signal
    sent = run.signal(signum, group=group)
    code = run.exit_code()
    seconds = time.monotonic() - sent
    # THEN it exits 130, says so, and leaves no worker process
    assert code == 130, run.output.read_text()
    assert reason in run.output.read_text()
    assert run.workers_left() == []
    # AND the document is cancelled with the reason, with no rows half-written
    status = _status(run.document_id, module_database_url, engine_home)
    assert (status["status"], status["error_class"], status["error"]) == ("cancelled", "Cancelled", reason)
    assert _rows(db, run.document_id) == (0, 0)
    print(f"{signal.Signals(signum).name} to exit: {seconds:.2f} s")  # for the record (-s), not asserted


def test_a_second_ctrl_c_exits_at_once(
    start_run, long_pdf: Path, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN a run mid-extraction
    run = start_run(long_pdf)
    # WHEN Ctrl-C is pressed twice in a row
    run.signal(signal.SIGINT, group=True)
    run.signal(signal.SIGINT, group=True)
    # THEN it exits 130 and its workers follow it
    assert run.exit_code() == 130, run.output.read_text()
    assert run.workers_left() == []
    # AND its document is not left running: cancelled if the first Ctrl-C got that far, else interrupted
    status = _status(run.document_id, module_database_url, engine_home)
    assert status["status"] in ("cancelled", "interrupted"), status


def test_a_killed_run_takes_its_workers_along_and_its_document_reads_interrupted(
    start_run, long_pdf: Path, db: psycopg.Connection, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN a run mid-extraction
    run = start_run(long_pdf)
    # WHEN the engine process alone is killed (kill -9, the OOM killer)
    run.signal(signal.SIGKILL)
    assert run.exit_code() == -signal.SIGKILL
    # THEN its worker processes exit too
    assert run.workers_left() == []
    # AND `pagemill status` shows the document interrupted (the run is gone), never running, and
    # says how to run it again
    status = _status(run.document_id, module_database_url, engine_home)
    assert (status["status"], status["error_class"]) == ("interrupted", "Interrupted"), status
    assert f"pid {run.process.pid}" in status["error"]
    assert f"pagemill redrive {run.document_id}" in status["note"]
    # AND `pagemill redrive` runs it again cleanly: succeeded, each page once
    again = pagemill("redrive", run.document_id, "--json", "--workers", "2", "--out", str(run.output.parent / "out"),
                     "--database-url", module_database_url, home=engine_home)
    assert again.returncode == 0, again.stderr
    [report] = json.loads(again.stdout)
    assert (report["status"], report["pages"]) == ("succeeded", 300)
    assert db.execute("select count(*), count(distinct page_no) from pages where document_id = %s",
                      (run.document_id,)).fetchone() == (300, 300)


def test_a_lapsed_lease_marks_the_document_interrupted(db: psycopg.Connection, tmp_path: Path) -> None:
    """Another host's run cannot be checked by pid: its lease is what tells."""
    from pagemill.db import documents
    from pagemill.records import SourceObject
    from pagemill_tools.engine import local_runs
    from pagemill_tools.operate import local

    # GIVEN a document running under a run on another host whose lease has lapsed
    source = SourceObject(bucket="b", key="uploads/lease.pdf", version_id="v1")
    documents.register_document(db, document_id="e" * 32, sha256="e" * 64, size_bytes=1, source=source,
                                execution_arn="arn:lease")
    local_runs.record_run(db, execution_arn="arn:lease", document_id="e" * 32, path=str(tmp_path / "lease.pdf"),
                          host="elsewhere", pid=1, status="RUNNING")
    assert local.status(db, "e" * 32).status == "running"  # the lease is fresh
    db.execute("update local_runs set lease_until = now() - interval '1 second' where execution_arn = 'arn:lease'")
    # WHEN anyone asks for its status
    # THEN it is interrupted
    shown = local.status(db, "e" * 32)
    assert (shown.status, shown.error_class) == ("interrupted", "Interrupted")
    assert "pid 1 on elsewhere" in shown.error
    # AND it is not running, so there is nothing to cancel
    with pytest.raises(NotRunning):
        local.cancel(db, "e" * 32, "too late")
