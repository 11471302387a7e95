"""One batch of pages → BatchResult: markdown, plain-text size and images per page, then chunks.

Only the batch's pages are read, so memory follows the batch, not the document.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pymupdf
import pymupdf4llm
from pymupdf4llm.helpers.pymupdf_rag import IdentifyHeaders

from pagemill.chunking import chunk_pages
from pagemill.models import BatchResult, ImageOccurrence, PageRecord, SkippedImage
from pagemill.settings import Settings

log = logging.getLogger(__name__)

# (sha256 hex, extension, raw bytes) -> the key the image was stored under.
ImageSink = Callable[[str, str, bytes], str]

# What MuPDF raises for an image stream it cannot read.
_MUPDF_ERRORS = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)


@dataclass(frozen=True)
class _Stored:
    sha256: str
    ext: str
    size_bytes: int
    s3_key: str


def extract_pages(
    doc: pymupdf.Document,
    *,
    document_id: str,
    batch_no: int,
    first_page: int,
    last_page: int,
    settings: Settings,
    store_image: ImageSink,
) -> BatchResult:
    started = time.perf_counter()
    result = BatchResult(
        document_id=document_id, batch_no=batch_no, first_page=first_page, last_page=last_page, seconds=0.0
    )
    # Images and text are read before markdown: pymupdf4llm may change pages in place
    # (legacy bakes form fields into content, layout removes page rotation).
    by_xref: dict[int, _Stored | str] = {}  # a repeated xref (a logo) is decoded once per batch
    stored_keys: dict[str, str] = {}  # sha256 -> key: each distinct image is stored once per batch
    for page_no in range(first_page, last_page + 1):
        page = doc.load_page(page_no - 1)
        infos = page.get_images(full=True)
        result.pages.append(
            PageRecord(
                page_no=page_no,
                markdown="",
                char_count=len(page.get_text()),
                width=page.rect.width,
                height=page.rect.height,
                image_count=len(infos),
            )
        )
        _page_images(doc, page, page_no, infos, settings, by_xref, stored_keys, store_image, result)

    markdown = _markdown(doc, list(range(first_page - 1, last_page)), settings.markdown_mode)
    for record, text in zip(result.pages, markdown, strict=True):
        record.markdown = text
    result.chunks = chunk_pages(result.pages, settings.chunk_chars)
    result.seconds = time.perf_counter() - started
    return result


def _page_images(
    doc: pymupdf.Document,
    page: pymupdf.Page,
    page_no: int,
    infos: list[tuple],
    settings: Settings,
    by_xref: dict[int, _Stored | str],
    stored_keys: dict[str, str],
    store_image: ImageSink,
    result: BatchResult,
) -> None:
    seen: set[str] = set()  # one occurrence per (image, page), however often it is drawn there
    for xref, width, height in {info[0]: (info[0], info[2], info[3]) for info in infos}.values():
        if width * height > settings.max_image_pixels:
            # Decided from the image dictionary alone: a decompression bomb is never decoded.
            result.skipped_images.append(SkippedImage(page_no, width, height, "too_many_pixels"))
            continue
        if min(width, height) < settings.min_image_side:
            result.skipped_images.append(SkippedImage(page_no, width, height, "tiny"))
            continue
        if xref not in by_xref:
            by_xref[xref] = _store(doc, xref, stored_keys, store_image)
        stored = by_xref[xref]
        if isinstance(stored, str):
            result.skipped_images.append(SkippedImage(page_no, width, height, stored))
            continue
        if stored.sha256 in seen:
            continue
        seen.add(stored.sha256)
        result.images.append(
            ImageOccurrence(
                sha256=stored.sha256,
                page_no=page_no,
                bbox=_bbox(page, xref),
                width=width,
                height=height,
                ext=stored.ext,
                s3_key=stored.s3_key,
                size_bytes=stored.size_bytes,
            )
        )


def _store(doc: pymupdf.Document, xref: int, stored_keys: dict[str, str], store_image: ImageSink) -> _Stored | str:
    """Extract and store one image; returns the skip reason instead when it cannot be read."""
    try:
        extracted = doc.extract_image(xref)
    except _MUPDF_ERRORS as exc:
        log.warning("unreadable image", extra={"xref": xref, "error": str(exc)})
        return "unreadable"
    if not extracted or not extracted.get("image"):
        log.warning("unreadable image", extra={"xref": xref, "error": "no image data"})
        return "unreadable"
    data: bytes = extracted["image"]
    ext: str = extracted["ext"]
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 not in stored_keys:
        stored_keys[sha256] = store_image(sha256, ext, data)
    return _Stored(sha256=sha256, ext=ext, size_bytes=len(data), s3_key=stored_keys[sha256])


def _bbox(page: pymupdf.Page, xref: int) -> tuple[float, float, float, float]:
    rects = page.get_image_rects(xref)
    if not rects:  # listed in the page's resources but never drawn
        return (0.0, 0.0, 0.0, 0.0)
    r = rects[0]
    return (round(r.x0, 2), round(r.y0, 2), round(r.x1, 2), round(r.y1, 2))


def _markdown(doc: pymupdf.Document, page_indexes: list[int], mode: str) -> list[str]:
    """Markdown of each page (0-based indexes, ascending), in one pymupdf4llm call for the batch."""
    _use_mode(mode)
    if mode == "layout":
        # No OCR engine is deployed; asking for it only prints a warning per call.
        chunks = pymupdf4llm.to_markdown(doc, pages=page_indexes, page_chunks=True, use_ocr=False)
    else:
        # Without hdr_info the legacy path scans every page of the document for font sizes,
        # which makes each batch cost as much as the whole document.
        headers = IdentifyHeaders(doc, pages=page_indexes)
        chunks = pymupdf4llm.to_markdown(doc, pages=page_indexes, page_chunks=True, hdr_info=headers)
    return [chunk["text"] for chunk in chunks]


def _use_mode(mode: str) -> None:
    """pymupdf4llm's layout switch is process-global; flip it only when it differs, because
    turning the layout model on loads it again."""
    want_layout = mode == "layout"
    if pymupdf4llm._use_layout != want_layout:
        pymupdf4llm.use_layout(want_layout)
