"""Every word of each page, and where it came from.

For each page of a batch: its text layer is read before pymupdf4llm touches the page; a page
without a usable text layer is read with OCR (unless the document's OCR cap is reached or the
page holds an image too large to render); every other page's markdown is checked against its
text layer and replaced by a fallback extraction when it lost words. Each page records its
text source; whatever could not be recovered becomes a DocumentWarning, never a failed batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pymupdf

from pagemill.pdf.markdown import complete_markdown, emphasis_headings
from pagemill.pdf.ocr import (
    OcrEngine,
    OcrText,
    largest_image_pixels,
    needs_ocr,
    ocr_image,
    rapidocr_engine,
    render_for_ocr,
)
from pagemill.records import DocumentWarning, PageRecord
from pagemill.settings import Settings

log = logging.getLogger(__name__)

# What each warning code tells the user, given the affected pages.
_MESSAGES: dict[str, Callable[[str, Settings], str]] = {
    "text_lost": lambda pages, s: (
        f"Some text of page(s) {pages} is missing from the markdown: no extraction path kept every word of the "
        "page's text layer."
    ),
    "ocr_cap_reached": lambda pages, s: (
        f"Page(s) {pages} have no text layer and were not read with OCR: the document reached its cap of "
        f"{s.ocr_max_pages} OCR pages. Raise PAGEMILL_OCR_MAX_PAGES and process the document again."
    ),
    "ocr_refused": lambda pages, s: (
        f"Page(s) {pages} have no text layer and hold an image of more than {s.max_image_pixels:,} pixels, "
        "which is not rendered (decompression bomb guard); their text is missing."
    ),
    "ocr_failed": lambda pages, s: (
        f"OCR failed on page(s) {pages}, which have no text layer; their text is missing. Processing the "
        "document again may recover them."
    ),
    "ocr_unavailable": lambda pages, s: (
        f"Page(s) {pages} have no text layer, and this worker has no OCR engine installed (rapidocr); their text "
        "is missing. Deploy the extract container image to read scanned pages."
    ),
}


class PageTexts:
    """One batch's page texts. ``read`` each page before markdown runs, then ``settle`` each
    page's record with the markdown pymupdf4llm gave it."""

    def __init__(self, settings: Settings, ocr_skip: frozenset[int], ocr_engine: OcrEngine | None) -> None:
        self._settings = settings
        self._ocr_skip = ocr_skip
        self._engine = ocr_engine
        self._text_layers: dict[int, str] = {}
        self._ocr: dict[int, OcrText] = {}
        self._problems: dict[str, list[int]] = {}

    def read(self, page: pymupdf.Page, page_no: int) -> str:
        """The page's text layer; OCR now for a page without one (rendering before pymupdf4llm
        removes the page's rotation)."""
        text = page.get_text()
        self._text_layers[page_no] = text
        if needs_ocr(page):
            self._read_scan(page, page_no)
        return text

    def settle(self, doc: pymupdf.Document, record: PageRecord, markdown: str) -> None:
        scan = self._ocr.get(record.page_no)
        if scan is not None:
            record.text_source, record.ocr_confidence = "ocr", scan.confidence
            if scan.markdown.strip():  # a blank scan keeps the few words its text layer may have
                record.markdown, record.char_count = scan.markdown, len(scan.markdown)
            else:
                record.markdown = markdown
            return
        text_layer = self._text_layers[record.page_no]
        markdown, record.text_source, loss = complete_markdown(doc, record.page_no - 1, text_layer, markdown)
        record.markdown = emphasis_headings(markdown)
        if not loss.acceptable:
            log.warning("text lost", extra={"page": record.page_no, "missing": loss.missing, "words": loss.total})
            self._problems.setdefault("text_lost", []).append(record.page_no)

    def warnings(self) -> list[DocumentWarning]:
        return [
            DocumentWarning(code=code, message=_MESSAGES[code](_page_list(pages), self._settings), pages=pages)
            for code, pages in self._problems.items()
        ]

    def _read_scan(self, page: pymupdf.Page, page_no: int) -> None:
        if page_no in self._ocr_skip:
            self._problems.setdefault("ocr_cap_reached", []).append(page_no)
            return
        if largest_image_pixels(page) > self._settings.max_image_pixels:
            self._problems.setdefault("ocr_refused", []).append(page_no)
            return
        try:
            engine = self._engine or rapidocr_engine()
        except ImportError as exc:
            log.warning("no OCR engine", extra={"page": page_no, "error": str(exc)})
            self._problems.setdefault("ocr_unavailable", []).append(page_no)
            return
        try:
            self._ocr[page_no] = ocr_image(engine, render_for_ocr(page, self._settings))
        except Exception as exc:  # noqa: BLE001 - the engine is native third-party code: any error it raises on one page is that page's warning
            log.warning("OCR failed", extra={"page": page_no, "error": repr(exc)})
            self._problems.setdefault("ocr_failed", []).append(page_no)


def _page_list(pages: list[int]) -> str:
    return ", ".join(str(p) for p in pages)
