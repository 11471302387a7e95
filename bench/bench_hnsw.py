"""HNSW at scale: what the vector index costs when image rows (512-d CLIP embeddings) go in.

  (a) bulk      COPY binary into an unindexed table, then CREATE INDEX hnsw: with the server's
                default maintenance_work_mem, and with it raised (1 GB) plus parallel workers
  (b) growth    COPY into a table that already has the HNSW index, in steps, rows/s per step as it
                grows (bounded by --growth-seconds), and one probe of inserts into the bulk-built
                index at the full size
  (c) halfvec   an expression index on embedding::halfvec(512) over the same column (no schema
                change): build time, size, recall@10 against exact search, query latency
  (d) partitions the same rows in --partitions range partitions, each indexed after its load:
                build time, recall@10 and latency of one query over all partitions

Vectors are unit-length and clustered (100 centres plus noise), as image embeddings of a
catalogue are, and unlike uniform random vectors, HNSW's worst case. Queries are fresh draws from
the same distribution; exact neighbours are computed with numpy.

    python -m bench.bench_hnsw [--rows 50000] [--growth-seconds 45] [--partitions 5] [URL]

Figures are recorded in build/bench/measured.json for bench/scale_model.py.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench.inputs import machine, record
from bench.scratch_db import server
from pagemill.db.connect import connect
from pagemill.settings import Settings
from pagemill_tools.scratch_db import scratch_database

DIM = 512
CENTRES = 100
NOISE = 1.5
QUERIES = 50
K = 10
STEP = 2_500
PROBE = 1_000
RAISED_MEMORY = "1GB"
# A default-memory build of a large table spills to disk and can take many minutes; past this
# the bench reports a lower bound instead of waiting.
BUILD_TIMEOUT_S = 180
VECTOR_INDEX = "using hnsw (embedding vector_cosine_ops)"
HALFVEC_INDEX = f"using hnsw ((embedding::halfvec({DIM})) halfvec_cosine_ops)"
VECTOR_QUERY = "select id from {table} order by embedding <=> %s::vector limit {k}"
HALFVEC_QUERY = f"select id from {{table}} order by embedding::halfvec({DIM}) <=> %s::halfvec({DIM}) limit {{k}}"


def embeddings(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    # Noise of norm about 1.5 around unit centres: images of one cluster at cosine ~0.3, close
    # enough to overlap, so the exact top 10 is not just "the own cluster" and recall means something.
    v = centres[rng.integers(0, CENTRES, n)] + rng.standard_normal((n, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass(frozen=True)
class Search:
    recall: float  # mean share of the exact top-K found
    ms: float  # median latency of one query


def copy_rows(conn: psycopg.Connection[Any], table: str, vectors: np.ndarray, first_id: int) -> float:
    """COPY binary ``vectors`` with ids from ``first_id``; seconds taken."""
    started = time.perf_counter()
    with conn.cursor().copy(f"copy {table} (id, embedding) from stdin (format binary)") as copy:
        copy.set_types(["int4", "vector"])
        for i, v in enumerate(vectors, start=first_id):
            copy.write_row((i, v))
    return time.perf_counter() - started


def timed(conn: psycopg.Connection[Any], statement: str) -> float:
    started = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - started


def build(conn: psycopg.Connection[Any], name: str, table: str, method: str) -> float:
    """Seconds to build the index."""
    return timed(conn, f"create index {name} on {table} {method}")


def build_within_timeout(conn: psycopg.Connection[Any], name: str, table: str, method: str) -> float | None:
    """Seconds to build the index, or None past BUILD_TIMEOUT_S: for the default
    maintenance_work_mem, where the graph no longer fits in memory and the build can crawl."""
    conn.execute(f"set statement_timeout = '{BUILD_TIMEOUT_S}s'")
    try:
        return build(conn, name, table, method)
    except psycopg.errors.QueryCanceled:
        return None
    finally:
        conn.execute("set statement_timeout = 0")


def index_mb(conn: psycopg.Connection[Any], name: str) -> float:
    return conn.execute("select pg_relation_size(%s::regclass)", (name,)).fetchone()[0] / 2**20


def search(conn: psycopg.Connection[Any], query: str, table: str, queries: np.ndarray, exact: np.ndarray) -> Search:
    sql = query.format(table=table, k=K)
    plan = "\n".join(r[0] for r in conn.execute(f"explain {sql}", (queries[0],)).fetchall())
    if "Index Scan" not in plan:  # a sequential scan would report exact recall and say nothing of the index
        raise RuntimeError(f"the query does not use the index:\n{plan}")
    found, times = 0, []
    for q, truth in zip(queries, exact):
        started = time.perf_counter()
        ids = [r[0] for r in conn.execute(sql, (q,)).fetchall()]
        times.append(time.perf_counter() - started)
        found += len(set(ids) & set(truth.tolist()))
    return Search(found / (K * len(queries)), 1000 * float(np.median(times)))


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :K]


@contextmanager
def table(conn: psycopg.Connection[Any], name: str, suffix: str = "") -> Iterator[str]:
    conn.execute(f"create table {name} (id int primary key, embedding vector({DIM})){suffix}")
    try:
        yield name
    finally:
        conn.execute(f"drop table {name}")


def bulk(conn: psycopg.Connection[Any], vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray,
         workers: int) -> dict[str, Any]:
    with table(conn, "bulk") as t:
        copy_s = copy_rows(conn, t, vectors, 0)
        default_memory = conn.execute("show maintenance_work_mem").fetchone()[0]
        default_s = build_within_timeout(conn, "bulk_default", t, VECTOR_INDEX)
        conn.execute("drop index if exists bulk_default")
        conn.execute(f"set maintenance_work_mem = '{RAISED_MEMORY}'")
        conn.execute(f"set max_parallel_maintenance_workers = {workers}")
        vector_s = build(conn, "bulk_vector", t, VECTOR_INDEX)
        halfvec_s = build(conn, "bulk_halfvec", t, HALFVEC_INDEX)
        out = {
            "copy_rows_per_s": len(vectors) / copy_s, "default_memory": default_memory, "default_build_s": default_s,
            "vector": {"build_s": vector_s, "mb": index_mb(conn, "bulk_vector"),
                       **search(conn, VECTOR_QUERY, t, queries, exact).__dict__},
            "halfvec": {"build_s": halfvec_s, "mb": index_mb(conn, "bulk_halfvec"),
                        **search(conn, HALFVEC_QUERY, t, queries, exact).__dict__},
        }
        # Inserts into the bulk-built index at the full size: the cost of one more document.
        conn.execute("drop index bulk_halfvec")
        probe = embeddings(PROBE, seed=3)
        out["insert_at_full_rows_per_s"] = PROBE / copy_rows(conn, t, probe, len(vectors))
    return out


def growth(conn: psycopg.Connection[Any], vectors: np.ndarray, budget_s: float) -> list[tuple[int, float]]:
    """(rows after the step, rows/s of the step) while the budget lasts."""
    steps: list[tuple[int, float]] = []
    spent = 0.0
    with table(conn, "growing") as t:
        conn.execute(f"create index growing_vector on {t} {VECTOR_INDEX}")
        for first in range(0, len(vectors), STEP):
            seconds = copy_rows(conn, t, vectors[first : first + STEP], first)
            steps.append((first + STEP, STEP / seconds))
            spent += seconds
            if spent > budget_s:
                break
    return steps


def partitioned(conn: psycopg.Connection[Any], vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray,
                parts: int) -> dict[str, Any]:
    size = -(-len(vectors) // parts)
    builds = []
    with table(conn, "parts", " partition by range (id)") as t:
        for p in range(parts):
            conn.execute(f"create table {t}_{p} partition of {t} for values from ({p * size}) to ({(p + 1) * size})")
            copy_rows(conn, f"{t}_{p}", vectors[p * size : (p + 1) * size], p * size)
            builds.append(build(conn, f"{t}_{p}_vector", f"{t}_{p}", VECTOR_INDEX))
        found = search(conn, VECTOR_QUERY, t, queries, exact)
    return {"parts": parts, "build_s": sum(builds), "max_part_build_s": max(builds), **found.__dict__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default=None, help="PostgreSQL server (default: DATABASE_URL or embedded)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--growth-seconds", type=float, default=45.0)
    parser.add_argument("--partitions", type=int, default=5, help="0: skip (d)")
    args = parser.parse_args()
    vectors = embeddings(args.rows, seed=1)
    queries = embeddings(QUERIES, seed=2)
    exact = exact_neighbours(vectors, queries)
    workers = max(1, (os.cpu_count() or 2) - 1)  # the leader works too
    started = time.perf_counter()
    with server(args.url or Settings.from_env().database_url) as server_url, scratch_database(server_url) as url:
        with connect(url, autocommit=True) as conn:
            conn.execute("create extension if not exists vector")
            register_vector(conn)
            settings = {k: conn.execute(f"show {k}").fetchone()[0]
                        for k in ("server_version", "shared_buffers", "max_parallel_maintenance_workers")}
            version = conn.execute("select extversion from pg_extension where extname = 'vector'").fetchone()[0]
            b = bulk(conn, vectors, queries, exact, workers)
            steps = growth(conn, vectors, args.growth_seconds)
            p = partitioned(conn, vectors, queries, exact, args.partitions) if args.partitions else None
    report(args.rows, b, steps, p, settings, version, workers, time.perf_counter() - started)
    record("hnsw", {"rows": args.rows, "bulk": b, "growth": steps, "partitions": p})


def report(rows: int, b: dict[str, Any], steps: list[tuple[int, float]], p: dict[str, Any] | None,
           settings: dict[str, str], version: str, workers: int, seconds: float) -> None:
    def s(value: float | None) -> str:  # the default-memory build may have timed out
        return f"> {BUILD_TIMEOUT_S}" if value is None else f"{value:.1f}"

    print(f"{rows:,} clustered unit vectors of {DIM} dims; PostgreSQL {settings['server_version']}, pgvector {version}, "
          f"shared_buffers {settings['shared_buffers']}; load {machine()['loadavg']}; {seconds:.0f} s in all\n")
    copy_s = rows / b["copy_rows_per_s"]
    print("(a) load unindexed, then build")
    print(f"  COPY binary into the bare table          {b['copy_rows_per_s']:>10,.0f} rows/s  ({copy_s:.1f} s)")
    print(f"  {'CREATE INDEX, maintenance_work_mem ' + b['default_memory']:<41}{s(b['default_build_s']):>10} s")
    vector = b["vector"]
    print(f"  {f'CREATE INDEX, {RAISED_MEMORY} + {workers} parallel worker(s)':<41}{vector['build_s']:>10.1f} s")
    print(f"  load + build, rows/s overall             {rows / (copy_s + vector['build_s']):>10,.0f} rows/s")
    print("\n(b) COPY into a table that already has the index, as it grows")
    print(f"  {'rows in table':>14}{'rows/s':>10}")
    for n, rate in steps:
        print(f"  {n:>14,}{rate:>10,.0f}")
    print(f"  {rows:>14,}{b['insert_at_full_rows_per_s']:>10,.0f}   (a step of {PROBE:,} rows into (a)'s bulk-built index)")
    print(f"\n(c) vector vs halfvec, recall@{K} vs exact over {QUERIES} queries (hnsw.ef_search default 40)")
    print(f"  {'index':<26}{'build s':>9}{'MB':>8}{'recall':>8}{'ms/query':>10}")
    for name in ("vector", "halfvec"):
        i = b[name]
        print(f"  {name + '(512)':<26}{i['build_s']:>9.1f}{i['mb']:>8.0f}{i['recall']:>8.3f}{i['ms']:>10.2f}")
    if p:
        label = f"{p['parts']} partitions, vector"
        print(f"  {label:<26}{p['build_s']:>9.1f}{'':>8}{p['recall']:>8.3f}{p['ms']:>10.2f}"
              f"   (largest partition build {p['max_part_build_s']:.1f} s)")
    if steps:
        print(f"\nbulk load + build is {rows / (copy_s + vector['build_s']) / steps[-1][1]:.0f}x the rows/s of "
              f"inserting into the indexed table at {steps[-1][0]:,} rows")


if __name__ == "__main__":
    main()
