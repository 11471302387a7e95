"""Search latency at scale: hybrid, keyword and vector queries over N synthetic chunks.

Chunks are ~1 KB of English words drawn by Zipf's law from a real vocabulary (the words of the
Mueller report, volume II), so the tsvector/GIN side sees a natural word distribution; vectors are
256-d unit vectors in 100 clusters (the offline model's size; bench_hnsw explains the clustering).
Rows go in as the pipeline's bulk path does — COPY into the bare table, then the GIN and the
halfvec HNSW indexes built once (maintenance_work_mem 1 GB) — in documents of 1,000 chunks.
Queries (query_classes): real questions, 3 mid-frequency words, 3 common words (the worst case),
each with a fresh clustered vector; in keyword, vector and hybrid mode through
pagemill.search.hybrid.search, limit 10, after a warm-up, and through the search statement before
the scale work (bench/search_before.py) in turn: p50/p95 of both and the ratio.

    python -m bench.bench_search_scale [--rows 1000000] [--queries 200] [--modes keyword,vector,hybrid] [URL]
    python -m bench.bench_search_scale --rows 1000000 --keep NAME SERVER_URL  # load into NAME, keep it
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
from bench.retrieval_questions import QUESTIONS
from bench.scratch_db import server
from bench.search_before import search_before
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


def latencies(conn: Any, mode: str, queries: list[tuple[str, np.ndarray]], embedder: FixedEmbedder
              ) -> tuple[list[float], list[float]]:
    """Milliseconds per query, this search's and the one before it, each query run by both in turn
    (so that both see the same load on a shared machine), first by one, then by the other: the
    first to run a query reads its pages into the cache for the second."""
    ours, before = [], []
    for n, (text, vector) in enumerate(queries):
        embedder.vector = vector
        runs = ((ours, search), (before, search_before))
        for out, run in runs if n % 2 else runs[::-1]:
            began = time.perf_counter()
            run(conn, text, mode=mode, limit=10, embedder=embedder)
            out.append((time.perf_counter() - began) * 1000)
    return ours, before


def query_classes(rng: np.random.Generator, vocab: list[str], centres: np.ndarray, n: int
                  ) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Three kinds of keyword query, each with a fresh clustered vector:
    - "questions": the retrieval benchmark's 34 questions in a person's words, in turn (what
      users type: 5-10 content words, some of them common in the corpus);
    - "mid": 3 words of mid frequency (vocabulary ranks 200-3,000; each in 0.6-9% of chunks);
    - "common", the worst case: 3 words of the 100 most frequent, which stop words aside each
      occur in a quarter to all of the chunks."""
    texts = {
        "questions": [QUESTIONS[i % len(QUESTIONS)][1] for i in range(n)],
        "mid": [" ".join(rng.choice(vocab[200:3000], 3)) for _ in range(n)],
        "common": [" ".join(rng.choice(vocab[:100], 3)) for _ in range(n)],
    }
    return {name: [(t, unit_vectors(rng, centres, 1)[0]) for t in ts] for name, ts in texts.items()}


def measure(conn: Any, classes: dict[str, list[tuple[str, np.ndarray]]], embedder: FixedEmbedder,
            modes: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    print(f"\n{'queries':<11}{'mode':<9}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}  |{'before p50':>11}"
          f"{'p95':>8}{'max':>8}  |{'p95 before/ours':>16}")
    for name, queries in classes.items():
        for mode in modes:
            latencies(conn, mode, queries[:10], embedder)  # warm the caches
            ours, before = latencies(conn, mode, queries, embedder)
            row = {f"{who}_{stat}": float(np.percentile(ms, q)) for who, ms in (("ours", ours), ("before", before))
                   for stat, q in (("p50_ms", 50), ("p95_ms", 95), ("max_ms", 100))}
            results[f"{name}/{mode}"] = row
            print(f"{name:<11}{mode:<9}{row['ours_p50_ms']:>8.1f}{row['ours_p95_ms']:>8.1f}{row['ours_max_ms']:>8.1f}  |"
                  f"{row['before_p50_ms']:>11.1f}{row['before_p95_ms']:>8.1f}{row['before_max_ms']:>8.1f}  |"
                  f"{row['before_p95_ms'] / row['ours_p95_ms']:>15.1f}x", flush=True)
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
    parser.add_argument("--modes", default="keyword,vector,hybrid")
    parser.add_argument("--loaded", help="a database this bench loaded before: measure the queries only")
    parser.add_argument("--keep", metavar="NAME",
                        help="load into database NAME on the server of URL and keep it (for --loaded runs)")
    parser.add_argument("url", nargs="?")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    vocab = vocabulary()
    classes = query_classes(rng, vocab, centres, args.queries)
    embedder = FixedEmbedder()
    if args.loaded:
        with connect(args.loaded) as conn:
            rows = conn.execute("select count(*) from chunks").fetchone()[0]
            # Each search must be a transaction of its own: inside an open one, the scan options
            # it sets (set_config(..., true)) would outlive it and reach the next one.
            conn.commit()
            print(f"{rows:,} chunks already loaded, {args.queries} queries per mode")
            results = measure(conn, classes, embedder, args.modes.split(","))
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
        results = measure(conn, classes, embedder, args.modes.split(","))
    record("search_scale", {"rows": args.rows, **loaded, "size": size, "latency": results})


if __name__ == "__main__":
    main()
