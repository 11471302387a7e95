"""The sample catalog: a furniture catalog PDF generated with PyMuPDF, plus the facts about it
that tests and the demo check (``CatalogTruth``). No external files; built-in fonts only.

Each page has a heading, body paragraphs and the same logo; every page but the table page
has one product photo of its own (a generated PNG), and one page has a ruled price table.

``make_mixed`` builds documents of any length for benchmarks and extraction-quality checks:
text-only pages, photo pages and ruled-table pages in a known mix, with the truth of every
page (``PageTruth``: headings, paragraphs, table cells, footer).

    python -m pagemill_tools.sample OUT.pdf
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from dataclasses import dataclass, field

import pymupdf

_PAGE = pymupdf.paper_rect("a4")
_MARGIN = 48
_LOGO_RECT = pymupdf.Rect(_MARGIN, 28, _MARGIN + 40, 68)
_PHOTO_RECT = pymupdf.Rect(_MARGIN, 140, _MARGIN + 210, 350)
_BODY_FONT, _BODY_SIZE = "helv", 11
_HEADING_FONT, _HEADING_SIZE = "hebo", 22

_STYLES = ["Oslo", "Bergen", "Malmo", "Aarhus", "Turku", "Lund", "Tromso", "Odense", "Uppsala", "Espoo", "Narvik"]
_MATERIALS = ["oak", "walnut", "ash", "birch", "teak", "rattan", "linen", "leather", "velvet", "steel"]
_COLOURS = ["natural", "smoke grey", "sand", "forest green", "deep red", "charcoal", "ivory", "ochre"]
_PIECES = [
    "Sofa", "Armchair", "Dining Table", "Coffee Table", "Bookcase", "Sideboard", "Bed Frame", "Desk",
    "Lounge Chair", "Bench", "Wardrobe", "Floor Lamp", "Stool", "Dresser", "Rug", "Nightstand",
]


@dataclass
class CatalogTruth:
    page_count: int
    distinct_images: int  # product photos + the logo
    logo_sha256: str
    image_hashes: list[str]  # sha256 of each distinct PNG inserted (extract_image returns the same bytes)
    headings: list[str]  # one per page, page 1 first
    table_page: int  # 1-based
    text_per_page: list[list[str]]  # the body paragraphs placed on each page
    table_rows: list[list[str]] = field(default_factory=list)  # header row first


def make_catalog(path: str | os.PathLike[str], *, pages: int = 44, seed: int = 7) -> CatalogTruth:
    if not 2 <= pages <= 500:
        raise ValueError("the catalog needs 2 to 500 pages (one is the price table)")
    rng = random.Random(seed)
    logo = _logo_png()
    table_page = pages // 2
    doc = pymupdf.open()
    headings: list[str] = []
    texts: list[list[str]] = []
    hashes = [hashlib.sha256(logo).hexdigest()]
    table_rows: list[list[str]] = []
    products = _product_names(rng, pages)
    for page_no in range(1, pages + 1):
        page = doc.new_page(width=_PAGE.width, height=_PAGE.height)
        page.insert_image(_LOGO_RECT, stream=logo)
        page.insert_text((_LOGO_RECT.x1 + 8, _LOGO_RECT.y1 - 14), "Nordwood Home", fontname=_HEADING_FONT, fontsize=10)
        footer = f"Nordwood Home catalog, page {page_no}"
        page.insert_text((_MARGIN, _PAGE.height - 30), footer, fontname=_BODY_FONT, fontsize=8)
        if page_no == table_page:
            heading = "Price List"
            table_rows = _price_rows(rng, products)
            paragraphs = [_TABLE_INTRO]
            _place_heading(page, heading)
            _place_paragraphs(page, paragraphs, pymupdf.Rect(_MARGIN, 120, _PAGE.width - _MARGIN, 170))
            _draw_table(page, table_rows, top=190)
        else:
            heading = "Nordwood Home Autumn Catalog" if page_no == 1 else products[page_no - 1]
            photo = _photo_png(page_no, rng)
            hashes.append(hashlib.sha256(photo).hexdigest())
            paragraphs = _paragraphs(rng, heading)
            _place_heading(page, heading)
            page.insert_image(_PHOTO_RECT, stream=photo)
            beside = pymupdf.Rect(_PHOTO_RECT.x1 + 20, _PHOTO_RECT.y0, _PAGE.width - _MARGIN, _PHOTO_RECT.y1)
            below = pymupdf.Rect(_MARGIN, _PHOTO_RECT.y1 + 30, _PAGE.width - _MARGIN, _PAGE.height - 80)
            _place_paragraphs(page, paragraphs[:1], beside)
            _place_paragraphs(page, paragraphs[1:], below)
        headings.append(heading)
        texts.append(paragraphs)
    doc.save(path, garbage=3, deflate=True, no_new_id=True)  # same seed, same bytes
    doc.close()
    return CatalogTruth(
        page_count=pages,
        distinct_images=len(set(hashes)),
        logo_sha256=hashes[0],
        image_hashes=sorted(set(hashes)),
        headings=headings,
        table_page=table_page,
        text_per_page=texts,
        table_rows=table_rows,
    )


@dataclass
class PageTruth:
    headings: list[str]  # the page heading, then the section heading
    paragraphs: list[str]
    footer: str
    table_rows: list[list[str]] = field(default_factory=list)  # header row first; empty: no table

    @property
    def text(self) -> str:
        """Everything written on the page, for token-level recall and precision."""
        cells = [cell for row in self.table_rows for cell in row]
        return " ".join([*self.headings, *self.paragraphs, *cells, self.footer])


_SECTION_FONT_SIZE = 15
_SECTIONS = ["Materials and finish", "Dimensions and delivery", "Care and guarantee", "Design notes"]


def make_mixed(
    path: str | os.PathLike[str], *, pages: int, images: int, table_every: int = 10, seed: int = 11
) -> list[PageTruth]:
    """A document of ``pages`` pages: every ``table_every``-th page carries a ruled table,
    ``images`` of the other pages a distinct photo spread evenly, the rest text only. Each page
    has a page heading, a smaller section heading and body paragraphs. Same seed, same bytes."""
    table_pages = {n for n in range(1, pages + 1) if n % table_every == table_every // 2}
    others = [n for n in range(1, pages + 1) if n not in table_pages]
    if not 0 <= images <= len(others):
        raise ValueError(f"{pages} pages hold at most {len(others)} images beside the tables")
    image_pages = {others[k * len(others) // images] for k in range(images)}
    rng = random.Random(seed)
    # Not _product_names: its unique combinations run out before 2,000 pages.
    products = [f"{rng.choice(_STYLES)} {rng.choice(_MATERIALS).title()} {rng.choice(_PIECES)} No. {n}" for n in range(1, pages + 1)]
    doc = pymupdf.open()
    truths: list[PageTruth] = []
    for page_no in range(1, pages + 1):
        page = doc.new_page(width=_PAGE.width, height=_PAGE.height)
        truth = PageTruth(
            headings=[products[page_no - 1], rng.choice(_SECTIONS)],
            paragraphs=_paragraphs(rng, products[page_no - 1]),
            footer=f"Nordwood Home, page {page_no}",
        )
        _place_heading(page, truth.headings[0])
        top = 140.0
        if page_no in table_pages:
            truth.table_rows = _price_rows(rng, rng.sample(products, 9))
            _draw_table(page, truth.table_rows, top=top)
            top += 24 * len(truth.table_rows) + 30
        elif page_no in image_pages:
            photo = _photo_png(page_no, rng)
            page.insert_image(_PHOTO_RECT, stream=photo)
            top = _PHOTO_RECT.y1 + 30
        page.insert_text((_MARGIN, top), truth.headings[1], fontname=_HEADING_FONT, fontsize=_SECTION_FONT_SIZE)
        _place_paragraphs(page, truth.paragraphs, pymupdf.Rect(_MARGIN, top + 16, _PAGE.width - _MARGIN, _PAGE.height - 80))
        page.insert_text((_MARGIN, _PAGE.height - 30), truth.footer, fontname=_BODY_FONT, fontsize=8)
        truths.append(truth)
    doc.save(path, garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return truths


_TABLE_INTRO = "Prices include delivery within the mainland. All pieces ship flat-packed unless noted."


def add_text_grid(page: pymupdf.Page, rows: int = 6, columns: int = 4) -> None:
    """Words in aligned columns without ruling lines ("cell{row}{column}"): an unruled table,
    which legacy table detection misses and the layout model reads."""
    for r in range(rows):
        for c in range(columns):
            page.insert_text((72 + 120 * c, 100 + 20 * r), f"cell{r}{c}", fontsize=10)


def _product_names(rng: random.Random, pages: int) -> list[str]:
    names: list[str] = []
    while len(names) < pages:
        name = f"{rng.choice(_STYLES)} {rng.choice(_MATERIALS).title()} {rng.choice(_PIECES)}"
        if name not in names:  # headings are unique so a test can find each one
            names.append(name)
    return names


def _paragraphs(rng: random.Random, product: str) -> list[str]:
    material, colour = rng.choice(_MATERIALS), rng.choice(_COLOURS)
    width, depth, height = rng.randrange(40, 240, 5), rng.randrange(35, 110, 5), rng.randrange(30, 200, 5)
    price = rng.randrange(79, 2400, 10)
    boxes, minutes = rng.choice(["one box", "two boxes", "three boxes"]), rng.randint(10, 60)
    return [
        f"The {product} pairs solid {material} with a {colour} finish. "
        f"Every joint is cut and fitted by hand in our workshop, and each piece is oiled twice before it leaves.",
        f"Dimensions: {width} cm wide, {depth} cm deep and {height} cm high. "
        f"It ships in {boxes} and assembles in about {minutes} minutes with the included tools.",
        f"Care: wipe with a damp cloth and avoid direct sunlight. "
        f"Price from {price} EUR, with a {rng.choice([2, 5, 10])}-year guarantee on the frame.",
    ]


def _price_rows(rng: random.Random, products: list[str]) -> list[list[str]]:
    rows = [["Item", "Material", "Width (cm)", "Price (EUR)"]]
    for name in products[1:9]:
        rows.append([name, rng.choice(_MATERIALS), str(rng.randrange(40, 240, 5)), str(rng.randrange(79, 2400, 10))])
    return rows


def _place_heading(page: pymupdf.Page, text: str) -> None:
    page.insert_text((_MARGIN, 108), text, fontname=_HEADING_FONT, fontsize=_HEADING_SIZE)


def _place_paragraphs(page: pymupdf.Page, paragraphs: list[str], rect: pymupdf.Rect) -> None:
    y = rect.y0
    for text in paragraphs:
        box = pymupdf.Rect(rect.x0, y, rect.x1, rect.y1)
        spare = page.insert_textbox(box, text, fontname=_BODY_FONT, fontsize=_BODY_SIZE, lineheight=1.3)
        if spare < 0:
            raise ValueError(f"paragraph does not fit on page {page.number + 1}: {text[:40]!r}")
        y = rect.y1 - spare + _BODY_SIZE  # a blank line between paragraphs


def _draw_table(page: pymupdf.Page, rows: list[list[str]], top: float) -> None:
    """A ruled grid: every cell is a stroked rectangle, which table detection keys on."""
    widths = [210, 90, 90, 109]
    row_height = 24
    shape = page.new_shape()
    for r, row in enumerate(rows):
        x = _MARGIN
        y = top + r * row_height
        for c, cell in enumerate(row):
            cell_rect = pymupdf.Rect(x, y, x + widths[c], y + row_height)
            shape.draw_rect(cell_rect)
            font = _HEADING_FONT if r == 0 else _BODY_FONT
            page.insert_text((x + 5, y + 16), cell, fontname=font, fontsize=10)
            x += widths[c]
    shape.finish(color=(0, 0, 0), width=0.8)
    shape.commit()


def _logo_png() -> bytes:
    """A 64x64 monogram-like mark: the same bytes on every page, so it is one distinct image."""
    canvas = _Canvas(64, (24, 56, 40))
    canvas.fill(12, 12, 52, 52, (236, 226, 204))
    canvas.fill(20, 12, 28, 52, (24, 56, 40))
    canvas.fill(36, 12, 44, 52, (24, 56, 40))
    return canvas.png()


def _photo_png(index: int, rng: random.Random) -> bytes:
    """A 'product photo': a vertical gradient, a few blocks, and the index as a binary strip,
    which makes every photo distinct whatever the random colours."""
    size = 96 + 16 * (index % 5)
    canvas = _Canvas(size, (0, 0, 0))
    top, bottom = _colour(rng), _colour(rng)
    for y in range(size):
        t = y / size
        canvas.fill(0, y, size, y + 1, tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(3):
        x0, y0 = rng.randrange(0, size - 24), rng.randrange(0, size - 40)
        canvas.fill(x0, y0, x0 + rng.randrange(12, 24), y0 + rng.randrange(12, 24), _colour(rng))
    cell = size // 8
    for bit in range(8):
        on = (index >> bit) & 1
        canvas.fill(bit * cell, size - 10, (bit + 1) * cell, size, (255, 255, 255) if on else (0, 0, 0))
    return canvas.png()


class _Canvas:
    """A square RGB image built in a bytearray: Pixmap.set_rect fills pixel by pixel in
    Python in PyMuPDF 2.0, about 50x slower than slice assignment."""

    def __init__(self, size: int, background: tuple[int, ...]) -> None:
        self.size = size
        self.samples = bytearray(bytes(background) * size * size)

    def fill(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, ...]) -> None:
        run = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.size + x0) * 3
            self.samples[start : start + len(run)] = run

    def png(self) -> bytes:
        pix = pymupdf.Pixmap(pymupdf.csRGB, self.size, self.size, bytes(self.samples), False)
        return pix.tobytes("png")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pagemill_tools.sample OUT.pdf", file=sys.stderr)
        return 2
    truth = make_catalog(argv[0])
    size = os.path.getsize(argv[0])
    print(
        f"wrote {argv[0]}: {truth.page_count} pages, {truth.distinct_images} distinct images "
        f"(logo included), price table on page {truth.table_page}, {size / 1024:.0f} KiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
