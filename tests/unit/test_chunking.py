"""Chunking page markdown (pagemill.pdf.chunks): size limit, page coverage, tables, determinism."""

from __future__ import annotations

import random

import pytest

from pagemill.pdf.chunks import chunk_pages
from pagemill.records import PageRecord

LIMIT = 300


def _page(page_no: int, markdown: str) -> PageRecord:
    return PageRecord(page_no=page_no, markdown=markdown, char_count=len(markdown), width=612, height=792)


def _random_markdown(rng: random.Random) -> str:
    words = ["sofa", "oak", "table", "chair", "linen", "walnut", "lamp", "shelf", "rug", "bench"]
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(["", "   \n\n  \t", "\n"])
    blocks = []
    for _ in range(rng.randint(1, 6)):
        style = rng.random()
        if style < 0.15:
            blocks.append("# " + " ".join(rng.choices(words, k=3)))
        elif style < 0.3:
            cells = [f"|{rng.choice(words)}|{rng.randint(1, 999)}|" for _ in range(rng.randint(1, 40))]
            rows = ["|a|b|", "|---|---|", *cells]
            blocks.append("\n".join(rows))
        elif style < 0.4:
            blocks.append("x" * rng.randint(1, 1000))  # no boundaries at all: hard split
        else:
            sentences = [
                " ".join(rng.choices(words, k=rng.randint(3, 30))).capitalize() + "." for _ in range(rng.randint(1, 12))
            ]
            blocks.append(" ".join(sentences) if rng.random() < 0.5 else "\n".join(sentences))
    return "\n\n".join(blocks)


@pytest.mark.parametrize("seed", range(40))
def test_chunks_cover_every_page_with_text_and_respect_the_limit(seed: int) -> None:
    # GIVEN random pages of prose, tables, headings, unbreakable runs and empty pages
    rng = random.Random(seed)
    first = rng.randint(1, 500)
    pages = [_page(first + i, _random_markdown(rng)) for i in range(rng.randint(1, 12))]
    # WHEN they are chunked
    chunks = chunk_pages(pages, LIMIT)
    # THEN no chunk is over the limit or empty, chunk numbers run 0..n-1, page ranges are in order,
    # and every page with text lies inside some chunk's page range
    assert [c.chunk_no for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert 0 < len(chunk.text) <= LIMIT
        assert chunk.text.strip()
        assert chunk.first_page <= chunk.last_page
    assert [c.first_page for c in chunks] == sorted(c.first_page for c in chunks)
    for page in pages:
        if page.markdown.strip():
            assert any(c.first_page <= page.page_no <= c.last_page for c in chunks), page.page_no
    # AND no text is lost or reordered (whitespace may change; split tables repeat their header)
    def squeeze(text: str) -> str:
        return "".join(text.split()).replace("|a|b||---|---|", "")

    assert squeeze("".join(c.text for c in chunks)) == squeeze("".join(p.markdown for p in pages))


def test_chunking_is_deterministic() -> None:
    # GIVEN the same pages twice / WHEN chunked / THEN the same chunks
    rng = random.Random(3)
    pages = [_page(i, _random_markdown(rng)) for i in range(1, 20)]
    assert chunk_pages(pages, LIMIT) == chunk_pages(pages, LIMIT)


def test_pages_without_text_make_no_chunks() -> None:
    # GIVEN scanned pages with no text layer
    pages = [_page(1, ""), _page(2, " \n\n \n"), _page(3, "")]
    # WHEN / THEN
    assert chunk_pages(pages, LIMIT) == []


def test_small_pages_pack_into_one_chunk_spanning_them() -> None:
    # GIVEN three short pages
    pages = [_page(7, "# Sofas"), _page(8, "Deep seats."), _page(9, "Oak legs.")]
    # WHEN they are chunked
    chunks = chunk_pages(pages, LIMIT)
    # THEN they share one chunk that records the page span, paragraphs separated by a blank line
    assert len(chunks) == 1
    assert (chunks[0].first_page, chunks[0].last_page) == (7, 9)
    assert chunks[0].text == "# Sofas\n\nDeep seats.\n\nOak legs."


def test_a_table_that_fits_stays_whole() -> None:
    # GIVEN a paragraph touching a small table (no blank line between them)
    table = "|Item|Price|\n|---|---|\n|Sofa|900|\n|Lamp|80|"
    pages = [_page(1, "A" * 280 + "\n" + table)]
    # WHEN it is chunked
    chunks = chunk_pages(pages, LIMIT)
    # THEN the table moves whole to the next chunk instead of being cut between rows
    assert [c.text for c in chunks] == ["A" * 280, table]


def test_a_long_table_is_split_on_rows_repeating_its_header() -> None:
    # GIVEN a table far longer than the limit
    header = "|Item|Material|Price|\n|---|---|---|"
    rows = [f"|Product {n}|oak|{n * 10}|" for n in range(60)]
    pages = [_page(4, "\n".join([header, *rows]))]
    # WHEN it is chunked
    chunks = chunk_pages(pages, LIMIT)
    # THEN each piece is a table with the header and whole rows, and every row appears once
    assert len(chunks) > 1
    seen = []
    for piece in (piece for chunk in chunks for piece in chunk.text.split("\n\n")):
        lines = piece.splitlines()
        assert lines[:2] == header.splitlines()
        seen.extend(lines[2:])
    assert seen == rows


def test_long_paragraph_splits_on_sentences() -> None:
    # GIVEN one paragraph of 40 sentences
    sentences = [f"Sentence number {n} describes a chair in some detail." for n in range(40)]
    pages = [_page(1, " ".join(sentences))]
    # WHEN it is chunked
    chunks = chunk_pages(pages, LIMIT)
    # THEN every chunk ends at a sentence end
    assert len(chunks) > 1
    assert all(c.text.endswith(".") for c in chunks)
