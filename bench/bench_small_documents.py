"""Many small documents, the fixed cost per document: N generated text PDFs of one page or a few
(each its own content, so none is a duplicate) through one warm local engine, all submitted at once as
`pagemill run DIR` does, beside plain legacy pymupdf4llm passes over the same files (one warm
process) and the raw floor (PyMuPDF get_text), in one run. Reports wall seconds per document and
the CPU per document of the engine's own process (moto's interpreter and server: local only) and
of the Lambda workers.

    python -m bench.bench_small_documents [--documents 40] [--pages 1] [URL]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import psutil
import pymupdf

from bench.bench_pipeline_corpus import BUILD, CorpusFile, PlainPasses, cpu_seconds, warm_up
from bench.inputs import machine, record
from bench.scratch_db import server
from pagemill.db.migrate import migrate
from pagemill.settings import Settings
from pagemill_tools.scratch_db import scratch_database
from pagemill_tools.startup import import_engine

import_engine()  # as `pagemill run` does
from pagemill_tools.engine.engine import EngineOptions, LocalEngine  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog while the committee reviews the annual budget. " * 30


WARM_UP = 4  # documents before the measured ones (bench_pipeline_corpus.warm_up)


def documents(n: int, pages: int) -> list[Path]:
    folder = BUILD / "small-documents"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n + WARM_UP):  # the first are the engine's warm-up
        path = folder / f"{pages}-page-{i:04d}.pdf"
        if not path.exists():
            doc = pymupdf.open()
            for page_no in range(1, pages + 1):
                page = doc.new_page()
                page.insert_text((72, 72), f"Document {i}, section {page_no}", fontsize=16)
                page.insert_textbox(pymupdf.Rect(72, 90, 523, 770), f"Page {page_no}. {TEXT}", fontsize=11)
            doc.save(path)
            doc.close()
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--pages", type=int, default=1, help="pages per document (seed C's files: about ten)")
    parser.add_argument("url", nargs="?", default=None)
    args = parser.parse_args()
    made = documents(args.documents, args.pages)
    warm, files = made[:WARM_UP], made[WARM_UP:]
    began = time.perf_counter()
    for path in files:
        with pymupdf.open(path) as doc:
            doc[0].get_text()
    floor = time.perf_counter() - began
    with PlainPasses() as plain:
        plain_wall = sum(wall for wall, _ in plain.run([CorpusFile(p, "text", args.pages) for p in files]))
    with server(args.url or Settings.from_env().database_url) as server_url, scratch_database(server_url) as url:
        migrate(url)
        options = EngineOptions(home=BUILD / "home", database_url=url, workers=psutil.cpu_count() or 2)
        with LocalEngine(options) as engine:
            warm_up(engine, warm)
            me = [psutil.Process().pid]
            assert engine.runtime is not None
            engine_cpu, workers_cpu = cpu_seconds(me), cpu_seconds(engine.runtime.worker_pids())
            began = time.perf_counter()
            runs = [engine.submit(path) for path in files]
            engine.wait(runs)
            wall = time.perf_counter() - began
            engine_cpu = cpu_seconds(me) - engine_cpu
            workers_cpu = cpu_seconds(engine.runtime.worker_pids()) - workers_cpu
    n = len(files)
    failed = [r.path.name for r in runs if r.status != "SUCCEEDED"]
    print(f"\n{n} documents of {args.pages} page(s), all at once; {machine()}")
    print(f"  raw floor (get_text)      {floor / n * 1000:8.1f} ms per document")
    print(f"  plain legacy pass         {plain_wall / n * 1000:8.1f} ms per document")
    print(f"  pagemill pipeline         {wall / n * 1000:8.1f} ms per document   ratio to plain {wall / plain_wall:.2f}x")
    print(f"    engine process CPU      {engine_cpu / n * 1000:8.1f} ms per document")
    print(f"    Lambda workers CPU      {workers_cpu / n * 1000:8.1f} ms per document")
    if failed:
        print(f"  NOT SUCCEEDED: {failed}")
    record("small_documents", {"documents": n, "pages": args.pages, "floor_s": floor, "plain_s": plain_wall, "pipeline_s": wall,
                               "engine_cpu_s": engine_cpu, "workers_cpu_s": workers_cpu})


if __name__ == "__main__":
    main()
