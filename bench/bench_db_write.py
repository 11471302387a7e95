"""Rows per second into ``chunks``: write_document's binary COPY vs executemany vs one INSERT per
row, 20,000 chunk-like rows of about 1 KB of text, each in one transaction, best of 3.

    python bench/bench_db_write.py [URL]     (default: DATABASE_URL, else a throwaway embedded server;
                                              pagemill importable: `make install`, or PYTHONPATH=.)

A fresh database is created on the server and dropped at the end.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pagemill.db import embedded
from pagemill.db.connect import connect
from pagemill.db.documents import register_document
from pagemill.db.migrate import migrate
from pagemill.db.write import write_document
from pagemill.models import BatchResult, ChunkRecord, SourceObject
from pagemill.settings import Settings

ROWS = 20_000
PER_BATCH = 50  # chunks per Extract batch (25 pages of about two chunks each)
REPEATS = 3
DOC = "b" * 32
INSERT = "insert into chunks (document_id, chunk_no, first_page, last_page, text) values (%s, %s, %s, %s, %s)"


def make_batches() -> list[BatchResult]:
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 18)[:1000]
    batches = []
    for b in range(ROWS // PER_BATCH):
        first = b * 25 + 1
        chunks = [ChunkRecord(n, first + n // 2, first + n // 2, f"{b}:{n} {text}") for n in range(PER_BATCH)]
        batches.append(BatchResult(DOC, b, first, first + 24, 0.0, chunks=chunks))
    return batches


def rows_of(batches: list[BatchResult]) -> list[tuple[Any, ...]]:
    return [(DOC, i, c.first_page, c.last_page, c.text) for i, c in enumerate(c for b in batches for c in b.chunks)]


def run_copy(conn: psycopg.Connection[Any], batches: list[BatchResult]) -> None:
    write_document(conn, document_id=DOC, batches=batches, timings={}, stats={})


def run_executemany(conn: psycopg.Connection[Any], batches: list[BatchResult]) -> None:
    rows = rows_of(batches)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("delete from chunks where document_id = %s", (DOC,))
        cur.executemany(INSERT, rows)


def run_insert_per_row(conn: psycopg.Connection[Any], batches: list[BatchResult]) -> None:
    rows = rows_of(batches)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("delete from chunks where document_id = %s", (DOC,))
        for row in rows:
            cur.execute(INSERT, row)


def best_seconds(conn: psycopg.Connection[Any], fn: Callable[..., None], batches: list[BatchResult]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn(conn, batches)
        times.append(time.perf_counter() - started)
        assert conn.execute("select count(*) from chunks").fetchone() == (ROWS,)
        conn.commit()
    return min(times)


@contextmanager
def server(explicit: str | None) -> Iterator[str]:
    if explicit:
        yield explicit
        return
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as home:
        try:
            yield embedded.start(Path(home))
        finally:
            embedded.stop(Path(home))


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    name = f"pm_bench_{uuid.uuid4().hex[:12]}"
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**conninfo_to_dict(server_url), "dbname": name})
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def main(argv: list[str]) -> None:
    batches = make_batches()
    with server(argv[0] if argv else Settings.from_env().database_url) as server_url, \
            scratch_database(server_url) as url:
        migrate(url)
        with connect(url) as conn:
            register_document(conn, document_id=DOC, sha256=DOC * 2, size_bytes=0,
                              source=SourceObject("bench", "bench.pdf"), execution_arn=None)
            server_version = conn.execute("show server_version").fetchone()[0]
            results = [
                ("write_document (COPY binary)", best_seconds(conn, run_copy, batches)),
                ("executemany (pipelined)", best_seconds(conn, run_executemany, batches)),
                ("one INSERT per row", best_seconds(conn, run_insert_per_row, batches)),
            ]
    fastest = results[0][1]
    print(f"{ROWS:,} chunk rows of ~1 KB, one transaction each, best of {REPEATS}; PostgreSQL {server_version}")
    print(f"{'method':<30}{'seconds':>10}{'rows/s':>12}{'vs COPY':>10}")
    for name, seconds in results:
        print(f"{name:<30}{seconds:>10.3f}{ROWS / seconds:>12,.0f}{seconds / fastest:>9.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
