"""Page markdown → retrieval chunks.

Blocks are blank-line separated paragraphs (a markdown table stays one block when it fits);
consecutive blocks are packed greedily into chunks of at most ``chunk_chars`` characters, so a
chunk may span pages. Deterministic: the same pages always give the same chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pagemill.records import ChunkRecord, PageRecord

_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}")
_BLOCK_JOINER = "\n\n"

# Ways to cut an oversized block, gentlest first; each piece is re-joined with its joiner.
_SPLITTERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n"), "\n"),
    (re.compile(r"(?<=[.!?])\s+"), " "),
    (re.compile(r"\s+"), " "),
)


@dataclass(frozen=True)
class _Block:
    page_no: int
    text: str


def chunk_pages(pages: list[PageRecord], chunk_chars: int) -> list[ChunkRecord]:
    blocks = [
        _Block(page.page_no, piece)
        for page in pages
        for block in _blocks(page.markdown)
        for piece in _fit(block, chunk_chars)
    ]
    chunks: list[ChunkRecord] = []
    current: list[_Block] = []
    size = 0
    for block in blocks:
        added = len(block.text) + (len(_BLOCK_JOINER) if current else 0)
        if current and size + added > chunk_chars:
            chunks.append(_chunk(len(chunks), current))
            current, size = [], 0
            added = len(block.text)
        current.append(block)
        size += added
    if current:
        chunks.append(_chunk(len(chunks), current))
    return chunks


def _chunk(chunk_no: int, blocks: list[_Block]) -> ChunkRecord:
    return ChunkRecord(
        chunk_no=chunk_no,
        first_page=blocks[0].page_no,
        last_page=blocks[-1].page_no,
        text=_BLOCK_JOINER.join(b.text for b in blocks),
    )


def _blocks(markdown: str) -> list[str]:
    """Paragraphs of a page, with table rows separated from prose that touches them."""
    out: list[str] = []
    for paragraph in _BLANK_LINE.split(markdown):
        run: list[str] = []
        run_is_table = False
        for line in paragraph.strip().splitlines():
            is_table = line.lstrip().startswith("|")
            if run and is_table != run_is_table:
                out.append("\n".join(run))
                run = []
            run.append(line)
            run_is_table = is_table
        if run:
            out.append("\n".join(run))
    return [b.strip() for b in out if b.strip()]


def _fit(block: str, limit: int) -> list[str]:
    if len(block) <= limit:
        return [block]
    if block.startswith("|"):
        return _split_table(block, limit)
    return _split(block, limit, 0)


def _split_table(table: str, limit: int) -> list[str]:
    """Rows packed into pieces of at most limit, each repeating the header so it reads as a table."""
    lines = table.splitlines()
    has_header = len(lines) > 2 and _TABLE_RULE.match(lines[1].strip()) is not None
    header = "\n".join(lines[:2]) if has_header else ""
    # A header that eats most of the budget would leave room for a row or two per piece.
    if not header or len(header) + 1 >= limit // 2:
        return _split(table, limit, 0)
    rows = _split("\n".join(lines[2:]), limit - len(header) - 1, 0)
    return [f"{header}\n{row}" for row in rows]


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    if level == len(_SPLITTERS):
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    pattern, joiner = _SPLITTERS[level]
    pieces = [p for part in pattern.split(text) if part.strip() for p in _split(part.strip(), limit, level + 1)]
    return _pack(pieces, limit, joiner)


def _pack(pieces: list[str], limit: int, joiner: str) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + len(joiner) + len(piece) <= limit:
            out[-1] = out[-1] + joiner + piece
        else:
            out.append(piece)
    return out
