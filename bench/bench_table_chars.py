"""The character list table detection starts from (``pymupdf.table.make_chars``), three ways on
the same pages: PyMuPDF's own function, pagemill's (pagemill/pdf/tables.py, the same list value
for value, checked here on every page), and the rawdict extraction both read it from (the floor
no list of characters can go under). Real pages (the corpus, up to ``--max-pages`` per file) and
a generated catalog with ruled tables.

    python -m bench.bench_table_chars [--corpus DIR] [--max-pages 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymupdf
import pymupdf.table

from bench.bench_extract import CORPUS
from bench.inputs import machine
from pagemill.pdf import tables
from pagemill.pdf.document import MUPDF_ERRORS
from pagemill_tools.sample import make_mixed


def listed(make_chars: Callable[..., Any], page: pymupdf.Page) -> tuple[float, list[dict[str, Any]]]:
    """(CPU seconds, the list)."""
    pymupdf.table._CHARS_VAR.set([])
    started = time.process_time()
    make_chars(page)
    return time.process_time() - started, list(pymupdf.table.CHARS._list())


def rawdict_floor(page: pymupdf.Page) -> None:
    textpage = page.get_textpage(flags=pymupdf.table.FLAGS)
    page.get_text("rawdict", textpage=textpage)


def measure(path: Path, max_pages: int, repeat: int) -> tuple[int, int, float, float, float]:
    """(pages, characters, PyMuPDF s, pagemill s, floor s), each the best of ``repeat``."""
    pages = chars = 0
    theirs = ours = floor = 0.0
    with pymupdf.open(path) as doc:
        if doc.needs_pass and not doc.authenticate(""):
            return 0, 0, 0.0, 0.0, 0.0
        for page in (doc.load_page(n) for n in range(min(doc.page_count, max_pages))):
            runs_theirs, runs_ours, runs_floor = [], [], []
            for _ in range(repeat):
                t, expected = listed(tables._pymupdf_make_chars, page)
                o, got = listed(tables.make_chars, page)
                if got != expected:
                    raise SystemExit(f"{path.name} page {page.number + 1}: the lists differ")
                started = time.process_time()
                rawdict_floor(page)
                runs_theirs.append(t), runs_ours.append(o), runs_floor.append(time.process_time() - started)
            pages, chars = pages + 1, chars + len(expected)
            theirs, ours, floor = theirs + min(runs_theirs), ours + min(runs_ours), floor + min(runs_floor)
    return pages, chars, theirs, ours, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--max-pages", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {machine()['loadavg']}; CPU ms, best of {args.repeat} per page")
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as tmp:
        generated = Path(tmp) / "generated-mixed-40.pdf"
        make_mixed(generated, pages=40, images=8, table_every=2)
        paths = [generated, *sorted(args.corpus.glob("*.pdf"))]
        print(f"{'file':<44}{'pages':>6}{'chars':>9}{'PyMuPDF':>10}{'pagemill':>10}{'floor':>9}{'pm/PyMuPDF':>12}")
        totals = [0, 0, 0.0, 0.0, 0.0]
        for path in paths:
            try:
                pages, chars, theirs, ours, floor = measure(path, args.max_pages, args.repeat)
            except (*MUPDF_ERRORS, ValueError) as exc:  # files the corpus holds to be unreadable
                print(f"{path.name[:43]:<44} skipped: {exc}")
                continue
            if not chars:
                continue
            totals = [a + b for a, b in zip(totals, (pages, chars, theirs, ours, floor), strict=True)]
            print(f"{path.name[:43]:<44}{pages:>6}{chars:>9}{1000 * theirs:>10.1f}{1000 * ours:>10.1f}"
                  f"{1000 * floor:>9.1f}{ours / theirs:>11.2f}x")
        pages, chars, theirs, ours, floor = totals
        print(f"{'all':<44}{pages:>6}{chars:>9}{1000 * theirs:>10.1f}{1000 * ours:>10.1f}{1000 * floor:>9.1f}"
              f"{ours / theirs:>11.2f}x   (floor/PyMuPDF {floor / theirs:.2f}x)")


if __name__ == "__main__":
    main()
