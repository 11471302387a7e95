"""Search latency at scale: hybrid, keyword and vector queries over N synthetic chunks.

Chunks are ~1 KB of English words drawn by Zipf's law from a real vocabulary (the words of the
Mueller report, volume II), so the tsvector/GIN side sees a natural word distribution; vectors are
256-d unit vectors in 100 clusters (the offline model's size; bench_hnsw explains the clustering).
Rows go in as the pipeline's bulk path does — COPY into the bare table, then the GIN and the
halfvec HNSW indexes built once (maintenance_work_mem 1 GB) — in documents of 1,000 chunks.
Queries: 3 mid-frequency words (keyword), a fresh clustered vector (vector), both (hybrid), each
through pagemill.search.hybrid.search, limit 10, after one warm-up pass.

    python -m bench.bench_search_scale [--rows 1000000] [--queries 200] [URL]
    python -m bench.bench_search_scale --loaded DATABASE_URL   # queries only, on a database it loaded
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.inputs import record
from bench.scratch_db import server
from pagemill.db.chunk_vectors import build_index
from pagemill.db.connect import connect
from pagemill.db.migrate import migrate
from pagemill.search.hybrid import search
from pagemill.settings import Settings
from pagemill_tools.scratch_db import scratch_database

DIM = 256
CENTRES = 100
NOISE = 1.5
WORDS_PER_CHUNK = 170
CHUNKS_PER_DOCUMENT = 1_000
MODEL = "bench-synthetic-256"
PDF = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "mueller-report-vol-2.pdf"


class FixedEmbedder:
    """The query vector for the next search (synthetic vectors have no text to embed)."""

    model = MODEL
    dim = DIM

    def __init__(self) -> None:
        self.vector = np.zeros(DIM, dtype=np.float32)

    def passages(self, texts: Any) -> np.ndarray:
        raise NotImplementedError

    def query(self, text: str) -> np.ndarray:
        return self.vector


def vocabulary() -> list[str]:
    doc = pymupdf.open(PDF)
    words = re.findall(r"[A-Za-z]{3,}", " ".join(page.get_text() for page in doc))
    doc.close()
    counts: dict[str, int] = {}
    for w in words:
        counts[w.lower()] = counts.get(w.lower(), 0) + 1
    return sorted(counts, key=lambda w: -counts[w])


def unit_vectors(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    v = centres[rng.integers(0, CENTRES, n)] + NOISE * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def load(conn: Any, rows: int, vocab: list[str], rng: np.random.Generator, centres: np.ndarray) -> dict[str, float]:
    ranks = np.arange(1, len(vocab) + 1)
    p = 1 / ranks
    p /= p.sum()
    words = np.array(vocab)
    conn.execute("drop index chunks_tsv_idx")
    conn.execute("insert into text_search_configs values ('english')")
    conn.commit()
    documents = (rows + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT
    with conn.cursor() as cur, cur.copy("COPY documents (id, sha256, status) FROM STDIN") as copy:
        for d in range(documents):
            copy.write_row((f"doc{d:08d}", f"sha{d:08d}", "succeeded"))
    conn.commit()
    began = time.perf_counter()
    english = conn.execute("select 'english'::regconfig::oid").fetchone()[0]
    done = 0
    while done < rows:
        n = min(20_000, rows - done)
        drawn = words[rng.choice(len(vocab), size=(n, WORDS_PER_CHUNK), p=p)]
        vectors = unit_vectors(rng, centres, n)
        with conn.cursor() as cur, cur.copy(
            "COPY chunks (document_id, chunk_no, first_page, last_page, text, ts_config, embedding, embedding_model)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "int4", "int4", "int4", "text", "oid", "vector", "text"])
            for i in range(n):
                row = done + i
                page = (row % CHUNKS_PER_DOCUMENT) // 3 + 1
                copy.write_row((f"doc{row // CHUNKS_PER_DOCUMENT:08d}", row % CHUNKS_PER_DOCUMENT, page, page,
                                " ".join(drawn[i]), english, vectors[i], MODEL))
        conn.commit()
        done += n
        print(f"  loaded {done:,} rows ({done / (time.perf_counter() - began):,.0f} rows/s)", flush=True)
    copy_s = time.perf_counter() - began
    began = time.perf_counter()
    conn.execute("set maintenance_work_mem = '1GB'")
    conn.execute("create index chunks_tsv_idx on chunks using gin (tsv)")
    conn.commit()
    gin_s = time.perf_counter() - began
    began = time.perf_counter()
    build_index(conn, MODEL, DIM)
    hnsw_s = time.perf_counter() - began
    return {"copy_s": copy_s, "gin_s": gin_s, "hnsw_s": hnsw_s}


def latencies(conn: Any, mode: str, queries: list[tuple[str, np.ndarray]], embedder: FixedEmbedder) -> list[float]:
    out = []
    for text, vector in queries:
        embedder.vector = vector
        began = time.perf_counter()
        search(conn, text, mode=mode, limit=10, embedder=embedder)
        out.append((time.perf_counter() - began) * 1000)
    return out


def measure(conn: Any, queries: list[tuple[str, np.ndarray]], embedder: FixedEmbedder) -> dict[str, Any]:
    results = {}
    print(f"\n{'mode':<10}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for mode in ("keyword", "vector", "hybrid"):
        latencies(conn, mode, queries[:20], embedder)  # warm the caches
        ms = latencies(conn, mode, queries, embedder)
        results[mode] = {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}
        print(f"{mode:<10}{results[mode]['p50_ms']:>10.1f}{results[mode]['p95_ms']:>10.1f}{max(ms):>10.1f}", flush=True)
    return results


@contextmanager
def kept_database(server_url: str, name: str) -> Iterator[str]:
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = make_conninfo(**{**conninfo_to_dict(server_url), "dbname": name})
    print(f"loading into {url} (kept)")
    yield url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--loaded", help="a database this bench loaded before: measure the queries only")
    parser.add_argument("--keep", metavar="NAME",
                        help="load into database NAME on the server of URL and keep it (for --loaded runs)")
    parser.add_argument("url", nargs="?")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    vocab = vocabulary()
    mid = vocab[200:3000]
    queries = [(" ".join(rng.choice(mid, 3)), unit_vectors(rng, centres, 1)[0]) for _ in range(args.queries)]
    embedder = FixedEmbedder()
    if args.loaded:
        with connect(args.loaded) as conn:
            rows = conn.execute("select count(*) from chunks").fetchone()[0]
            print(f"{rows:,} chunks already loaded, {args.queries} queries per mode")
            results = measure(conn, queries, embedder)
        record("search_scale_queries", {"rows": rows, "latency": results})
        return
    with server(args.url or Settings.from_env().database_url) as server_url, \
            (kept_database(server_url, args.keep) if args.keep else scratch_database(server_url)) as url, \
            connect(url) as conn:
        migrate(conn)
        print(f"{args.rows:,} chunks, {len(vocab):,}-word vocabulary, {args.queries} queries per mode")
        loaded = load(conn, args.rows, vocab, rng, centres)
        with connect(url, autocommit=True) as admin:
            admin.execute("vacuum analyze chunks")
            size = admin.execute("select pg_size_pretty(pg_total_relation_size('chunks'))").fetchone()[0]
        print(f"load: COPY {loaded['copy_s']:.0f} s ({args.rows / loaded['copy_s']:,.0f} rows/s), GIN build "
              f"{loaded['gin_s']:.0f} s, HNSW halfvec build {loaded['hnsw_s']:.0f} s; table + indexes {size}")
        results = measure(conn, queries, embedder)
    record("search_scale", {"rows": args.rows, **loaded, "size": size, "latency": results})


if __name__ == "__main__":
    main()
