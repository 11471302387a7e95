"""Rows per second into PostgreSQL: write_document's binary COPY vs executemany vs one INSERT per
row, for two kinds of rows, each kind in one transaction, best of 3:

  chunks   20,000 chunk rows of about 1 KB of text
  images   10,000 image rows with a 512-d vector(512) embedding (float32, as CLIP gives them)

The images table is measured without its HNSW index (dropped in the scratch database): this
compares write paths; what the index costs, and how to avoid paying it per row, is
bench/bench_hnsw.py.

    python -m bench.bench_db_write [URL]     (from the repo root; default: DATABASE_URL, else a
                                              throwaway embedded server)

A fresh database is created on the server and dropped at the end. Rows/s of the COPY path are
recorded in build/bench/measured.json for bench/scale_model.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from bench.inputs import machine, record
from bench.scratch_db import server
from pagemill.db.connect import connect
from pagemill.db.documents import register_document
from pagemill.db.migrate import migrate
from pagemill.db.write import write_document
from pagemill.records import BatchResult, ChunkRecord, ImageOccurrence, SourceObject
from pagemill.settings import Settings
from pagemill_tools.scratch_db import scratch_database

CHUNK_ROWS = 20_000
IMAGE_ROWS = 10_000
PER_BATCH = 50  # chunks (or images) per Extract batch of 25 pages
REPEATS = 3
DOC = "b" * 32
DIM = 512
CHUNK_INSERT = "insert into chunks (document_id, chunk_no, first_page, last_page, text) values (%s, %s, %s, %s, %s)"
IMAGE_INSERT = (
    "insert into images (document_id, image_no, page_no, page_nos, bbox, width, height, sha256, ext, s3_key,"
    " size_bytes, embedding) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Workload:
    """One kind of row: the batches write_document takes, and the same rows as INSERT parameters."""

    name: str
    table: str
    rows: int
    batches: list[BatchResult]
    embeddings: dict[str, np.ndarray]
    insert: str
    params: list[tuple[Any, ...]]


def chunk_workload() -> Workload:
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 18)[:1000]
    batches = []
    for b in range(CHUNK_ROWS // PER_BATCH):
        first = b * 25 + 1
        chunks = [ChunkRecord(n, first + n // 2, first + n // 2, f"{b}:{n} {text}") for n in range(PER_BATCH)]
        batches.append(BatchResult(DOC, b, first, first + 24, 0.0, chunks=chunks))
    params = [
        (DOC, i, c.first_page, c.last_page, c.text) for i, c in enumerate(c for b in batches for c in b.chunks)
    ]
    return Workload("chunks (~1 KB text)", "chunks", CHUNK_ROWS, batches, {}, CHUNK_INSERT, params)


def image_workload() -> Workload:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((IMAGE_ROWS, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # CLIP embeddings are unit vectors
    batches, embeddings, params = [], {}, []
    for b in range(IMAGE_ROWS // PER_BATCH):
        first = b * 25 + 1
        images = []
        for n in range(PER_BATCH):
            i = b * PER_BATCH + n
            sha = f"{i:064x}"
            image = ImageOccurrence(sha, first + n // 2, (48.0, 140.0, 258.0, 350.0), 640, 480, "jpeg",
                                    f"documents/{DOC}/images/{sha}.jpeg", 48_000)
            images.append(image)
            embeddings[sha] = vectors[i]
            params.append((DOC, i, image.page_no, [image.page_no], list(image.bbox), image.width, image.height,
                           sha, image.ext, image.s3_key, image.size_bytes, vectors[i]))
        batches.append(BatchResult(DOC, b, first, first + 24, 0.0, images=images))
    return Workload("images (+ vector(512))", "images", IMAGE_ROWS, batches, embeddings, IMAGE_INSERT, params)


def run_copy(conn: psycopg.Connection[Any], work: Workload) -> None:
    write_document(conn, document_id=DOC, batches=work.batches, timings={}, stats={}, embeddings=work.embeddings)


def run_executemany(conn: psycopg.Connection[Any], work: Workload) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"delete from {work.table} where document_id = %s", (DOC,))
        cur.executemany(work.insert, work.params)


def run_insert_per_row(conn: psycopg.Connection[Any], work: Workload) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"delete from {work.table} where document_id = %s", (DOC,))
        for row in work.params:
            cur.execute(work.insert, row)


METHODS: list[tuple[str, Callable[[psycopg.Connection[Any], Workload], None]]] = [
    ("write_document (COPY binary)", run_copy),
    ("executemany (pipelined)", run_executemany),
    ("one INSERT per row", run_insert_per_row),
]


def best_seconds(conn: psycopg.Connection[Any], fn: Callable[..., None], work: Workload) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn(conn, work)
        times.append(time.perf_counter() - started)
        count = conn.execute(f"select count(*) from {work.table}").fetchone()
        if count != (work.rows,):  # a write path that lost rows would look fast
            raise RuntimeError(f"{fn.__name__} left {count} rows in {work.table}, expected {work.rows}")
        conn.execute(f"delete from {work.table}")
        conn.commit()
    return min(times)


def main(argv: list[str]) -> None:
    workloads = [chunk_workload(), image_workload()]
    results: dict[str, list[tuple[str, float]]] = {}
    with server(argv[0] if argv else Settings.from_env().database_url) as server_url, \
            scratch_database(server_url) as url:
        migrate(url)
        with connect(url) as conn:
            conn.execute("drop index images_embedding_hnsw")
            register_document(conn, document_id=DOC, sha256=DOC * 2, size_bytes=0,
                              source=SourceObject("bench", "bench.pdf"), execution_arn=None)
            conn.commit()
            server_version = conn.execute("show server_version").fetchone()[0]
            for work in workloads:
                results[work.name] = [(name, best_seconds(conn, fn, work)) for name, fn in METHODS]
    print(f"one transaction per run, best of {REPEATS}; PostgreSQL {server_version}; load {machine()['loadavg']}")
    print(f"{'rows':<31}{'method':<30}{'seconds':>9}{'rows/s':>10}{'vs COPY':>9}")
    for work in workloads:
        fastest = results[work.name][0][1]
        for name, seconds in results[work.name]:
            print(f"{f'{work.rows:,} {work.name}':<31}{name:<30}{seconds:>9.3f}{work.rows / seconds:>10,.0f}"
                  f"{seconds / fastest:>8.1f}x")
    rates = {w.name: {name: w.rows / s for name, s in results[w.name]} for w in workloads}
    images = rates[workloads[1].name]
    record("db_write", {
        "image_rows_per_s": images[METHODS[0][0]],
        "image_rows_per_s_one_insert_per_row": images[METHODS[2][0]],
        "rates": rates,
    })


if __name__ == "__main__":
    main(sys.argv[1:])
