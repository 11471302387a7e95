"""Content a damaged PDF loses on the way, told page by page so the document ends ``partial``
with warnings instead of looking complete.

MuPDF repairs what it can silently: a file cut short opens, but pages whose objects were lost
come back without content streams, and a content stream that cannot be loaded is skipped with
only a line in MuPDF's warning buffer ("cannot load content stream part 5/8", "premature end of
data in flate filter", "object is not a stream"). Those lines are read per page here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pymupdf

from pagemill.records import DocumentWarning, SkippedImage

CONTENT_LOST = "content_lost"
PAGE_FAILED = "page_failed"
IMAGE_UNREADABLE = "image_unreadable"

# MuPDF's messages for content it had to drop while interpreting a page.
_CONTENT_ERRORS = re.compile(
    r"cannot load content stream|premature end of data|object is not a stream|content stream is not a stream"
    r"|unknown compression method|corrupt deflate stream|cannot read (?:stream|object)",
)


@dataclass
class PageDamage:
    """What one batch's pages lost; read MuPDF's warnings around each page with ``start``/``check``."""

    repaired: bool
    lost: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, doc: pymupdf.Document) -> PageDamage:
        return cls(repaired=bool(doc.is_repaired))

    @staticmethod
    def start() -> None:
        """Forget MuPDF's warnings so far: what follows belongs to the next page."""
        pymupdf.TOOLS.mupdf_warnings(reset=True)

    def check(self, page: pymupdf.Page, page_no: int) -> None:
        """After the page was loaded and read: did it lose content?"""
        errors = _CONTENT_ERRORS.search(pymupdf.TOOLS.mupdf_warnings(reset=True))
        contents = page.get_contents()
        # A page of a repaired file with no content stream at all: its objects were lost (a
        # blank page of an intact file has none either, and is not reported).
        emptied = self.repaired and not contents
        broken = any(not page.parent.xref_is_stream(xref) for xref in contents)
        if errors or emptied or broken:
            self.lost.append(page_no)

    def page_failed(self, page_no: int, error: Exception) -> None:
        self.failed[page_no] = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

    def warnings(self, skipped_images: list[SkippedImage]) -> list[DocumentWarning]:
        found = []
        if self.lost:
            found.append(DocumentWarning(
                CONTENT_LOST,
                "the file is damaged" + (" and was repaired" if self.repaired else "")
                + ": these pages lost some or all of their content",
                pages=sorted(self.lost),
            ))
        if self.failed:
            reasons = "; ".join(f"page {n}: {why}" for n, why in sorted(self.failed.items())[:3])
            found.append(DocumentWarning(
                PAGE_FAILED, f"these pages could not be extracted and are empty ({reasons})",
                pages=sorted(self.failed),
            ))
        # Unreadable, not the size rules (tiny, too many pixels): those are choices, not losses.
        unreadable = sorted({image.page_no for image in skipped_images if image.reason == "unreadable"})
        if unreadable:
            found.append(DocumentWarning(
                IMAGE_UNREADABLE, "images on these pages could not be decoded and are missing", pages=unreadable,
            ))
        return found
