"""Two hundred small documents through one local engine: every one ends (none left running) and
the Lambda workers' memory stays flat from the first wave to the last."""

from __future__ import annotations

from pathlib import Path

import psutil
import pymupdf
import pytest

from pagemill_tools.engine.engine import LocalEngine

pytestmark = pytest.mark.heavy(110)

# A worker may grow a little as caches warm (fonts, imports); a leak per document would show as
# tens of MB over 180 documents.
RSS_GROWTH_ALLOWED_MB = 48


def _documents(folder: Path, first: int, count: int) -> list[Path]:
    paths = []
    for n in range(first, first + count):
        path = folder / f"doc{n:04d}.pdf"
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), f"Document number {n}: a short note.")
        doc.save(path)
        paths.append(path)
    return paths


def _worker_rss_mb(engine: LocalEngine) -> dict[int, float]:
    assert engine.runtime is not None
    return {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in engine.runtime.worker_pids()}


def test_two_hundred_documents_all_end_and_worker_memory_stays_flat(engine: LocalEngine, db, tmp_path: Path) -> None:
    # GIVEN a first wave of 20 documents has warmed the workers
    first = [engine.submit(p) for p in _documents(tmp_path, 0, 20)]
    engine.wait(first)
    warm = _worker_rss_mb(engine)
    # WHEN 180 more go through
    rest = [engine.submit(p) for p in _documents(tmp_path, 20, 180)]
    engine.wait(rest)
    after = _worker_rss_mb(engine)
    # THEN every execution ended, every document succeeded, none is left running
    runs = first + rest
    assert {r.status for r in runs} == {"SUCCEEDED"}
    assert db.execute(
        "select status, count(*) from documents where id = any(%s) group by status", ([r.document_id for r in runs],)
    ).fetchall() == [("succeeded", 200)]
    assert db.execute("select count(*) from documents where status = 'running'").fetchone() == (0,)
    # AND the same worker processes served the whole run, without growing
    assert set(after) == set(warm), "a worker was replaced: something crashed or ran out of memory"
    for pid, rss in after.items():
        assert rss - warm[pid] < RSS_GROWTH_ALLOWED_MB, (pid, warm[pid], rss)
