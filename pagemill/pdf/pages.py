"""One batch of pages → BatchResult: markdown, plain-text size and images per page, then chunks.

Only the batch's pages are read, so memory follows the batch, not the document.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pymupdf

from pagemill.pdf.chunks import chunk_pages
from pagemill.pdf.damage import PageDamage
from pagemill.pdf.document import MUPDF_ERRORS
from pagemill.pdf.markdown import page_markdown
from pagemill.pdf.ocr import OcrEngine
from pagemill.pdf.page_text import PageTexts
from pagemill.records import BatchResult, ImageOccurrence, PageRecord, SkippedImage
from pagemill.settings import Settings

log = logging.getLogger(__name__)

# (sha256 hex, extension, raw bytes) -> the key the image was stored under.
ImageSink = Callable[[str, str, bytes], str]

@dataclass
class _Image:
    """An extracted image; its bytes are dropped once stored."""

    sha256: str
    ext: str
    size_bytes: int
    data: bytes | None


def extract_pages(
    doc: pymupdf.Document,
    *,
    document_id: str,
    batch_no: int,
    first_page: int,
    last_page: int,
    settings: Settings,
    store_image: ImageSink,
    ocr_skip: tuple[int, ...] = (),
    ocr_engine: OcrEngine | None = None,
) -> BatchResult:
    """ocr_engine: RapidOCR, built on the first page that needs it, when None."""
    started = time.perf_counter()
    result = BatchResult(
        document_id=document_id, batch_no=batch_no, first_page=first_page, last_page=last_page, seconds=0.0
    )
    images = _ImageCollector(doc, settings, store_image)
    texts = PageTexts(settings, frozenset(ocr_skip), ocr_engine)
    text_only: set[int] = set()  # 0-based indexes of pages whose markdown must not touch images
    damage = PageDamage.of(doc)
    # Images and text are read before markdown: pymupdf4llm changes pages in place
    # (removes rotation, bakes form fields into content).
    for page_no in range(first_page, last_page + 1):
        damage.start()
        try:
            page = doc.load_page(page_no - 1)
            kept, risky = images.collect(page, page_no)
            record = PageRecord(page_no=page_no, markdown="", char_count=len(texts.read(page, page_no)),
                                width=page.rect.width, height=page.rect.height, image_count=kept)
        except MUPDF_ERRORS as exc:
            # The batch goes on without it: the page is kept, empty, and the warning says why.
            log.warning("page extraction failed", extra={"page": page_no, "error": str(exc)})
            damage.page_failed(page_no, exc)
            result.pages.append(PageRecord(page_no=page_no, markdown="", char_count=0, width=0.0, height=0.0))
            continue
        damage.check(page, page_no)
        if risky:
            text_only.add(page_no - 1)
        result.pages.append(record)
    result.images, result.skipped_images = images.occurrences, images.skipped
    result.warnings = damage.warnings(images.skipped)

    readable = [p.page_no - 1 for p in result.pages if p.page_no not in damage.failed]
    markdown = page_markdown(doc, readable, text_only, settings.markdown_mode)
    for record in result.pages:
        if record.page_no not in damage.failed:
            texts.settle(doc, record, markdown[record.page_no - 1])
            # Some text layers carry NUL characters (the fallback paths keep them), and PostgreSQL
            # text cannot hold one: Write would fail the whole document for it.
            record.markdown = record.markdown.replace("\x00", "")
    result.warnings.extend(texts.warnings())
    result.chunks = chunk_pages(result.pages, settings.chunk_chars)
    result.seconds = time.perf_counter() - started
    return result


class _ImageCollector:
    """The images drawn on a batch's pages: filtered by size before anything is decoded, each
    xref extracted once, each distinct image (by content) stored once, and one occurrence per
    (image, page)."""

    def __init__(self, doc: pymupdf.Document, settings: Settings, store_image: ImageSink) -> None:
        self._doc = doc
        self._settings = settings
        self._store_image = store_image
        self._by_xref: dict[int, _Image | str] = {}  # a logo drawn on every page is one xref
        self._keys: dict[str, str] = {}  # sha256 -> key returned by store_image
        self.occurrences: list[ImageOccurrence] = []
        self.skipped: list[SkippedImage] = []

    def collect(self, page: pymupdf.Page, page_no: int) -> tuple[int, bool]:
        """Record the page's images. Returns how many distinct images were kept, and whether
        the page holds an image that must not be decoded again (oversized or unreadable)."""
        listed = page.get_images(full=True)  # one entry per xref and place it is referenced from
        items: dict[int, tuple] = {}
        for item in listed:
            if item[0] not in items or item[-1] == 0:  # prefer a direct reference: cheaper to locate
                items[item[0]] = item
        risky = False
        readable: list[tuple[tuple, _Image]] = []
        for item in items.values():
            width, height = item[2], item[3]
            if width * height > self._settings.max_image_pixels:
                # Decided from the image dictionary alone: a decompression bomb is never decoded.
                self.skipped.append(SkippedImage(page_no, width, height, "too_many_pixels"))
                risky = True
            elif min(width, height) < self._settings.min_image_side:
                self.skipped.append(SkippedImage(page_no, width, height, "tiny"))
            elif isinstance(image := self._extract(item[0]), str):
                self.skipped.append(SkippedImage(page_no, width, height, image))
                risky = True
            else:
                readable.append((item, image))
        kept: set[str] = set()
        placements = _Placements(page, listed)
        for item, image in readable:
            bbox = placements.locate(item, risky)
            if bbox is None or image.sha256 in kept:  # not drawn here, or drawn under two xrefs
                continue
            kept.add(image.sha256)
            self.occurrences.append(
                ImageOccurrence(
                    sha256=image.sha256,
                    page_no=page_no,
                    bbox=bbox,
                    width=item[2],
                    height=item[3],
                    ext=image.ext,
                    s3_key=self._stored_key(image),
                    size_bytes=image.size_bytes,
                )
            )
        return len(kept), risky

    def _extract(self, xref: int) -> _Image | str:
        """The image's bytes, once per xref; the skip reason instead when it cannot be read."""
        if xref in self._by_xref:
            return self._by_xref[xref]
        try:
            extracted = self._doc.extract_image(xref)
        except MUPDF_ERRORS as exc:
            log.warning("unreadable image", extra={"xref": xref, "error": str(exc)})
            extracted = None
        if extracted and extracted.get("image"):
            data: bytes = extracted["image"]
            image: _Image | str = _Image(hashlib.sha256(data).hexdigest(), extracted["ext"], len(data), data)
        else:
            image = "unreadable"
        self._by_xref[xref] = image
        return image

    def _stored_key(self, image: _Image) -> str:
        if image.sha256 not in self._keys:
            self._keys[image.sha256] = self._store_image(image.sha256, image.ext, image.data or b"")
        image.data = None  # stored: the bytes need not stay in memory for the rest of the batch
        return self._keys[image.sha256]


