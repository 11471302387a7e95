"""Generated scans of known text: a PyMuPDF text page rendered to an image, the image put on a
new page without a text layer — as a scanner would deliver it, optionally turned, with JPEG
noise, or in two columns. Tests and bench/bench_ocr.py read them back with OCR."""

from __future__ import annotations

import random

import pymupdf

PROSE = (
    "Pagemill turns every uploaded document into searchable rows in PostgreSQL. Each page keeps all of "
    "its words, whether they sit on a shaded panel, beside a chart, or on a sheet of paper that was "
    "scanned upside down. The quick brown fox jumps over the lazy dog while the committee reviews "
    "quarterly figures for maintenance, inspection and repair of aircraft components. "
)


def known_text(seed: int, words: int = 180) -> str:
    """Deterministic prose of about ``words`` words, shuffled by sentence so pages differ."""
    sentences = [s.strip() + "." for s in PROSE.split(".") if s.strip()]
    rng = random.Random(seed)
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.append(rng.choice(sentences))
    return " ".join(out)


def add_scan(
    doc: pymupdf.Document, text: str, *, dpi: int = 200, rotation: int = 0, jpeg_quality: int | None = None,
    columns: int = 1, fontsize: float = 11,
) -> None:
    """A page whose only content is an image of ``text`` set on a Letter page, turned by
    ``rotation`` degrees (0/90/180/270: the scan lies that way on the new page)."""
    source = pymupdf.open()
    page = source.new_page(width=612, height=792)
    gutter, margin = 24, 54
    width = (612 - 2 * margin - gutter * (columns - 1)) / columns
    parts = _split(text, columns)
    for n, part in enumerate(parts):
        x0 = margin + n * (width + gutter)
        page.insert_textbox(pymupdf.Rect(x0, margin, x0 + width, 792 - margin), part, fontsize=fontsize)
    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    data = pix.tobytes("jpeg", jpg_quality=jpeg_quality) if jpeg_quality else pix.tobytes("png")
    sideways = rotation in (90, 270)
    target = doc.new_page(width=792 if sideways else 612, height=612 if sideways else 792)
    target.insert_image(target.rect, stream=data, rotate=rotation)


def _split(text: str, columns: int) -> list[str]:
    tokens = text.split()
    size = -(-len(tokens) // columns)
    return [" ".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
