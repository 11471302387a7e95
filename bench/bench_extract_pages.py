"""CPU seconds per page of ExtractBatch's library path against one plain legacy pymupdf4llm pass
and against the raw text floor, per corpus file and per category, with the quality figures
of the same code in the same run.

  get_text   ``page.get_text()`` per page: the floor (plain text, no markdown, no images)
  legacy     one plain legacy pass, ``pymupdf4llm.to_markdown(doc, pages=...)`` with
             ``use_layout(False)`` and its defaults (header sizes from the pages converted)
  pagemill   ``extract_pages`` as ExtractBatch runs it: batches from ``plan_batches``, a fresh
             open per batch, images hashed and handed to a sink instead of S3, the completeness
             check and its fallbacks, OCR on pages without a text layer, chunks
  fast       the same with ``markdown_mode=fast``: the layout model never reads a page (unruled
             tables come out as text)

CPU time (``time.process_time``: every thread of this process) so that other work on a shared
machine distorts it little; the best of ``--repeat`` runs per file and mode. Each PDF
contributes its first ``--max-pages`` pages; every mode extracts exactly the same pages. The
goal (issue 16) is pagemill at or below legacy in every category but scanned, whose pages are
read by OCR.

Then, in the same run and on the same code: words lost against each page's own text layer by
the markdown the timed runs gave (bench_completeness's table) and the markdown quality scores
on generated pages of known truth (bench_markdown_quality).

    python -m bench.bench_extract_pages [--corpus DIR] [--max-pages 100] [--repeat 2] [--only NAME,...]
                                        [--categories text,tables,...] [--no-quality]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
import pymupdf4llm

from bench import bench_completeness, bench_markdown_quality
from bench.bench_extract import CORPUS, SETTINGS, Extractor, by_get_text, by_pagemill, pagemill_with
from bench.inputs import machine
from pagemill.errors import InputError
from pagemill.pdf.document import open_pdf
from pagemill.pdf.ocr import rapidocr_engine
from pagemill_tools.sample import make_mixed

GOAL_CATEGORIES = ("text", "multi-column", "tables", "image-heavy", "long")


def plain_legacy(path: Path, pages: list[int]) -> dict[int, str]:
    """What a user runs instead: one call, pymupdf4llm's defaults."""
    with pymupdf.open(path) as doc:
        chunks = pymupdf4llm.to_markdown(doc, pages=pages, page_chunks=True)
    return {i: c["text"] for i, c in zip(pages, chunks, strict=True)}


MODES: dict[str, Extractor] = {
    "get_text": by_get_text, "legacy": plain_legacy, "pagemill": by_pagemill,
    "fast": pagemill_with(dataclasses.replace(SETTINGS, markdown_mode="fast")),
}


@dataclass
class Row:
    path: Path
    category: str
    pages: list[int]
    cpu: dict[str, float] = field(default_factory=dict)  # mode -> best CPU seconds
    markdown: dict[str, dict[int, str]] = field(default_factory=dict)  # mode -> page index -> markdown