_UNKNOWN_BBOX = (0.0, 0.0, 0.0, 0.0)


class _Placements:
    """Where a page draws its images. PyMuPDF's ``get_image_bbox`` runs through the page's content
    once per image it is asked about (a page listing hundreds of strips is hundreds of passes);
    here one pass records where every image is drawn, in drawing order, by the resource name it
    is drawn under, and serves each image whose names no other image on the page shares. A name
    can repeat because each form XObject names its own images: those images are located one by
    one."""

    def __init__(self, page: pymupdf.Page, listed: Iterable[tuple]) -> None:
        self._page = page
        xrefs_by_name: dict[str, set[int]] = {}
        names_by_xref: dict[int, set[str]] = {}
        for item in listed:
            xrefs_by_name.setdefault(item[7], set()).add(item[0])
            names_by_xref.setdefault(item[0], set()).add(item[7])
        self._names = {xref: names for xref, names in names_by_xref.items()
                       if all(len(xrefs_by_name[name]) == 1 for name in names)}
        self._first: dict[str, tuple[int, pymupdf.Rect]] | None = None  # made on the first image asked about

    def locate(self, item: tuple, risky: bool) -> tuple[float, float, float, float] | None:
        """Where the image is first drawn on the page; None when it is not drawn there (shared
        resource dictionaries list every image on every page); _UNKNOWN_BBOX when it cannot be
        located safely."""
        try:
            if item[0] in self._names:
                first = self._first_placements()
                drawn = [first[name] for name in self._names[item[0]] if name in first]
                rect = min(drawn, key=lambda placed: placed[0])[1] if drawn else None
            elif item[-1] == 0:
                # Found by name in the page's content stream: nothing is decoded.
                rect = self._page.get_image_bbox(item)
            elif risky:
                # Inside a form XObject PyMuPDF locates an image by hashing every image on the
                # page, which would decode the one that must not be.
                return _UNKNOWN_BBOX
            else:
                rects = self._page.get_image_rects(item[0])
                rect = rects[0] if rects else None
        except MUPDF_ERRORS as exc:
            log.warning("image position unknown",
                        extra={"page": self._page.number + 1, "xref": item[0], "error": str(exc)})
            return _UNKNOWN_BBOX
        if rect is None or rect.is_empty or rect.is_infinite:
            return None
        return (round(rect.x0, 2), round(rect.y0, 2), round(rect.x1, 2), round(rect.y1, 2))

    def _first_placements(self) -> dict[str, tuple[int, pymupdf.Rect]]:
        """Name -> (drawing order, rectangle) of its first placement."""
        if self._first is None:
            # The pass get_image_bbox makes (content filtered with form XObjects instanced, every
            # image reported by name with its quad in drawing order; nothing is decoded), made once.
            self._first = {}
            for order, (name, quad) in enumerate(pymupdf.JM_image_reporter(self._page._pdf_page())):
                self._first.setdefault(name, (order, pymupdf.Quad(quad).rect))
        return self._first
