"""One large document through the whole local pipeline (the synthesized state machine on moto,
handlers in worker processes, embedded PostgreSQL), beside plain single-process passes over the
same file:

  pipeline                     Plan → ExtractPages → Enrich (embeddings; captions off) → Write,
                               workers = cores: a warm-up document, a 10-page one (a small
                               document's fixed costs, for the scale model), then the large one
  pymupdf4llm.to_markdown      the plain call with its defaults (2.0: the ONNX layout model)
  pymupdf4llm legacy           the same with use_layout(False), the pipeline's markdown mode
  page.get_text()              the floor: text only, no layout, no images

It reports wall time, seconds per state (from the execution history), seconds per function
(invocations), pages/s, worker CPU seconds per page and the peak RSS of each worker process
(sampled by a thread). The document is pagemill_tools.sample.make_mixed (500 pages, 200 photos by
default), generated once under build/bench/.

    python -m bench.bench_e2e [--pages 500] [--images 200] [URL]

The figures the scale model needs are recorded in build/bench/measured.json.
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import psutil

from bench.inputs import machine, peak_rss_bytes, record
from bench.scratch_db import server
from pagemill.db.connect import connect
from pagemill.db.migrate import migrate
from pagemill.settings import Settings
from pagemill_tools.engine.engine import DocumentRun, EngineOptions, LocalEngine
from pagemill_tools.sample import make_mixed
from pagemill_tools.scratch_db import scratch_database

BUILD = Path(__file__).resolve().parents[1] / "build" / "bench"
SAMPLE_SECONDS = 0.1


def document(pages: int, images: int) -> Path:
    path = BUILD / f"mixed-{pages}p-{images}i.pdf"
    if not path.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        make_mixed(partial, pages=pages, images=images)
        partial.replace(path)
    return path


@dataclass
class ProcessStats:
    label: str
    peak_rss_mb: float = 0.0
    cpu_start: float | None = None
    cpu_last: float = 0.0

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_last - (self.cpu_start or 0.0)


@dataclass
class Sampler:
    """Peak RSS and CPU seconds of the engine's Lambda workers and GPU task processes, sampled in a
    thread (a process that exits between samples keeps its last figures)."""

    engine: LocalEngine
    stats: dict[int, ProcessStats] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.sample()  # the CPU baseline of the workers, before the document
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def _processes(self) -> dict[int, str]:
        assert self.engine.runtime is not None and self.engine.containers is not None
        # The engine's own process serves moto S3 and runs the interpreter: work the pipeline needs.
        found = {os.getpid(): "engine (moto, interpreter)"}
        found.update({pid: "Lambda worker" for pid in self.engine.runtime.worker_pids()})
        found.update({p.pid: "GPU task (CPU here)" for _, p in list(self.engine.containers.tasks.values())})
        return found

    def sample(self) -> None:
        for pid, label in self._processes().items():
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    rss = process.memory_info().rss / 2**20
                    times = process.cpu_times()
            except psutil.Error:
                continue  # exited since the listing
            s = self.stats.setdefault(pid, ProcessStats(label))
            s.peak_rss_mb = max(s.peak_rss_mb, rss)
            cpu = times.user + times.system
            if s.cpu_start is None:
                # A process first seen mid-run (the GPU task) counts from its start.
                s.cpu_start = cpu if self._thread is None else 0.0
            s.cpu_last = cpu


@dataclass
class DocumentFigures:
    """One document's run: wall time, seconds per state and per function."""

    pages: int
    wall_s: float
    states: dict[str, float]
    functions: dict[str, tuple[int, float]]  # name: (invocations, seconds)
    transitions: int  # states its execution entered (its map's child executions aside)


@dataclass
class PipelineRun:
    small: DocumentFigures
    large: DocumentFigures
    processes: list[ProcessStats]  # during the large document
    rows: dict[str, int]  # the large document's rows


def run_pipeline(large: Path, small: Path, warmup: Path, database_url: str, workers: int) -> PipelineRun:
    """The warm-up document first (imports, caches), then a small and the large document, one at a time."""
    options = EngineOptions(
        home=BUILD / "home", database_url=database_url, workers=workers, no_captions=True,
    )
    with LocalEngine(options) as engine:
        _measure(engine, warmup)
        small_figures, _ = _measure(engine, small)
        with Sampler(engine) as sampler:
            large_figures, run = _measure(engine, large)
    with connect(database_url) as conn:
        rows = {
            table: conn.execute(f"select count(*) from {table} where document_id = %s", (run.document_id,)).fetchone()[0]
            for table in ("pages", "chunks", "images")
        }
        rows["embeddings"] = conn.execute(
            "select count(*) from images where document_id = %s and embedding is not null", (run.document_id,)
        ).fetchone()[0]
    return PipelineRun(small_figures, large_figures, list(sampler.stats.values()), rows)


