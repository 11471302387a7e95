"""The whole local pipeline over real documents (../shared/corpus, MANIFEST.tsv), every stage a user
gets by default on (OCR where a page has no text layer, the completeness check, chunk embeddings;
captions and speech off), beside plain legacy pymupdf4llm passes over the same files, in one run:

  pipeline    one engine (workers = cores), every file submitted at once as `pagemill run DIR`
              does; wall from the first upload to the last execution's end
  plain       pymupdf4llm.to_markdown with use_layout(False) (the pipeline's markdown mode), one
              file after the other in one process, imports done before the clock starts

With ``--one-at-a-time`` each file instead goes through the warm engine alone, right after its
plain pass: the per-document ratios (goal: none slower than its plain pass) and where a document's
seconds go — ExtractPages (the page work) against the rest, the engine's fixed cost per document
(Plan, CollectImages, Enrich, Write and the transitions between them).

Scanned files are run but left out of the ratios (their plain pass reads no text); with
``--ocr-out`` so are the files of other categories with a page that Plan sends to OCR (a form
that is one picture, a printer's raster): their plain pass reads no text there either. CPU
seconds are reported beside wall seconds: on a shared machine they are the steadier figure.

    python -m bench.bench_pipeline_corpus [--max-pages 20] [--one-at-a-time] [--ocr-out] [--corpus DIR] [URL]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import psutil
import pymupdf

from bench.bench_e2e import document
from bench.inputs import machine
from bench.scratch_db import server
from pagemill.db.connect import connect
from pagemill.db.migrate import migrate
from pagemill.pdf.document import inspect_pdf
from pagemill.settings import Settings
from pagemill_tools.engine.engine import DocumentRun, EngineOptions, LocalEngine
from pagemill_tools.sample import add_text_grid
from pagemill_tools.scratch_db import scratch_database

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BUILD = Path(__file__).resolve().parents[1] / "build" / "bench"
EXCLUDED_FROM_RATIO = {"scanned"}


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    category: str
    pages: int
    read_by_ocr: bool = False  # a page without a text layer (--ocr-out)

    @property
    def out_of_ratio(self) -> bool:
        return self.category in EXCLUDED_FROM_RATIO or self.read_by_ocr


def _read_by_ocr(path: Path) -> bool:
    """Whether Plan sends a page of the file to OCR."""
    with pymupdf.open(path) as doc:
        return bool(inspect_pdf(doc).ocr_pages)


@dataclass
class Figures:
    """One file: its plain pass and its run through the pipeline."""

    file: CorpusFile
    plain_s: float = 0.0
    plain_cpu_s: float = 0.0
    pipeline_s: float = 0.0  # submit to the execution's end
    states: dict[str, float] = field(default_factory=dict)
    status: str = ""
    rows: tuple[int, int, int] = (0, 0, 0)  # pages, chunks, images

    @property
    def extract_s(self) -> float:
        """The page work: ExtractPages' seconds, or ExtractOnlyBatch's for a document of one batch."""
        return self.states.get("ExtractPages", 0.0) + self.states.get("ExtractOnlyBatch", 0.0)

    @property
    def fixed_s(self) -> float:
        """What is not page work: the execution's seconds outside its extraction."""
        return self.pipeline_s - self.extract_s


