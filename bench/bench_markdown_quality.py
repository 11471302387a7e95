"""Markdown quality per mode on generated pages whose truth is known: words, reading order,
headings and tables, side by side for pymupdf4llm's plain modes and pagemill.

Pages (one feature each, every page with prose of known sentences):
  bold/italic headings at body size, a bullet list with bold lead-ins (bullets are not headings),
  an unruled table, a shaded table (filled cells, no lines), a text box on a dark filled
  rectangle, text beside a vector figure, two columns, three columns.

Scores: word recall (words of the truth found, as multisets); order (consecutive truth
paragraphs whose unique first words appear in that order); heading recall (truth headings that are markdown
headings) and false headings (markdown headings that are not truth headings: bullets, body
text); table rows (truth rows found as markdown table rows, cells in order) and invented
"Col1…" headers.

    python -m bench.bench_markdown_quality [--layout]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pymupdf
import pymupdf4llm

from bench.bench_completeness import by_pagemill, legacy_ignore_graphics
from bench.bench_extract import Extractor, by_layout, legacy
from pagemill.pdf.completeness import word_loss
from pagemill.pdf.markdown import TABLE_STRATEGY
from pagemill_tools.scans import known_text


@dataclass
class Truth:
    paragraphs: list[str] = field(default_factory=list)  # in reading order
    headings: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)  # rows of cells, header first


ROWS = [["Region", "Units", "Revenue"], ["North", "1200", "34500"], ["South", "980", "28100"],
        ["East", "1430", "40200"], ["West", "760", "21900"]]


def _prose(page: pymupdf.Page, rect: pymupdf.Rect, text: str, truth: Truth, **kw: object) -> None:
    page.insert_textbox(rect, text, fontsize=10, fontname="helv", **kw)
    truth.paragraphs.append(text)


def _table(page: pymupdf.Page, top: float, truth: Truth, shaded: bool) -> None:
    for r, row in enumerate(ROWS):
        y = top + r * 18
        if shaded:
            page.draw_rect(pymupdf.Rect(72, y - 12, 432, y + 4), color=None,
                           fill=(0.85, 0.85, 0.95) if r % 2 else (0.7, 0.75, 0.9))
        for c, cell in enumerate(row):
            page.insert_text((80 + c * 120, y), cell, fontsize=10, fontname="hebo" if r == 0 else "helv")
    truth.table = ROWS


def make_pages(path: Path) -> list[Truth]:
    doc = pymupdf.open()
    truths: list[Truth] = []
    seed = 0

    def text(n: int = 60) -> str:
        """Known prose led by a word found nowhere else, which places the paragraph in the output."""
        nonlocal seed
        seed += 1
        return f"Marker{seed:03d} " + known_text(seed, n)

    # bold and italic headings at body size
    page, truth = doc.new_page(), Truth()
    y = 72.0
    for heading, font in (("Maintenance schedule", "hebo"), ("Inspection notes", "heit"), ("Repair budget", "hebo")):
        page.insert_text((72, y), heading, fontsize=10, fontname=font)
        truth.headings.append(heading)
        _prose(page, pymupdf.Rect(72, y + 6, 540, y + 110), text(), truth)
        y += 130
    truths.append(truth)
    # bullets with bold lead-ins
    page, truth = doc.new_page(), Truth()
    _prose(page, pymupdf.Rect(72, 60, 540, 140), text(), truth)
    for n in range(5):
        y = 170 + n * 40
        page.insert_text((72, y), "•", fontsize=10, fontname="helv")
        page.insert_text((86, y), f"Item {n + 1}:", fontsize=10, fontname="hebo")
        item = f"Marker{100 + n:03d} check the part and record the result"
        page.insert_text((130, y), item, fontsize=10, fontname="helv")
        truth.paragraphs.append(item)
    truths.append(truth)
    # unruled and shaded tables
    for shaded in (False, True):
        page, truth = doc.new_page(), Truth()
        _prose(page, pymupdf.Rect(72, 60, 540, 160), text(), truth)
        _table(page, 200, truth, shaded)
        _prose(page, pymupdf.Rect(72, 320, 540, 420), text(), truth)
        truths.append(truth)
    # a text box on a dark filled rectangle
    page, truth = doc.new_page(), Truth()
    _prose(page, pymupdf.Rect(72, 60, 540, 160), text(), truth)
    page.draw_rect(pymupdf.Rect(72, 180, 540, 330), color=None, fill=(0.1, 0.15, 0.3))
    _prose(page, pymupdf.Rect(84, 192, 528, 320), text(), truth, color=(1, 1, 1))
    _prose(page, pymupdf.Rect(72, 350, 540, 450), text(), truth)
    truths.append(truth)
    # text beside a vector figure
    page, truth = doc.new_page(), Truth()
    for i in range(30):
        page.draw_line((330 + i * 6, 80), (330 + i * 6, 300), color=(0.2, 0.2, 0.2))
        page.draw_circle((420, 190), 20 + i * 2, color=(0.5, 0, 0))
    _prose(page, pymupdf.Rect(72, 80, 310, 420), text(100), truth)
    truths.append(truth)
    # two and three columns
    for columns in (2, 3):
        page, truth = doc.new_page(), Truth()
        width = (468 - 18 * (columns - 1)) / columns
        for c in range(columns):
            x0 = 72 + c * (width + 18)
            _prose(page, pymupdf.Rect(x0, 72, x0 + width, 380), text(70), truth)
            _prose(page, pymupdf.Rect(x0, 390, x0 + width, 720), text(70), truth)
        truths.append(truth)
    doc.save(path)
    return truths


class Score:
    """Counts summed over pages, by name."""

    def __init__(self) -> None:
        self.n: Counter[str] = Counter()

    def add(self, truth: Truth, markdown: str) -> None:
        n = self.n
        reference = " ".join(truth.paragraphs + truth.headings + [" ".join(r) for r in truth.table])
        loss = word_loss(reference, markdown)
        n["truth_words"] += loss.total
        n["lost_words"] += loss.missing
        folded = " ".join(_tokens(markdown))
        positions = [folded.find(_tokens(p)[0]) for p in truth.paragraphs]
        for a, b in pairwise(positions):
            n["pairs"] += 1
            n["in_order"] += 0 <= a < b
        heading_lines = [_tokens(line) for line in markdown.splitlines() if line.lstrip().startswith("#")]
        truth_headings = [_tokens(h) for h in truth.headings]
        n["headings"] += len(truth_headings)
        n["headings_found"] += sum(h in heading_lines for h in truth_headings)
        n["false_headings"] += sum(h not in truth_headings for h in heading_lines)
        table_rows = [[_squash(c) for c in line.strip().strip("|").split("|")]
                      for line in markdown.splitlines() if line.lstrip().startswith("|")]
        n["rows"] += len(truth.table)
        n["rows_found"] += sum(row in table_rows for row in truth.table)
        n["invented_headers"] += len(re.findall(r"\bCol\d+\b", markdown))

    def row(self) -> str:
        n = self.n
        return (f"{1 - n['lost_words'] / n['truth_words']:>8.3f}{n['in_order'] / n['pairs']:>8.3f}"
                f"{n['headings_found'] / n['headings']:>10.2f}{n['false_headings']:>8}"
                f"{n['rows_found'] / n['rows']:>8.2f}{n['invented_headers']:>9}")


def _tokens(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def _squash(text: str) -> str:
    return " ".join(text.replace("**", "").replace("<br>", " ").split())


def report(modes: dict[str, Extractor]) -> None:
    """Print each mode's scores on freshly generated pages of known truth."""
    with tempfile.TemporaryDirectory(prefix="pagemill-quality-") as tmp:
        path = Path(tmp) / "quality.pdf"
        truths = make_pages(path)
        pages = list(range(len(truths)))
        print(f"{len(truths)} generated pages with known truth")
        print(f"{'mode':<11}{'words':>8}{'order':>8}{'headings':>10}{'false h':>8}{'rows':>8}{'Col1…':>9}")
        for name, mode in modes.items():
            pymupdf4llm.use_layout(name == "layout")
            markdown = mode(path, pages)
            score = Score()
            for i, truth in enumerate(truths):
                score.add(truth, markdown[i])
            print(f"{name:<11}{score.row()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", action="store_true", help="also the layout model (slow)")
    args = parser.parse_args()
    modes: dict[str, Extractor] = {"legacy": legacy(TABLE_STRATEGY), "legacy-ig": legacy_ignore_graphics}
    if args.layout:
        modes["layout"] = by_layout
    modes["pagemill"] = by_pagemill
    report(modes)


if __name__ == "__main__":
    main()
