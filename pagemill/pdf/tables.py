"""PyMuPDF's table detection and table text, at the cost their results need.

Two module functions of ``pymupdf.table`` are swapped for the duration of a conversion
(``cheaper_tables``); what they return is unchanged:

- ``make_chars``: ``find_tables`` starts by listing every character of the page, a dictionary
  per character whose box and origin go to PDF coordinates through PyMuPDF's Python wrappers (a
  Rect, a Point and a Matrix per character). On a text-heavy page that is about 40 µs a
  character, 85-90% of the whole detection (dpr-paper's two-column pages: 130-180 ms of
  150-200). Here the same list, value for value, costs a few µs a character: the same rawdict
  extraction, the same MuPDF transform of each box called without the wrappers, and the origins
  moved with the single-precision arithmetic of MuPDF's ``fz_transform_point``
  (tests/unit/test_tables.py compares both lists on real pages).
- ``extract_cells``: ``Table.to_markdown`` calls it per cell, and it rebuilds the whole page's
  character dictionary (``extractRAWDICT``) every time: a 1,000-cell table cost 1,000 page
  extractions (about 10 s on one dense page). Here each TextPage's dictionary is built once,
  and not at all when ``make_chars`` read it already.

PyMuPDF is not thread-safe and extraction runs one page at a time per process, so swapping
module functions for the block is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pymupdf
import pymupdf.table
from pymupdf import extra as mupdf_extra


def make_chars(page: pymupdf.Page, clip: Any = None) -> pymupdf.TextPage:
    """``pymupdf.table.make_chars``, faster: fills ``pymupdf.table.CHARS`` with the same
    dictionaries and returns the TextPage it read them from."""
    # Axis-aligned whatever the page: a flip, a shift to the media box and the UserUnit scale
    # (PyMuPDF leaves rotation out of it), which _transform_points relies on.
    ctm = page.transformation_matrix
    chars = pymupdf.table.CHARS._list()
    page_number = page.number + 1
    page_height = page.rect.height
    textpage = page.get_textpage(clip=clip, flags=pymupdf.table.FLAGS)
    rawdict = page.get_text("rawdict", textpage=textpage)
    _cells_read[:] = [textpage, _RawDictOnce(textpage, rawdict)]
    blocks = rawdict["blocks"]
    doctop_base = page_height * page.number
    ctm_tuple = tuple(ctm)
    # Each character with what it takes from its line and span, in PyMuPDF's order.
    listed: list[tuple[dict[str, Any], float, float, bool, str, float, bool, tuple[float, ...]]] = []
    for block in blocks:
        for line in block["lines"]:
            ldir = line["dir"]
            cosine, sine = round(ldir[0], 4), round(ldir[1], 4)
            for span in sorted(line["spans"], key=lambda s: s["bbox"][0]):
                bold = bool(span["flags"] & pymupdf.TEXT_FONT_BOLD or span["char_flags"] & 8)
                color = pymupdf.sRGB_to_pdf(span["color"])
                listed.extend(
                    (char, cosine, sine, sine == 0, span["font"], span["size"], bold, color)
                    for char in sorted(span["chars"], key=lambda c: c["bbox"][0])
                )
    origins = _transform_points([item[0]["origin"] for item in listed], ctm)
    for (char, cosine, sine, upright, fontname, fontsize, bold, color), (origin_x, origin_y) in zip(
        listed, origins, strict=True
    ):
        x0, y0, x1, y1 = char["bbox"]
        moved = mupdf_extra.util_transform_rect((x0, y0, x1, y1), ctm_tuple)
        chars.append({
            "adv": x1 - x0 if upright else y1 - y0,
            "bottom": y1,
            "doctop": y0 + doctop_base,
            "fontname": fontname,
            "height": y1 - y0,
            "matrix": (cosine, -sine, sine, cosine, origin_x, origin_y),
            "ncs": "DeviceRGB",
            "non_stroking_color": color,
            "non_stroking_pattern": None,
            "object_type": "char",
            "page_number": page_number,
            "size": fontsize if upright else y1 - y0,
            "stroking_color": color,
            "stroking_pattern": None,
            "bold": bold,
            "text": char["c"],
            "top": y0,
            "upright": upright,
            "width": x1 - x0,
            "x0": x0,
            "x1": x1,
            "y0": moved[1],
            "y1": moved[3],
        })
    return textpage


def _transform_points(points: list[tuple[float, float]], ctm: pymupdf.Matrix) -> list[tuple[float, float]]:
    """``Point(p) * ctm`` as MuPDF computes it: in single precision, ``x * a + y * c + e`` and
    ``x * b + y * d + f``, where b and c are zero (adding a zero product changes nothing)."""
    xy = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    a, d, e, f = (np.float32(v) for v in (ctm.a, ctm.d, ctm.e, ctm.f))
    x = xy[:, 0] * a + e
    y = xy[:, 1] * d + f
    return list(zip(x.astype(float).tolist(), y.astype(float).tolist(), strict=True))


_pymupdf_make_chars: Callable[..., pymupdf.TextPage] = pymupdf.table.make_chars
# The last TextPage whose cells were read, and its stand-in: the tables of one page share one,
# and make_chars puts in the dictionary it extracted, so the tables found from its list read
# their cells' text without extracting it again.
_cells_read: list[Any] = [None, None]


@contextmanager
def cheaper_tables() -> Iterator[None]:
    """Within this block ``pymupdf.table`` lists characters with ``make_chars`` above and
    builds each TextPage's character dictionary once for its cells' text."""
    original: Callable[..., str] = pymupdf.table.extract_cells

    def extract_cells(textpage: pymupdf.TextPage, cell: Any, markdown: bool = False) -> str:
        if _cells_read[0] is not textpage:
            _cells_read[:] = [textpage, _RawDictOnce(textpage)]
        return original(_cells_read[1], cell, markdown)

    pymupdf.table.extract_cells = extract_cells
    pymupdf.table.make_chars = make_chars
    try:
        yield
    finally:
        pymupdf.table.extract_cells = original
        pymupdf.table.make_chars = _pymupdf_make_chars
        _cells_read[:] = [None, None]


class _RawDictOnce:
    """A TextPage stand-in for ``extract_cells``, which reads only ``extractRAWDICT``'s blocks
    (``read``: the dictionary already extracted, whose blocks are the same whatever page box
    its extraction was given)."""

    def __init__(self, textpage: pymupdf.TextPage, read: dict[str, Any] | None = None) -> None:
        self._textpage = textpage
        self._rawdict = read

    def extractRAWDICT(self) -> dict[str, Any]:
        if self._rawdict is None:
            self._rawdict = self._textpage.extractRAWDICT()
        return self._rawdict