def corpus_files(corpus: Path, max_pages: int | None) -> list[CorpusFile]:
    """The manifest's files that open and have pages (the error cases are the tests' business)."""
    with open(corpus / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    files = [
        CorpusFile(corpus / r["file"], r["category"], int(r["pages"]))
        for r in rows
        if r["pages"].isdigit() and int(r["pages"]) > 0 and (corpus / r["file"]).is_file()
    ]
    return [f for f in files if max_pages is None or f.pages <= max_pages]


# --- plain passes, in a fresh process ------------------------------------------------------------


def _plain_passes(paths: list[str]) -> list[tuple[float, float]]:
    import pymupdf4llm

    pymupdf4llm.use_layout(False)
    out = []
    for path in paths:
        wall, cpu = time.perf_counter(), time.process_time()
        pymupdf4llm.to_markdown(path)
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


class PlainPasses:
    """One warm process for every plain pass of the run."""

    def __enter__(self) -> PlainPasses:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        self._pool.submit(_plain_passes, []).result()  # imports before any clock starts
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()

    def run(self, files: list[CorpusFile]) -> list[tuple[float, float]]:
        return self._pool.submit(_plain_passes, [str(f.path) for f in files]).result()


# --- the pipeline ----------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _settle(engine: LocalEngine, figures: Figures, run: DocumentRun) -> None:
    figures.pipeline_s = run.seconds
    figures.status = run.status
    figures.states = engine.state_seconds(run.execution_arn)


def _rows(url: str, runs: list[tuple[Figures, DocumentRun]]) -> None:
    with connect(url) as conn:
        for figures, run in runs:
            figures.rows = conn.execute(
                "select (select count(*) from pages where document_id = %(d)s),"
                " (select count(*) from chunks where document_id = %(d)s),"
                " (select count(*) from images where document_id = %(d)s)",
                {"d": run.document_id},
            ).fetchone()


@dataclass
class Totals:
    wall_s: float = 0.0
    engine_cpu_s: float = 0.0  # the engine's process: moto S3, the interpreter, the watch
    workers_cpu_s: float = 0.0  # Lambda workers (and GPU-task processes), killed ones included
    excluded_wall_s: float = 0.0  # all at once: the files out of the ratio, run after the others


WARM_UP_ROUNDS = 3


def warm_up(engine: LocalEngine, paths: list[Path]) -> None:
    """Documents outside the figures, one per worker at once, round after round: every worker's
    imports and models (the layout model's, the text embedder's, CLIP's) are loaded before the
    clock starts, not in some document's figures (a warm Lambda keeps them too). One round left
    a worker that never ran EmbedChunks, and the first file it served paid the embedder's load
    (bench/RESULTS.md, issue 16, fifth round)."""
    workers = engine.options.workers
    for start in range(0, len(paths), workers):
        engine.wait([engine.submit(path) for path in paths[start : start + workers]])


def warm_up_documents(n: int) -> list[Path]:
    """``n`` distinct documents: four pages with two images and a ruled table (bench_e2e.document),
    then a page of text in aligned columns that the layout model reads."""
    paths = []
    for i in range(n):
        path = BUILD / f"warm-up-{i}.pdf"
        if not path.exists():
            doc = pymupdf.open(document(4, 2))
            page = doc.new_page()
            page.insert_text((72, 72), f"Warm-up document {i}", fontsize=14)  # distinct content
            add_text_grid(page)
            doc.save(path)
            doc.close()
        paths.append(path)
    return paths


def run_corpus(files: list[CorpusFile], url: str, home: Path, *, one_at_a_time: bool) -> tuple[list[Figures], Totals]:
    options = EngineOptions(
        home=home, database_url=url, no_captions=True, function_env={"PAGEMILL_SPEECH": "off"},
    )
    figures = [Figures(f) for f in files]
    totals = Totals()
    with PlainPasses() as plain, LocalEngine(options) as engine:
        assert engine.runtime is not None
        warm_up(engine, warm_up_documents(engine.options.workers * WARM_UP_ROUNDS))
        workers_before = cpu_seconds(engine.runtime.worker_pids())
        self_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        runs: list[tuple[Figures, DocumentRun]] = []
        if one_at_a_time:
            for f in figures:
                ((f.plain_s, f.plain_cpu_s),) = plain.run([f.file])
                started = time.perf_counter()
                run = engine.submit(f.file.path)
                engine.wait([run])
                totals.wall_s += time.perf_counter() - started
                runs.append((f, run))
        else:
            for f, (wall, cpu) in zip(figures, plain.run(files)):
                f.plain_s, f.plain_cpu_s = wall, cpu
            # The files out of the ratio run after the others, so the ratio's wall is theirs alone.
            for excluded in (False, True):
                batch = [f for f in figures if f.file.out_of_ratio == excluded]
                started = time.perf_counter()
                batch_runs = [(f, engine.submit(f.file.path)) for f in batch]
                engine.wait([run for _, run in batch_runs])
                if excluded:
                    totals.excluded_wall_s = time.perf_counter() - started
                else:
                    totals.wall_s = time.perf_counter() - started
                runs += batch_runs
        totals.engine_cpu_s = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - self_before
        workers_alive = cpu_seconds(engine.runtime.worker_pids())
        for f, run in runs:
            _settle(engine, f, run)
    # The workers were killed and reaped at close: their CPU is the children's now. The warm-up
    # and the engine's start are counted in ``workers_before``.
    children = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    totals.workers_cpu_s = max(children, workers_alive) - workers_before
    _rows(url, runs)
    return figures, totals


# --- report ------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def report(figures: list[Figures], totals: Totals, *, one_at_a_time: bool, load_before: str) -> None:
    counted = [f for f in figures if not f.file.out_of_ratio]
    pages = sum(f.file.pages for f in figures)
    mode = "one at a time" if one_at_a_time else "all at once"
    print(f"\n{len(figures)} files, {pages} pages, {mode}; {os.cpu_count()} CPUs, captions and speech off; "
          f"load before {load_before}, after {machine()['loadavg']}")
    failed = [f for f in figures if f.status != "SUCCEEDED"]
    if failed:
        print("NOT SUCCEEDED: " + ", ".join(f"{f.file.path.name} ({f.status})" for f in failed))
    print(f"\n{'file':<44}{'category':<21}{'pages':>6}{'plain s':>9}{'pipeline s':>11}{'ratio':>8}"
          f"{'Extract s':>10}{'rest s':>8}{'pages/chunks/images':>21}")
    for f in figures:
        mark = " (not in ratio)" if f.file.out_of_ratio else ""
        rows = "/".join(str(n) for n in f.rows)
        print(f"{f.file.path.name[:43]:<44}{(f.file.category + mark)[:20]:<21}{f.file.pages:>6}{f.plain_s:>9.2f}"
              f"{f.pipeline_s:>11.2f}{_ratio(f.pipeline_s, f.plain_s) if one_at_a_time else '':>8}"
              f"{f.extract_s:>10.2f}{f.fixed_s:>8.2f}{rows:>21}")
    plain_total = sum(f.plain_s for f in counted)
    plain_cpu = sum(f.plain_cpu_s for f in counted)
    print("\nby category (plain s; pipeline: one at a time its executions' s, all at once not split)")
    by_category: dict[str, list[Figures]] = defaultdict(list)
    for f in figures:
        by_category[f.file.category].append(f)
    for category, members in sorted(by_category.items()):
        plain_s = sum(m.plain_s for m in members)
        pipe_s = sum(m.pipeline_s for m in members)
        cells = f"{pipe_s:>9.1f}{_ratio(pipe_s, plain_s):>8}" if one_at_a_time else ""
        print(f"  {category:<24}{len(members):>3} files{sum(m.file.pages for m in members):>6} pages"
              f"{plain_s:>9.1f}{cells}")
    wall = totals.wall_s
    print(f"\ntotal, files in the ratio: plain {plain_total:.1f} s ({plain_cpu:.1f} CPU-s); pipeline wall "
          f"{wall:.1f} s; ratio {_ratio(wall, plain_total)}")
    if totals.excluded_wall_s:
        print(f"files out of the ratio, run after the others: pipeline wall {totals.excluded_wall_s:.1f} s")
    cpu = totals.engine_cpu_s + totals.workers_cpu_s
    n = len(figures)
    print(f"CPU: engine process {totals.engine_cpu_s:.1f} s ({totals.engine_cpu_s / n:.2f} s per document), "
          f"workers {totals.workers_cpu_s:.1f} s; all {cpu:.1f} s against plain {plain_cpu:.1f} s "
          f"({_ratio(cpu, plain_cpu)})")
    print(f"per document: wall {wall / n:.2f} s, plain {plain_total / max(1, len(counted)):.2f} s")
    if one_at_a_time:
        fixed = sorted(f.fixed_s for f in figures)
        slower = [f for f in counted if f.pipeline_s > f.plain_s]
        print(f"engine fixed cost per document (execution outside its extraction): median {fixed[n // 2]:.2f} s, "
              f"mean {sum(fixed) / n:.2f} s, max {fixed[-1]:.2f} s")
        print(f"slower than their plain pass: {len(slower)} of {len(counted)}"
              + (": " + ", ".join(f.file.path.name for f in slower) if slower else ""))
        for f in figures:
            if f.fixed_s > 1.0:  # an outlier: which state held it
                spent = sorted(f.states.items(), key=lambda item: -item[1])[:4]
                print(f"  {f.file.path.name}: {f.fixed_s:.2f} s outside its extraction; "
                      + ", ".join(f"{name} {seconds:.2f}" for name, seconds in spent))
        states: dict[str, float] = defaultdict(float)
        for f in figures:
            for name, seconds in f.states.items():
                states[name] += seconds
        print("seconds per state, mean per document: "
              + ", ".join(f"{name} {seconds / n:.2f}" for name, seconds in states.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default=None, help="PostgreSQL server (default: DATABASE_URL or embedded)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--max-pages", type=int, default=None, help="only files of at most this many pages")
    parser.add_argument("--only", default=None, help="only files whose name matches this regular expression")
    parser.add_argument("--one-at-a-time", action="store_true", help="each file alone through the warm engine")
    parser.add_argument("--ocr-out", action="store_true", help="files with a page read by OCR out of the ratio too")
    args = parser.parse_args()
    if not (args.corpus / "MANIFEST.tsv").is_file():
        raise SystemExit(f"no corpus at {args.corpus} (MANIFEST.tsv)")
    files = corpus_files(args.corpus, args.max_pages)
    if args.only:
        files = [f for f in files if re.search(args.only, f.path.name)]
    if not files:
        raise SystemExit("no corpus file matches")
    if args.ocr_out:
        files = [replace(f, read_by_ocr=_read_by_ocr(f.path)) for f in files]
    load_before = machine()["loadavg"]
    with server(args.url or Settings.from_env().database_url) as server_url, scratch_database(server_url) as url:
        migrate(url)
        figures, totals = run_corpus(files, url, BUILD / "home", one_at_a_time=args.one_at_a_time)
    report(figures, totals, one_at_a_time=args.one_at_a_time, load_before=load_before)


if __name__ == "__main__":
    main()
