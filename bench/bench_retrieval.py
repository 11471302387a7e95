"""Retrieval quality and embedding speed of the offline text embedders on a long public document.

The Mueller report, volume II (192 pages) is extracted as the pipeline extracts it (legacy
markdown, 1,500-character chunks) and written with each embedder's vectors; 34 questions, one per
outline section, asked in other words than the section's own (bench/retrieval_questions.py), are
searched in keyword, vector and hybrid mode. A question is answered when a chunk overlapping its
section's pages is among the first 5 hits (hit@5); MRR is the mean of 1/rank of the first such chunk
within the first 10 (0 beyond). Keyword is PostgreSQL full text alone — the baseline — with both
"all words" (websearch_to_tsquery, AND) and "any word" (OR, ranked) matching.

Embedding speed is chunks per second on one thread (OMP_NUM_THREADS=1 for the e5 engine).

    python -m bench.bench_retrieval [--embedders wordllama,e5] [URL]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pymupdf  # noqa: E402

from bench.inputs import record  # noqa: E402
from bench.retrieval_questions import QUESTIONS  # noqa: E402
from bench.scratch_db import server  # noqa: E402
from pagemill.db.chunk_vectors import build_index  # noqa: E402
from pagemill.db.connect import connect  # noqa: E402
from pagemill.db.documents import register_document  # noqa: E402
from pagemill.db.migrate import migrate  # noqa: E402
from pagemill.db.write import ChunkVectors, write_document  # noqa: E402
from pagemill.pdf.pages import extract_pages  # noqa: E402
from pagemill.records import BatchResult, SourceObject  # noqa: E402
from pagemill.search.hybrid import search  # noqa: E402
from pagemill.settings import Settings  # noqa: E402
from pagemill.text_embed.select import local_embedder  # noqa: E402
from pagemill_tools.scratch_db import scratch_database  # noqa: E402

PDF = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "mueller-report-vol-2.pdf"
DOC = "mueller" + "0" * 25
TOP = 10


def extract(path: Path) -> BatchResult:
    doc = pymupdf.open(path)
    try:
        return extract_pages(doc, document_id=DOC, batch_no=0, first_page=1, last_page=doc.page_count,
                             settings=Settings(), store_image=lambda sha, ext, data: f"images/{sha}.{ext}")
    finally:
        doc.close()


def sections(path: Path) -> dict[int, tuple[int, int]]:
    """First page of each outline entry → (first, last) page of its section."""
    doc = pymupdf.open(path)
    starts = sorted({page for _, _, page in doc.get_toc()})
    ends = {s: (starts[i + 1] if i + 1 < len(starts) else doc.page_count) for i, s in enumerate(starts)}
    doc.close()
    return {s: (s, ends[s]) for s in starts}


def score(conn: Any, mode: str, embedder: Any, spans: dict[int, tuple[int, int]], match: str) -> tuple[float, float]:
    hits5 = rr = 0.0
    for start, question in QUESTIONS:
        first, last = spans[start]
        found = search(conn, question, mode=mode, limit=TOP, embedder=embedder, match=match)
        ranks = [i for i, h in enumerate((h for h in found if h.kind == "chunk"), start=1)
                 if h.first_page <= last and h.last_page >= first]
        if ranks and ranks[0] <= 5:
            hits5 += 1
        rr += 1 / ranks[0] if ranks else 0
    return hits5 / len(QUESTIONS), rr / len(QUESTIONS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedders", default="wordllama,e5")
    parser.add_argument("url", nargs="?")
    args = parser.parse_args()
    pdf = PDF
    began = time.perf_counter()
    batch = extract(pdf)
    spans = sections(pdf)
    texts = [c.text for c in batch.chunks]
    print(f"{pdf.name}: {len(batch.pages)} pages, {len(texts)} chunks, extracted in {time.perf_counter() - began:.1f} s; "
          f"{len(QUESTIONS)} questions")
    rows: list[tuple[str, str, float, float]] = []
    speeds: dict[str, float] = {}
    with server(args.url or Settings.from_env().database_url) as server_url:
        for name in args.embedders.split(","):
            embedder = local_embedder(name)
            embedder.passages(texts[:2])  # load and warm up
            began = time.perf_counter()
            vectors = embedder.passages(texts)
            speeds[name] = len(texts) / (time.perf_counter() - began)
            print(f"{name}: {speeds[name]:,.1f} chunks/s on one thread", flush=True)
            with scratch_database(server_url) as url, connect(url) as conn:
                migrate(conn)
                register_document(conn, document_id=DOC, sha256=DOC * 2, size_bytes=1,
                                  source=SourceObject("bench", pdf.name), execution_arn=None)
                write_document(conn, document_id=DOC, batches=[batch], timings={}, stats={},
                               chunk_vectors=ChunkVectors(embedder.model, list(vectors)))
                build_index(conn, embedder.model, embedder.dim)
                # The statistics autovacuum gathers on a table that grew this much: the keyword
                # search reads its words' shares of chunks from them.
                conn.execute("analyze chunks")
                conn.commit()
                if not rows:
                    for match in ("all", "any"):
                        rows.append((f"keyword ({match} words)", "-", *score(conn, "keyword", None, spans, match)))
                for mode in ("vector", "hybrid"):
                    rows.append((mode, name, *score(conn, mode, embedder, spans, "any")))
                print("  " + "; ".join(f"{m} {e}: hit@5 {h:.3f} MRR {r:.3f}" for m, e, h, r in rows), flush=True)
    baseline = max(r[3] for r in rows if r[0].startswith("keyword"))
    print(f"\n{'mode':<22}{'embedder':<12}{'hit@5':>8}{'MRR':>8}{'MRR vs keyword':>16}")
    for mode, name, hit5, mrr in rows:
        print(f"{mode:<22}{name:<12}{hit5:>8.3f}{mrr:>8.3f}{mrr / baseline if baseline else 0:>15.2f}x")
    print("\nembedding, one thread: " + ", ".join(f"{n} {s:,.0f} chunks/s" for n, s in speeds.items()))
    record("retrieval", {"chunks": len(texts), "questions": len(QUESTIONS),
                         "results": [{"mode": m, "embedder": e, "hit_at_5": h, "mrr": r} for m, e, h, r in rows],
                         "chunks_per_second_one_thread": speeds})


if __name__ == "__main__":
    main()
