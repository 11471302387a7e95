"""Page markdown with pymupdf4llm, each page given only the analysis it can use.

Legacy mode: table detection (``find_tables``, ``lines_strict``) builds tables from vector
lines only, so a page whose drawings cannot form a grid of at least 2 x 2 cells skips it; the
background-colour probe (four corner renders) only serves to ignore background-coloured fill
paths, so a page without vector paths skips that too. A page's markdown is the same either
way (tests/unit/test_markdown.py pins it). Rendering a detected table is made linear in its
cells, and listing a page's characters for detection is made cheaper (pagemill/pdf/tables.py).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from itertools import pairwise
from typing import Any

import pymupdf
import pymupdf4llm
from pymupdf4llm.helpers import pymupdf_rag

from pagemill.pdf import layout_model
from pagemill.pdf.completeness import WordLoss, word_loss
from pagemill.pdf.document import MUPDF_ERRORS
from pagemill.pdf.tables import cheaper_tables

log = logging.getLogger(__name__)

TABLE_STRATEGY = "lines_strict"  # pymupdf4llm's default in legacy mode


def page_markdown(doc: pymupdf.Document, page_indexes: list[int], text_only: set[int], mode: str) -> dict[int, str]:
    """Markdown by 0-based page index. Ordinary pages go through pymupdf4llm; a page that makes
    it fail, and a page in text_only, gets text-only markdown instead."""
    ordinary = [i for i in page_indexes if i not in text_only]
    fallback = sorted(text_only)
    out: dict[int, str] = {}
    if mode in ("legacy", "fast"):
        # Legacy builds tables from ruling lines only: a page whose text stands in aligned columns
        # yet comes out without a table goes to the layout model, which finds unruled tables. A
        # page that cannot hold a ruled table, or whose lines form none that the legacy pass
        # would keep, is known to before any pass and goes to the layout model alone; the
        # others only when the legacy pass found no table. Fast mode never asks the model.
        analyses = _analyses(doc, ordinary)
        # Header sizes come from every ordinary page, as when all of them took the legacy pass.
        headers = pymupdf_rag.IdentifyHeaders(doc, pages=ordinary) if ordinary else None
        grid = [i for i in ordinary if _unruled(doc, i)] if mode == "legacy" else []
        ruled = [i for i in grid if i in analyses and analyses[i][0] is not None]
        probe = bool(ruled) and not (doc.is_form_pdf or (doc.is_pdf and doc.has_annots()))
        unruled = [
            i for i in grid
            if i in analyses and (i not in ruled or (probe and not _legacy_may_keep_a_table(doc, i)))
        ]
        legacy = [i for i in ordinary if i not in unruled]
        out.update(_converted(doc, legacy, "legacy", fallback, headers, analyses))
        unruled += [i for i in legacy if i in out and "|---" not in out[i] and i in grid]
        out.update(_converted(doc, sorted(unruled), "layout", fallback))
        layout_model.use_mode("legacy")  # the switch is process-global: leave it as the settings asked for
    else:
        out.update(_converted(doc, ordinary, mode, fallback))
    if fallback:
        out.update(_text_only_markdown(doc, sorted(fallback)))
    return out


def _converted(doc: pymupdf.Document, pages: list[int], mode: str, fallback: list[int],
               headers: Any = None, analyses: dict[int, tuple[str | None, bool]] | None = None) -> dict[int, str]:
    """The pages' markdown in one pymupdf4llm pass; a page that fails it is added to fallback."""
    if not pages:
        return {}
    try:
        return _full_markdown(doc, pages, mode, headers, analyses)
    except MUPDF_ERRORS:
        pass
    # One bad page fails the whole call: redo page by page so only that page loses layout.
    out: dict[int, str] = {}
    for index in pages:
        try:
            out.update(_full_markdown(doc, [index], mode, headers, analyses))
        except MUPDF_ERRORS as exc:
            log.warning("markdown falls back to text", extra={"page": index + 1, "error": str(exc)})
            fallback.append(index)
    return out


def _analyses(doc: pymupdf.Document, pages: list[int]) -> dict[int, tuple[str | None, bool]]:
    """Each page's analysis (see _analysis); a page that cannot be read is left out (its
    conversion fails and falls back)."""
    out: dict[int, tuple[str | None, bool]] = {}
    for index in pages:
        try:
            out[index] = _analysis(doc.load_page(index))
        except MUPDF_ERRORS as exc:
            log.warning("page analysis failed", extra={"page": index + 1, "error": str(exc)})
    return out


def _unruled(doc: pymupdf.Document, index: int) -> bool:
    try:
        return may_hold_unruled_table(doc[index])
    except MUPDF_ERRORS as exc:
        log.warning("table probe failed", extra={"page": index + 1, "error": str(exc)})
        return False


