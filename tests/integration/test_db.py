"""The database layer against a real PostgreSQL with pgvector: migrations, status bookkeeping,
the Write stage's COPY, and connection failures."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pagemill.db.connect import connect
from pagemill.db.documents import (
    document_for_source,
    get_document,
    record_failure,
    register_document,
)
from pagemill.db.migrate import migrate, migrations
from pagemill.db.write import write_document
from pagemill.errors import DatabaseUnavailable, InternalError
from pagemill.payloads import ExecutionEnded
from pagemill.pipeline.settle import settle_ended_execution
from pagemill.records import (
    BatchResult,
    ChunkRecord,
    ImageOccurrence,
    PageRecord,
    SourceObject,
)
from pagemill_tools import embedded_db as embedded

ROOT = Path(__file__).resolve().parents[2]
DOC = "0123456789abcdef0123456789abcdef"
SHA = DOC + "0" * 32
SOURCE = SourceObject(bucket="uploads", key="uploads/catalog.pdf", version_id="v1")


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(database_url) as c:
        yield c


def register(conn: psycopg.Connection[Any], source: SourceObject = SOURCE, arn: str = "arn:exec:1") -> Any:
    return register_document(conn, document_id=DOC, sha256=SHA, size_bytes=1234, source=source, execution_arn=arn)


def fail(conn: psycopg.Connection[Any], **overrides: Any) -> bool:
    args: dict[str, Any] = dict(
        document_id=DOC, sha256=SHA, size_bytes=1234, source=SOURCE, error_class="EncryptedPdf",
        error="The PDF is encrypted.", cause='{"errorMessage": "The PDF is encrypted."}', failed_state="Plan",
        execution_arn="arn:exec:2",
    )
    return record_failure(conn, **{**args, **overrides})


def logo(page_no: int) -> ImageOccurrence:
    return ImageOccurrence(
        sha256="logo", page_no=page_no, bbox=(10.0, 10.0, 60.0, 30.0), width=200, height=80, ext="png",
        s3_key=f"images/{DOC}/logo.png", size_bytes=4000,
    )


def batch(
    batch_no: int, first: int, last: int, *, chunks: int = 2, extra_images: tuple[ImageOccurrence, ...] = ()
) -> BatchResult:
    pages = list(range(first, last + 1))
    return BatchResult(
        document_id=DOC, batch_no=batch_no, first_page=first, last_page=last, seconds=0.1,
        pages=[PageRecord(p, f"# page {p}", 8, 595.0, 842.0, image_count=1) for p in pages],
        chunks=[ChunkRecord(n, first, last, f"chunk {n} of pages {first}-{last} " + "x" * 1000) for n in range(chunks)],
        images=[logo(p) for p in pages] + list(extra_images),
    )


def two_batches() -> list[BatchResult]:
    photo = ImageOccurrence("photo", 5, (1.0, 2.0, 3.0, 4.0), 640, 480, "jpeg", f"images/{DOC}/photo.jpeg", 90_000)
    return [batch(0, 1, 3, chunks=3), batch(1, 4, 6, chunks=2, extra_images=(photo,))]


def rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    with conn.transaction():
        return conn.execute(query, (DOC,)).fetchall()


# --- migrations ----------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(empty_database_url: str) -> None:
    # GIVEN an empty database
    versions = [m.version for m in migrations()]
    # WHEN migrating twice
    first, second = migrate(empty_database_url), migrate(empty_database_url)
    # THEN every version is applied by the first call only, and recorded with its name
    assert first == versions and second == []
    with connect(empty_database_url) as conn:
        recorded = conn.execute("select version, name from schema_migrations order by version").fetchall()
        assert recorded == [(m.version, m.name) for m in migrations()]
        assert conn.execute("select extname from pg_extension where extname = 'vector'").fetchone() == ("vector",)
        # one HNSW index, for image search (0002)
        assert conn.execute("select count(*) from pg_indexes where indexdef ilike '%hnsw%'").fetchone() == (1,)


def test_concurrent_migrations_apply_each_version_exactly_once(empty_database_url: str) -> None:
    # GIVEN four workers starting at the same moment on an empty database
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(migrate(empty_database_url))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    # WHEN they all migrate
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN each version was applied by exactly one of them
    applied = sorted(v for r in results for v in r)
    assert len(results) == 4 and applied == [m.version for m in migrations()]


def test_migrate_command_applies_pending_migrations(empty_database_url: str) -> None:
    # WHEN the one command runs against an empty database, then again
    cmd = [sys.executable, "-m", "pagemill.db.migrate", empty_database_url]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    # THEN it reports what it applied, then that nothing was pending
    assert "applied migrations [1" in first.stdout
    assert "up to date" in second.stdout


# --- status bookkeeping --------------------------------------------------------------------


def test_register_new_content_runs_and_maps_its_source(conn: psycopg.Connection[Any]) -> None:
    # WHEN new content is registered
    outcome = register(conn)
    # THEN it is running for this execution and its upload points at it
    assert (outcome.duplicate, outcome.status) == (False, "running")
    doc = get_document(conn, DOC)
    assert doc is not None
    assert (doc["status"], doc["execution_arn"], doc["size_bytes"]) == ("running", "arn:exec:1", 1234)
    assert document_for_source(conn, SOURCE) == DOC


def test_register_processed_content_is_a_duplicate_and_leaves_it_untouched(conn: psycopg.Connection[Any]) -> None:
    # GIVEN content that was processed successfully
    register(conn)
    write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={})
    before = get_document(conn, DOC)
    # WHEN the same bytes arrive under another key
    copy = SourceObject(bucket="uploads", key="uploads/copy-of-catalog.pdf")
    outcome = register(conn, source=copy, arn="arn:exec:9")
    # THEN it is reported as a duplicate, the document row is unchanged, and both uploads map to it
    assert (outcome.duplicate, outcome.status, outcome.page_count) == (True, "succeeded", 6)
    assert get_document(conn, DOC) == before
    assert document_for_source(conn, copy) == DOC and document_for_source(conn, SOURCE) == DOC


def test_register_after_a_failure_runs_again_with_the_error_cleared(conn: psycopg.Connection[Any]) -> None:
    # GIVEN content whose earlier run failed
    assert fail(conn)
    # WHEN it is uploaded again
    outcome = register(conn, arn="arn:exec:3")
    # THEN it runs again, and the old error is gone
    doc = get_document(conn, DOC)
    assert not outcome.duplicate
    assert doc is not None and (doc["status"], doc["error_class"], doc["error"], doc["execution_arn"]) == (
        "running", None, None, "arn:exec:3")


@pytest.mark.parametrize(
    ("status", "settled", "error_class", "words"),
    [("ABORTED", "cancelled", "Cancelled", "stopped"), ("TIMED_OUT", "failed", "States.Timeout", "time limit")],
)
def test_an_execution_that_ended_without_its_catch_settles_its_document(
    conn: psycopg.Connection[Any], status: str, settled: str, error_class: str, words: str
) -> None:
    # GIVEN a document running in one execution
    register(conn, arn="arn:exec:9")
    # WHEN that execution is stopped or times out as a whole (EventBridge tells Settle), twice
    first = settle_ended_execution(conn, ExecutionEnded("arn:exec:9", status))
    again = settle_ended_execution(conn, ExecutionEnded("arn:exec:9", status))
    # THEN the document is no longer running, says why, and the repeat changes nothing
    doc = get_document(conn, DOC)
    assert doc is not None and (doc["status"], doc["error_class"]) == (settled, error_class)
    assert words in doc["error"]
    assert (first["document_id"], again["document_id"]) == (DOC, None)


def test_settling_leaves_a_document_that_already_ended_alone(conn: psycopg.Connection[Any]) -> None:
    register(conn, arn="arn:exec:9")
    assert fail(conn, execution_arn="arn:exec:9")
    assert settle_ended_execution(conn, ExecutionEnded("arn:exec:9", "TIMED_OUT"))["document_id"] is None
    doc = get_document(conn, DOC)
    assert doc is not None and (doc["status"], doc["error_class"]) == ("failed", "EncryptedPdf")


def test_record_failure_before_registration_creates_the_failed_document(conn: psycopg.Connection[Any]) -> None:
    # WHEN a failure is recorded for content never registered (it failed before Plan registered it)
    recorded = fail(conn, error="The PDF is encrypted.\nTraceback (most recent call last): ...")
    # THEN a failed row says why, in one line, and the upload points at it
    doc = get_document(conn, DOC)
    assert recorded and doc is not None
    assert (doc["status"], doc["error_class"], doc["error"], doc["failed_state"]) == (
        "failed", "EncryptedPdf", "The PDF is encrypted.", "Plan")
    assert document_for_source(conn, SOURCE) == DOC


def test_record_failure_leaves_no_partial_rows(conn: psycopg.Connection[Any]) -> None:
    # GIVEN a running document with rows already in every table
    register(conn)
    with conn.transaction():
        conn.execute("insert into pages (document_id, page_no, markdown, char_count) values (%s, 1, 'a', 1)", (DOC,))
        conn.execute(
            "insert into chunks (document_id, chunk_no, first_page, last_page, text) values (%s, 0, 1, 1, 'a')", (DOC,)
        )
        conn.execute(
            "insert into images (document_id, image_no, page_no, page_nos, sha256, s3_key)"
            " values (%s, 0, 1, '{1}', 'h', 'k')",
            (DOC,),
        )
    # WHEN Write's failure is recorded
    assert fail(conn, error_class="DatabaseUnavailable", failed_state="Write")
    # THEN the document is failed and none of its rows remain
    for table in ("pages", "chunks", "images"):
        assert rows(conn, f"select count(*) from {table} where document_id = %s") == [(0,)]
    doc = get_document(conn, DOC)
    assert doc is not None and (doc["status"], doc["failed_state"]) == ("failed", "Write")


def test_record_failure_never_marks_succeeded_content_failed(conn: psycopg.Connection[Any]) -> None:
    # GIVEN content that succeeded
    register(conn)
    write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={})
    # WHEN a later execution of the same bytes fails
    recorded = fail(conn)
    # THEN nothing is recorded: the document and its rows stay as they were
    doc = get_document(conn, DOC)
    assert not recorded
    assert doc is not None and (doc["status"], doc["error"]) == ("succeeded", None)
    assert rows(conn, "select count(*) from pages where document_id = %s") == [(6,)]


# --- write ---------------------------------------------------------------------------------


def test_write_merges_repeated_images_and_numbers_chunks_document_wide(conn: psycopg.Connection[Any]) -> None:
    # GIVEN a registered document whose two batches arrive out of order, a logo on every page
    register(conn)
    batches = list(reversed(two_batches()))
    # WHEN it is written
    counts = write_document(
        conn, document_id=DOC, batches=batches, timings={"write_seconds": 0.5}, stats={"batches": 2}
    )
    # THEN the logo is one row listing every page, and the photo a second one
    images = rows(conn, "select image_no, sha256, page_no, page_nos, bbox, width, embedding, caption "
                        "from images where document_id = %s order by image_no")
    assert images == [
        (0, "logo", 1, [1, 2, 3, 4, 5, 6], [10.0, 10.0, 60.0, 30.0], 200, None, None),
        (1, "photo", 5, [5], [1.0, 2.0, 3.0, 4.0], 640, None, None),
    ]
    # AND chunks are numbered 0..n-1 in page order
    chunks = rows(conn, "select chunk_no, first_page from chunks where document_id = %s order by chunk_no")
    assert chunks == [(0, 1), (1, 1), (2, 1), (3, 4), (4, 4)]
    # AND the document succeeded with its page count, timings and stats
    doc = get_document(conn, DOC)
    assert doc is not None
    assert (doc["status"], doc["page_count"], doc["timings"], doc["stats"]) == (
        "succeeded", 6, {"write_seconds": 0.5}, {"batches": 2})
    assert (counts.pages, counts.chunks, counts.images) == (6, 5, 2)


def test_write_twice_leaves_exactly_one_copy_of_each_row(conn: psycopg.Connection[Any]) -> None:
    # GIVEN a document written once
    register(conn)
    first = write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={})
    tables = ("pages", "chunks", "images")
    snapshot = [rows(conn, f"select * from {t} where document_id = %s order by 2") for t in tables]
    # WHEN Write is retried, this time streaming the batches from an iterator
    second = write_document(conn, document_id=DOC, batches=iter(two_batches()), timings={}, stats={})
    # THEN the counts and every row are the same
    assert first == second
    assert [rows(conn, f"select * from {t} where document_id = %s order by 2") for t in tables] == snapshot


def test_write_stores_embeddings_by_image_hash(conn: psycopg.Connection[Any]) -> None:
    # GIVEN an embedding for the photo only
    register(conn)
    vector = [i / 512 for i in range(512)]
    # WHEN written
    write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={},
                   embeddings={"photo": vector})
    # THEN the photo has it (exactly, as float4) and the logo has NULL
    got = rows(conn, "select sha256, embedding from images where document_id = %s order by image_no")
    assert [(s, e is None) for s, e in got] == [("logo", True), ("photo", False)]
    assert got[1][1].to_list() == pytest.approx(vector, abs=1e-6)


def test_write_rejects_batches_out_of_page_order_and_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    # GIVEN a written document
    register(conn)
    write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={})
    # WHEN a retry streams its batches in the wrong order
    with pytest.raises(InternalError, match="page order"):
        write_document(conn, document_id=DOC, batches=iter(reversed(two_batches())), timings={}, stats={})
    # THEN the transaction rolled back: the earlier rows are intact
    assert rows(conn, "select count(*) from pages where document_id = %s") == [(6,)]


def test_write_of_an_unregistered_document_is_an_internal_error(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(InternalError, match="not registered"):
        write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={})


# --- connection failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@/postgres?host=/nonexistent/pagemill-socket-dir",
        "postgresql://postgres@127.0.0.1:1/postgres",
    ],
    ids=["missing-socket", "closed-port"],
)
def test_unreachable_database_is_retryable(url: str) -> None:
    # WHEN connecting to a server that is not there
    with pytest.raises(DatabaseUnavailable, match="could not reach PostgreSQL at") as caught:
        connect(url)
    # THEN the error is the transient one, with the driver's error as its cause
    assert caught.value.retryable and isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_connection_lost_during_write_is_retryable(conn: psycopg.Connection[Any], database_url: str) -> None:
    # GIVEN a registered document and a connection that the server then terminates
    register(conn)
    pid = conn.info.backend_pid
    with connect(database_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (pid,))
    # WHEN Write runs on it
    with pytest.raises(DatabaseUnavailable, match=f"writing document {DOC}"):
        write_document(conn, document_id=DOC, batches=two_batches(), timings={}, stats={})


# --- embedded server -----------------------------------------------------------------------


def test_embedded_server_outlives_the_process_that_started_it(tmp_path: Path) -> None:
    # GIVEN a process that starts the embedded server, prints its URL and exits (like `pagemill db-url`)
    code = "import sys, pathlib; from pagemill_tools import embedded_db as embedded; print(embedded.start(pathlib.Path(sys.argv[1])))"
    started = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    url = started.stdout.strip()
    try:
        # WHEN another process connects afterwards
        with connect(url) as conn:
            # THEN the server still answers, with pgvector available
            conn.execute("create extension if not exists vector")
            assert conn.execute("select '[1,2,3]'::vector(3)::text").fetchone() == ("[1,2,3]",)
        # AND starting it again reuses the running server
        assert embedded.start(tmp_path) == url
    finally:
        assert embedded.stop(tmp_path)
    with pytest.raises(DatabaseUnavailable):
        connect(url)


def test_a_killed_clients_backend_gives_up_its_locks_while_waiting(empty_database_url: str) -> None:
    """What a function killed at its timeout leaves behind: a backend waiting on a lock while
    holding the document's row. It must go by itself, not block the retries until the wait ends."""
    with connect(empty_database_url, autocommit=True) as admin:
        if admin.execute("show client_connection_check_interval").fetchone() == ("0",):
            pytest.skip("this server runs without pagemill's SERVER_SETTINGS (PAGEMILL_TEST_DATABASE_URL?)")
        admin.execute("create table documents_like (id int primary key); insert into documents_like values (1)")
        admin.execute("create table pages_like (id int)")
        with connect(empty_database_url) as blocker:
            blocker.execute("lock table pages_like in access exclusive mode")
            client = subprocess.Popen([sys.executable, "-c", (
                "import sys, psycopg\n"
                "conn = psycopg.connect(sys.argv[1])\n"
                "conn.execute('select 1 from documents_like where id = 1 for update')\n"
                "conn.execute('insert into pages_like values (1)')\n"
            ), empty_database_url])
            try:
                backend = _wait_for(admin, "select pid from pg_stat_activity where wait_event_type = 'Lock' "
                                    "and query like 'insert into pages_like%'")
            finally:
                client.kill()
                client.wait()
            # the client is gone while its backend still waits on the table: the backend must end
            _wait_for(admin, "select 1 where not exists (select 1 from pg_stat_activity where pid = %s)", (backend,))
            assert admin.execute("select id from documents_like where id = 1 for update nowait").fetchone() == (1,)


def _wait_for(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = (), deadline_s: float = 60) -> Any:
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        row = conn.execute(query, params or None).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.1)
    raise AssertionError(f"still not true after {deadline_s} s: {query}")
