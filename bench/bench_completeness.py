"""Text loss on the corpus: how many words of each page's own text layer (``page.get_text()``)
are missing from its markdown, per mode, with the same word comparison as ExtractBatch's check
(pagemill.pdf.completeness).

  legacy     pymupdf4llm legacy as pagemill ran it before this change (``lines_strict`` tables;
             table cells read linearly, which changes the time, not the markdown)
  legacy-ig  legacy with ``ignore_graphics=True``
  layout     pymupdf4llm's layout model (``--layout``: about 3x slower)
  pagemill   ExtractBatch as deployed: legacy, completeness check and fallbacks, OCR

Pages whose text layer holds no words are left out of the loss (OCR pages are in bench_ocr).
Each PDF contributes its first ``--pages`` pages.

    python -m bench.bench_completeness [--corpus DIR] [--pages 40] [--layout]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pymupdf
import pymupdf4llm
from pymupdf4llm.helpers import pymupdf_rag

from bench.bench_extract import (
    CORPUS,
    SETTINGS,
    Extractor,
    by_get_text,
    by_layout,
    legacy,
)
from bench.inputs import machine
from pagemill.errors import InputError
from pagemill.pdf.completeness import word_loss, words
from pagemill.pdf.document import open_pdf
from pagemill.pdf.markdown import TABLE_STRATEGY
from pagemill.pdf.tables import cheaper_tables
from pagemill.pdf.pages import extract_pages


def legacy_before(path: Path, pages: list[int]) -> dict[int, str]:
    with cheaper_tables():
        return legacy(TABLE_STRATEGY)(path, pages)


def legacy_ignore_graphics(path: Path, pages: list[int]) -> dict[int, str]:
    with pymupdf.open(path) as doc:
        chunks = pymupdf4llm.to_markdown(
            doc, pages=pages, page_chunks=True, hdr_info=pymupdf_rag.IdentifyHeaders(doc, pages=pages),
            table_strategy=TABLE_STRATEGY, ignore_graphics=True,
        )
    return {i: c["text"] for i, c in zip(pages, chunks, strict=True)}


SOURCES: Counter[str] = Counter()  # how pagemill obtained each page's text
WARNINGS: Counter[str] = Counter()


def by_pagemill(path: Path, pages: list[int]) -> dict[int, str]:
    """ExtractBatch's extraction of the pages as one batch, counting text sources and warnings."""
    with pymupdf.open(path) as doc:
        result = extract_pages(doc, document_id="bench", batch_no=0, first_page=pages[0] + 1,
                               last_page=pages[-1] + 1, settings=SETTINGS, store_image=lambda h, e, d: h)
    SOURCES.update(record.text_source for record in result.pages)
    WARNINGS.update(w.code for w in result.warnings for _ in w.pages)
    return {record.page_no - 1: record.markdown for record in result.pages}


def report(documents: list[tuple[Path, list[int]]], modes: dict[str, Extractor]) -> None:
    """Print each mode's words lost against the pages' own text layers (and pagemill's text
    sources and warnings when it is one of the modes)."""
    SOURCES.clear()
    WARNINGS.clear()
    reference = {(path, i): text for path, pages in documents for i, text in by_get_text(path, pages).items()}
    text_pages = {key for key, text in reference.items() if words(text)}
    total = sum(word_loss(reference[key], "").total for key in text_pages)
    print(f"{len(documents)} PDFs, {len(text_pages)} pages with a text layer, {total:,} words")
    worst: dict[str, list[tuple[float, str]]] = {}
    print(f"{'mode':<11}{'words lost':>12}{'% lost':>8}{'pages >20% lost':>17}{'pages over tolerance':>22}")
    for name, mode in modes.items():
        pymupdf4llm.use_layout(name == "layout")
        lost = over = some = 0
        for path, pages in documents:
            markdown = mode(path, pages)
            for i in pages:
                if (path, i) not in text_pages:
                    continue
                loss = word_loss(reference[(path, i)], markdown[i])
                lost += loss.missing
                over += loss.fraction > 0.2
                some += not loss.acceptable
                if loss.fraction > 0.2:
                    worst.setdefault(name, []).append((loss.fraction, f"{path.name} p{i + 1}"))
        print(f"{name:<11}{lost:>12,}{100 * lost / total:>7.2f}%{over:>17}{some:>22}")
    for name, pages in worst.items():
        print(f"  {name} >20%: " + ", ".join(f"{where} {share:.0%}" for share, where in sorted(pages, reverse=True)[:12]))
    if SOURCES:  # by_pagemill was one of the modes
        print("pagemill text sources (pages): " + ", ".join(f"{k} {v}" for k, v in SOURCES.most_common()))
        print("pagemill warnings (pages): " + (", ".join(f"{k} {v}" for k, v in WARNINGS.most_common()) or "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--layout", action="store_true")
    args = parser.parse_args()
    modes: dict[str, Extractor] = {"legacy": legacy_before, "legacy-ig": legacy_ignore_graphics}
    if args.layout:
        modes["layout"] = by_layout
    modes["pagemill"] = by_pagemill
    print(f"load average at start: {machine()['loadavg']}")
    documents: list[tuple[Path, list[int]]] = []
    for path in sorted(args.corpus.glob("*.pdf")):
        try:
            with open_pdf(path, SETTINGS) as doc:
                documents.append((path, list(range(min(doc.page_count, args.pages)))))
        except InputError:
            continue
    report(documents, modes)
    print(f"load average at end: {machine()['loadavg']}")


if __name__ == "__main__":
    main()