def _legacy_may_keep_a_table(doc: pymupdf.Document, index: int) -> bool:
    """Whether the legacy pass may put a table on the page: it keeps those of 2 x 2 cells or
    more that ``find_tables`` finds on the whole page, unrotated (a rotated page is not
    probed). It bakes form fields and annotations into the document first, so the caller does
    not probe a document that has any. Unprobed pages take the legacy pass, and the layout
    model after it when no table came out."""
    page = doc[index]
    if page.rotation:
        return True
    layout_model.use_mode("legacy")
    try:
        with cheaper_tables():
            found = page.find_tables(clip=page.rect, strategy=TABLE_STRATEGY)
    except MUPDF_ERRORS as exc:
        log.warning("table probe failed", extra={"page": index + 1, "error": str(exc)})
        return True
    return any(table.row_count >= 2 and table.col_count >= 2 for table in found.tables)


# Rows of a table stand together: a row of cells further than this many word heights below the
# last one starts another group (a table's wrapped cells leave a line or two between its rows).
_TABLE_ROW_GAP = 4.0


def may_hold_unruled_table(page: pymupdf.Page) -> bool:
    """Whether the page's words stand in a grid: at least 3 rows, close together, that each break
    into 3 or more cells (gaps wider than the words are high) starting at 3 or more shared
    positions. Three columns of prose qualify too; the layout model reads those well.

    Rows must stand together: on two-column pages, lines that span a formula or a numbered
    heading break into cells at both columns' starts, scattered down the page; taken together
    they looked like a grid, and the layout model ran for no table (dpr-paper pages 3 and 7),
    or made one of a table of contents' dotted lines (Mueller report pages 2-3, words cut in
    pieces across cells). A table of contents' entries are not rows at all (_leads_to_a_page)."""
    lines: dict[int, list[tuple[float, float, float, str]]] = {}
    for x0, y0, x1, y1, text, *_ in page.get_text("words"):
        lines.setdefault(round(y1 / 2), []).append((x0, x1, y1 - y0, text))
    group: list[set[int]] = []
    last_y = -float("inf")
    for key, words in sorted(lines.items()):
        words.sort()
        cells = [words[0][0]] + [b[0] for a, b in pairwise(words) if b[0] - a[1] > max(a[2], b[2])]
        if len(cells) < 3 or _leads_to_a_page(words):
            continue
        y, height = key * 2, max(w[2] for w in words)
        if y - last_y > _TABLE_ROW_GAP * height:
            if _grid(group):
                return True
            group = []
        group.append({round(x / 6) for x in cells})
        last_y = y
    return _grid(group)


_LEADER = re.compile(r"[.·…]+")


def _leads_to_a_page(words: list[tuple[float, float, float, str]]) -> bool:
    """Whether the line is a table of contents' entry: dots leading to its page number (five
    words of dots in a row, or one of four dots or more; an ellipsis is three). The layout model
    made tables of such pages, with words cut across cells (Mueller report page 4); the legacy
    pass keeps their lines."""
    run = 0
    for *_, text in words:
        dots = _LEADER.fullmatch(text) is not None
        if dots and len(text) >= 4:
            return True
        run = run + 1 if dots else 0
        if run == 5:
            return True
    return False


def _grid(rows: list[set[int]]) -> bool:
    """At least 3 positions at which 3 or more of the rows each start a cell."""
    starts = Counter(start for row in rows for start in row)
    return sum(count >= 3 for count in starts.values()) >= 3


def complete_markdown(doc: pymupdf.Document, index: int, text_layer: str, markdown: str) -> tuple[str, str, WordLoss]:
    """(markdown, path, loss): the page's markdown when it holds the words of its text layer
    ("text_layer"), else the first fallback that does: pymupdf4llm with vector graphics ignored
    (text drawn on filled rectangles or among drawings is no longer taken for part of a
    picture; "ignore_graphics"), then the text layer's own blocks in reading order
    ("text_blocks"). When none does, the one that loses least, with its loss."""
    best = ("text_layer", markdown, word_loss(text_layer, markdown))
    for path, extract in (("ignore_graphics", _ignore_graphics_markdown), ("text_blocks", _text_blocks_markdown)):
        if best[2].acceptable:
            break
        try:
            candidate = extract(doc, index)
        except MUPDF_ERRORS as exc:
            log.warning("fallback extraction failed", extra={"page": index + 1, "path": path, "error": str(exc)})
            continue
        loss = word_loss(text_layer, candidate)
        if loss.missing < best[2].missing:
            best = (path, candidate, loss)
    path, text, loss = best
    return text, path, loss


# A paragraph that is one short line set wholly in bold or in italic, starting like a title and
# not ending like a sentence or a lead-in ("Note:"), is a heading at body size.
_EMPHASIS_LINE = re.compile(r"^(\*\*|_)([A-Z0-9][^*_\n]{0,78}[^*_\n.,:;])\1$")
_HEADING_LINE = re.compile(r"^(#{1,6}) ", re.MULTILINE)
_HEADING_MAX_WORDS = 10