def categories(corpus: Path) -> dict[str, str]:
    with open(corpus / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return {row["file"]: row["category"] for row in csv.DictReader(f, delimiter="\t")}


def corpus_rows(corpus: Path, max_pages: int, only: set[str], wanted: set[str]) -> list[Row]:
    rows = []
    category = categories(corpus)
    for path in sorted(corpus.glob("*.pdf")):
        if (only and path.stem not in only and path.name not in only) or (wanted and category.get(path.name) not in wanted):
            continue
        try:
            with open_pdf(path, SETTINGS) as doc:
                pages = list(range(min(doc.page_count, max_pages)))
        except InputError:
            continue  # refused at Plan: never extracted
        rows.append(Row(path, category.get(path.name, "?"), pages))
    return rows


def measure(row: Row, name: str, mode: Extractor, repeat: int) -> None:
    row.cpu[name] = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        row.markdown[name] = mode(row.path, row.pages)
        row.cpu[name] = min(row.cpu[name], time.process_time() - started)


def replay(rows: list[Row], name: str) -> Extractor:
    """The markdown a mode gave in the timed runs, for the quality tables of the same run."""
    by_path = {row.path: row.markdown[name] for row in rows}

    def run(path: Path, pages: list[int]) -> dict[int, str]:
        return by_path[path]

    return run


def warm_up(folder: Path) -> None:
    """Imports, pymupdf4llm's first-call set-up and the OCR models are not a page's time."""
    path = folder / "warm.pdf"
    make_mixed(path, pages=10, images=4)
    rapidocr_engine()
    for mode in MODES.values():
        mode(path, list(range(10)))


def print_speed(rows: list[Row]) -> None:
    ms = "ms/page"
    print(f"\nCPU per page (best of runs); ratios to legacy; load average {machine()['loadavg']}")
    print(f"{'file':<44}{'category':<15}{'pages':>6}{'get_text ' + ms:>17}{'legacy ' + ms:>15}"
          f"{'pagemill ' + ms:>17}{'pm/legacy':>11}{'fast/legacy':>12}{'gt/legacy':>11}")
    for row in rows:
        print(_line(row.path.name[:43], row.category, len(row.pages), row.cpu))
    print(f"\nper category (total CPU over total pages){'':>10}goal: pm/legacy <= 1.00 except scanned")
    by_category: dict[str, list[Row]] = {}
    for row in rows:
        by_category.setdefault(row.category, []).append(row)
    for name in sorted(by_category, key=lambda c: (c not in GOAL_CATEGORIES, c)):
        group = by_category[name]
        total = {m: sum(r.cpu[m] for r in group) for m in MODES}
        pages = sum(len(r.pages) for r in group)
        mark = "" if name in GOAL_CATEGORIES else "  (not in the goal)" if name != "scanned" else "  (OCR; excluded)"
        print(_line(f"{len(group)} files", name, pages, total) + mark)


def _line(name: str, category: str, pages: int, cpu: dict[str, float]) -> str:
    per = {m: 1000 * s / pages for m, s in cpu.items()}
    return (f"{name:<44}{category:<15}{pages:>6}{per['get_text']:>17.2f}{per['legacy']:>15.2f}{per['pagemill']:>17.2f}"
            f"{cpu['pagemill'] / cpu['legacy']:>10.2f}x{cpu['fast'] / cpu['legacy']:>11.2f}x"
            f"{cpu['get_text'] / cpu['legacy']:>10.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--max-pages", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated corpus file names (default: all)")
    parser.add_argument("--categories", default="", help="comma-separated MANIFEST categories (default: all)")
    parser.add_argument("--no-quality", action="store_true", help="speed only")
    args = parser.parse_args()
    pymupdf4llm.use_layout(False)  # every mode here is legacy (the deployed markdown_mode)
    print(f"load average at start: {machine()['loadavg']}")
    rows = corpus_rows(args.corpus, args.max_pages, {n for n in args.only.split(",") if n},
                       {c for c in args.categories.split(",") if c})
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as tmp:
        warm_up(Path(tmp))
    for row in rows:
        for name, mode in MODES.items():
            measure(row, name, mode, args.repeat)
        print(_line(row.path.name[:43], row.category, len(row.pages), row.cpu), flush=True)  # progress
    print_speed(rows)
    if args.no_quality:
        return
    print("\nwords lost against each page's own text layer (the markdown of the timed runs)")
    bench_completeness.report([(row.path, row.pages) for row in rows],
                              {name: replay(rows, name) for name in ("legacy", "pagemill", "fast")})
    print("\nmarkdown quality on generated pages of known truth")
    bench_markdown_quality.report({"legacy": plain_legacy, "pagemill": by_pagemill, "fast": MODES["fast"]})
    print(f"\nload average at end: {machine()['loadavg']}")


if __name__ == "__main__":
    main()
