"""Opening and validating PDFs, and planning page batches. Pure functions: no AWS, no I/O
beyond reading the file they are given."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pymupdf

from pagemill.errors import (
    EmptyFile,
    EncryptedPdf,
    FileTooLarge,
    MalformedPdf,
    NoPages,
    NotAPdf,
    PageLimitExceeded,
)
from pagemill.pdf.header import HEADER_WINDOW, has_pdf_header
from pagemill.pdf.ocr import needs_ocr
from pagemill.settings import Settings

# What MuPDF raises for a damaged file: the Python layer's FileDataError (a RuntimeError)
# on open, the C++ binding's FzErrorBase family (e.g. FzErrorFormat) on page loading.
MUPDF_ERRORS = (RuntimeError, pymupdf.mupdf.FzErrorBase)


@dataclass(frozen=True)
class PdfInfo:
    page_count: int
    images_per_page: list[int]
    ocr_pages: list[int]  # 1-based: pages without a usable text layer


def open_pdf(path: str | os.PathLike[str], settings: Settings) -> pymupdf.Document:
    """Open a PDF that every later stage can rely on, or raise the typed InputError that says why not.

    Every page is loaded once here, so a broken page tree fails the document at Plan rather
    than in the middle of extraction.
    """
    size = os.path.getsize(path)
    if size == 0:
        raise EmptyFile("The file is empty (0 bytes); upload the PDF again.")
    if size > settings.max_bytes:
        raise FileTooLarge(
            f"The file is {_mib(size)}, over the {_mib(settings.max_bytes)} limit; "
            "split it into smaller PDFs or raise PAGEMILL_MAX_BYTES."
        )
    with open(path, "rb") as fh:
        head = fh.read(HEADER_WINDOW)
    if not has_pdf_header(head):
        raise NotAPdf("The file is not a PDF (no %PDF- header); upload a PDF document.")

    try:
        doc = pymupdf.open(path, filetype="pdf")
    except MUPDF_ERRORS as exc:
        raise MalformedPdf(
            f"The PDF is damaged and cannot be read ({_short(exc)}); re-export or repair it and upload it again."
        ) from exc
    try:
        _check_document(doc, settings)
    except BaseException:
        doc.close()
        raise
    return doc


def _check_document(doc: pymupdf.Document, settings: Settings) -> None:
    # An empty user password opens without asking (needs_pass is then false): those are accepted.
    if doc.needs_pass:
        raise EncryptedPdf("The PDF is password-protected; upload a copy without a password.")
    if doc.page_count == 0:
        raise NoPages("The PDF has no pages; the file may be truncated or damaged, so upload a complete copy.")
    if doc.page_count > settings.max_pages:
        raise PageLimitExceeded(
            f"The PDF has {doc.page_count} pages, over the {settings.max_pages}-page limit; "
            "split it into smaller PDFs or raise PAGEMILL_MAX_PAGES."
        )
    for index in range(doc.page_count):
        try:
            doc.load_page(index)
        except MUPDF_ERRORS as exc:
            raise MalformedPdf(
                f"Page {index + 1} of {doc.page_count} cannot be read ({_short(exc)}); "
                "re-export or repair the PDF and upload it again."
            ) from exc


def inspect_pdf(doc: pymupdf.Document) -> PdfInfo:
    """What batch planning needs; image references are read from page resources, never decoded."""
    images_per_page: list[int] = []
    ocr_pages: list[int] = []
    for index in range(doc.page_count):
        page = doc.load_page(index)
        images_per_page.append(len(page.get_images()))
        if needs_ocr(page):
            ocr_pages.append(index + 1)
    return PdfInfo(page_count=doc.page_count, images_per_page=images_per_page, ocr_pages=ocr_pages)


def plan_batches(
    images_per_page: list[int], settings: Settings, ocr_pages: frozenset[int] = frozenset()
) -> list[tuple[int, int]]:
    """Split pages into 1-based inclusive ranges, in order, each page exactly once.

    A batch closes at settings.batch_pages pages, or before the page that would push its cost
    over settings.batch_cost; a page that alone exceeds the budget still gets a batch of its own.
    A page to OCR (in ocr_pages) costs settings.ocr_page_cost more.
    """
    batches: list[tuple[int, int]] = []
    first = 1
    cost = 0.0
    for page_no, images in enumerate(images_per_page, start=1):
        page_cost = 1 + settings.image_page_cost * images + (settings.ocr_page_cost if page_no in ocr_pages else 0)
        size = page_no - first
        if size and (size >= settings.batch_pages or cost + page_cost > settings.batch_cost):
            batches.append((first, page_no - 1))
            first, cost = page_no, 0.0
        cost += page_cost
    if images_per_page:
        batches.append((first, len(images_per_page)))
    return batches


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _short(exc: BaseException) -> str:
    """MuPDF's own reason in one short line, without its 'code=N: ' prefix."""
    # FileDataError only says "Failed to open file <path>"; the MuPDF error it wraps says why.
    if isinstance(exc.__cause__, pymupdf.mupdf.FzErrorBase):
        exc = exc.__cause__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith("code=") and ": " in text:
        text = text.split(": ", 1)[1]
    return text[:200]