def emphasis_headings(markdown: str) -> str:
    """Headings that legacy pymupdf4llm misses because it ranks them by font size alone: bold
    or italic headings at body size become markdown headings one level below the page's
    deepest heading (level 2 on a page without any)."""
    levels = [len(m.group(1)) for m in _HEADING_LINE.finditer(markdown)]
    prefix = "#" * min(max(levels, default=1) + 1, 6) + " "
    paragraphs = markdown.split("\n\n")
    for n, paragraph in enumerate(paragraphs):
        match = _EMPHASIS_LINE.match(paragraph.strip())
        if match and len(match.group(2).split()) <= _HEADING_MAX_WORDS:
            paragraphs[n] = prefix + match.group(2)
    return "\n\n".join(paragraphs)


def _ignore_graphics_markdown(doc: pymupdf.Document, index: int) -> str:
    chunks = pymupdf_rag.to_markdown(
        doc, pages=[index], page_chunks=True, hdr_info=pymupdf_rag.IdentifyHeaders(doc, pages=[index]),
        ignore_images=True, ignore_graphics=True, detect_bg_color=False, table_strategy=None,
    )
    return str(chunks[0]["text"])


def _text_blocks_markdown(doc: pymupdf.Document, index: int) -> str:
    """Every text block of the page as a paragraph, in the order the page draws them (which
    follows columns where sorting by position would interleave them)."""
    blocks = doc.load_page(index).get_text("blocks")
    paragraphs = (" ".join(block[4].split()) for block in blocks if block[6] == 0)
    return "\n\n".join(p for p in paragraphs if p) + "\n"


def _analysis(page: pymupdf.Page) -> tuple[str | None, bool]:
    """(table strategy, detect background colour) for one page."""
    if not any("path" in kind for kind, _ in page.get_bboxlog()):
        return None, False  # no vector graphics at all: the common text page costs no get_drawings
    return (TABLE_STRATEGY if may_hold_table(page) else None), True


def may_hold_table(page: pymupdf.Page) -> bool:
    """Whether ``lines_strict`` table detection could find a table of 2 x 2 cells or more
    (smaller ones pymupdf4llm drops). Such a table needs 3 horizontal and 3 vertical edges at
    distinct positions. Its edges come from line, rectangle and quad items and from the
    borders of joined path rectangles, so every such coordinate counts as a candidate; edges
    closer than the snap tolerance (3 pt) merge there but stay apart here, so the count can
    only err towards running detection."""
    ys: set[int] = set()
    xs: set[int] = set()
    for path in page.get_drawings():
        _add_rect(path["rect"], xs, ys)
        for item in path["items"]:
            if item[0] == "l":
                start, end = item[1], item[2]
                if abs(start.y - end.y) <= 3:
                    ys.add(round(start.y))
                if abs(start.x - end.x) <= 3:
                    xs.add(round(start.x))
            elif item[0] == "re":
                _add_rect(item[1], xs, ys)
            elif item[0] == "qu":
                _add_rect(item[1].rect, xs, ys)
        if len(xs) >= 3 and len(ys) >= 3:
            return True
    return False


def _add_rect(rect: pymupdf.Rect, xs: set[int], ys: set[int]) -> None:
    xs.update((round(rect.x0), round(rect.x1)))
    ys.update((round(rect.y0), round(rect.y1)))


def _full_markdown(doc: pymupdf.Document, pages: list[int], mode: str, headers: Any = None,
                   analyses: dict[int, tuple[str | None, bool]] | None = None) -> dict[int, str]:
    layout_model.use_mode(mode)
    if mode == "layout":
        # No OCR engine is deployed; asking for one only prints a warning per call.
        chunks = pymupdf4llm.to_markdown(doc, pages=pages, page_chunks=True, use_ocr=False)
        return dict(zip(pages, (chunk["text"] for chunk in chunks), strict=True))
    # Without hdr_info the legacy path scans every page of the document for font sizes,
    # so each batch would cost as much as the whole document. One scan serves both calls.
    headers = headers or pymupdf_rag.IdentifyHeaders(doc, pages=pages)
    analyses = analyses or {}
    groups: dict[tuple[str | None, bool], list[int]] = {}
    for index in pages:
        analysis = analyses[index] if index in analyses else _analysis(doc.load_page(index))
        groups.setdefault(analysis, []).append(index)
    out: dict[int, str] = {}
    with cheaper_tables():
        for (strategy, detect_bg_color), subset in groups.items():
            chunks = pymupdf4llm.to_markdown(
                doc, pages=subset, page_chunks=True, hdr_info=headers, table_strategy=strategy,
                detect_bg_color=detect_bg_color,
            )
            out.update(zip(subset, (chunk["text"] for chunk in chunks), strict=True))
    return out


def _text_only_markdown(doc: pymupdf.Document, pages: list[int]) -> dict[int, str]:
    """Headings and paragraphs without images or tables: pymupdf4llm decodes images (background
    colour probe, image rectangles, the layout model's page render), and table detection can
    start the layout model."""
    chunks = pymupdf_rag.to_markdown(
        doc, pages=pages, page_chunks=True, hdr_info=pymupdf_rag.IdentifyHeaders(doc, pages=pages),
        ignore_images=True, detect_bg_color=False, table_strategy=None,
    )
    return dict(zip(pages, (chunk["text"] for chunk in chunks), strict=True))