def _measure(engine: LocalEngine, path: Path) -> tuple[DocumentFigures, DocumentRun]:
    assert engine.runtime is not None
    engine.runtime.invocations.clear()
    started = time.perf_counter()
    run = engine.submit(path)
    engine.wait([run])
    wall = time.perf_counter() - started
    if run.status != "SUCCEEDED":
        raise RuntimeError(f"{path.name}: execution {run.status}; see the function log {engine.log_path}")
    functions: dict[str, tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    for name, seconds, _ in engine.runtime.invocations:
        count, total = functions[_short(name)]
        functions[_short(name)] = (count + 1, total + seconds)
    assert run.page_count is not None
    figures = DocumentFigures(run.page_count, wall, engine.state_seconds(run.execution_arn), dict(functions),
                              len(engine.visited_states(run.execution_arn)))
    return figures, run


def _short(function: str) -> str:
    """The template's logical id without the construct path and hash: FunctionsPlanFunctionAEC69F67 → Plan."""
    match = re.fullmatch(r"Functions(\w+?)Function[0-9A-F]{8}", function)
    return match.group(1) if match else function


# --- plain passes, each in a fresh process (imports done before the clock starts) -------------


def plain_pass(mode: str, path: str) -> tuple[float, float]:
    """(seconds, peak RSS MB of the process) of one pass over ``path``."""
    import pymupdf
    import pymupdf4llm

    if mode == "legacy":
        pymupdf4llm.use_layout(False)
    started = time.perf_counter()
    if mode == "get_text":
        with pymupdf.open(path) as doc:
            text = "".join(page.get_text() for page in doc)
    else:
        text = pymupdf4llm.to_markdown(path)
    seconds = time.perf_counter() - started
    if not text.strip():
        raise RuntimeError(f"{mode} pass produced no text")
    return seconds, peak_rss_bytes() / 2**20


PLAIN = [
    ("layout", "pymupdf4llm.to_markdown (default: layout)"),
    ("legacy", "pymupdf4llm.to_markdown, use_layout(False)"),
    ("get_text", "page.get_text(), text only"),
]


def run_plain(path: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for mode, _ in PLAIN:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            out[mode] = pool.submit(plain_pass, mode, str(path)).result()
    return out


# --- report ------------------------------------------------------------------------------------


def report(images: int, workers: int, run: PipelineRun, plain: dict[str, tuple[float, float]], load_before: str) -> None:
    large = run.large
    pages = large.pages
    print(f"\n{pages} pages, {images} photos (pagemill_tools.sample.make_mixed), {workers} Lambda workers on "
          f"{os.cpu_count()} CPUs, captions off; load before {load_before}, after {machine()['loadavg']}")
    print(f"rows written: {run.rows['pages']} pages, {run.rows['chunks']} chunks, {run.rows['images']} images "
          f"({run.rows['embeddings']} with embeddings)\n")
    print(f"{'':<46}{'seconds':>9}{'pages/s':>9}{'peak RSS MB':>13}{'vs pipeline':>13}")
    print(f"{'pipeline, submit to SUCCEEDED':<46}{large.wall_s:>9.1f}{pages / large.wall_s:>9.1f}"
          f"{max(p.peak_rss_mb for p in run.processes):>13.0f}{'1.00x':>13}")
    for mode, label in PLAIN:
        seconds, rss = plain[mode]
        print(f"{label:<46}{seconds:>9.1f}{pages / seconds:>9.1f}{rss:>13.0f}{seconds / large.wall_s:>12.2f}x")
    small = run.small
    print(f"\nseconds per state (execution history){'':<4}{f'{large.pages} pages':>12}{f'{small.pages} pages':>12}")
    for state, seconds in large.states.items():
        print(f"  {state:<40}{seconds:>12.2f}{small.states.get(state, 0.0):>12.2f}")
    print(f"  {'wall, submit to SUCCEEDED':<40}{large.wall_s:>12.2f}{small.wall_s:>12.2f}")
    print(f"  {'states entered (map children aside)':<40}{large.transitions:>12}{small.transitions:>12}")
    print("\nfunction invocations: calls, seconds")
    for name in sorted(large.functions.keys() | small.functions.keys()):
        cells = "".join(f"{n:>6} {s:>6.2f}" for n, s in (d.functions.get(name, (0, 0.0)) for d in (large, small)))
        print(f"  {name:<40}{cells}")
    print(f"\nprocesses during the {pages}-page document")
    for p in sorted(run.processes, key=lambda p: p.label):
        print(f"  {p.label:<28} peak RSS {p.peak_rss_mb:>6.0f} MB   CPU {p.cpu_seconds:>6.1f} s")
    cpu = sum(p.cpu_seconds for p in run.processes)
    print(f"  CPU per page, all processes {cpu / pages * 1000:.0f} ms; pipeline {pages / large.wall_s:.1f} pages/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default=None, help="PostgreSQL server (default: DATABASE_URL or embedded)")
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    large, small, warmup = document(args.pages, args.images), document(10, 4), document(4, 2)
    workers = os.cpu_count() or 2
    load_before = machine()["loadavg"]
    with server(args.url or Settings.from_env().database_url) as server_url, scratch_database(server_url) as url:
        migrate(url)
        run = run_pipeline(large, small, warmup, url, workers)
    plain = run_plain(large)
    report(args.images, workers, run, plain, load_before)
    cpu = sum(p.cpu_seconds for p in run.processes)
    peaks: dict[str, float] = {}
    for p in run.processes:
        peaks[p.label] = max(peaks.get(p.label, 0.0), p.peak_rss_mb)
    record("e2e", {
        "images": args.images, "workers": workers, "cpu_s_per_page": cpu / run.large.pages, "peak_rss_mb": peaks,
        "documents": [asdict(run.small), asdict(run.large)],
        "plain": {mode: {"seconds": s, "peak_rss_mb": r} for mode, (s, r) in plain.items()},
    })


if __name__ == "__main__":
    main()
