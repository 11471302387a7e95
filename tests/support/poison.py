"""Hostile PDFs, generated with PyMuPDF."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pymupdf
from PIL import Image


def decompression_bomb(path: Path, *, side: int = 40_000) -> int:
    """One page whose image declares ``side``×``side`` 8-bit pixels (1.6 GB decoded at the
    default) in a 1.5 MB Flate stream of zeros. Returns the declared pixel count."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "A page with a decompression bomb")
    placeholder = io.BytesIO()
    Image.new("L", (64, 64), 0).save(placeholder, "PNG")
    xref = page.insert_image(pymupdf.Rect(72, 100, 300, 300), stream=placeholder.getvalue())
    compressor = zlib.compressobj(9)
    zeros = bytes(1 << 24)
    left, chunks = side * side, []
    while left > 0:
        chunks.append(compressor.compress(zeros[: min(left, len(zeros))]))
        left -= len(zeros)
    chunks.append(compressor.flush())
    doc.update_stream(xref, b"".join(chunks), compress=0)  # stored as given: already Flate
    for key, value in (("Width", str(side)), ("Height", str(side)), ("Filter", "/FlateDecode"),
                       ("BitsPerComponent", "8"), ("ColorSpace", "/DeviceGray"), ("DecodeParms", "null"),
                       ("SMask", "null")):
        doc.xref_set_key(xref, key, value)
    doc.save(path)
    return side * side


def blank_pages(path: Path, pages: int) -> None:
    doc = pymupdf.open()
    for _ in range(pages):
        doc.new_page()
    doc.save(path)
