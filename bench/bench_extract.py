"""Pages per second and markdown quality of page extraction, five ways, measured in one run:

  get_text     raw ``page.get_text()``: the floor (plain text, no markdown)
  layout       ``pymupdf4llm.to_markdown`` default: the ONNX layout model
  legacy       ``pymupdf4llm.use_layout(False)``: font-size headings, ``lines_strict`` tables
  legacy-notab legacy with ``table_strategy=None``: no table detection
  pagemill     ``pagemill.extract.extract_pages`` as ExtractBatch runs it (deployed settings,
               batches from ``plan_batches``, a fresh open per batch, images into an in-memory
               sink instead of S3, chunks included)

on the corpus (../shared/corpus: what ``open_pdf`` refuses is skipped and named) and on a
generated mixed catalog (``pagemill_tools.sample.make_mixed``: 500 pages, 200 photos, a ruled table
every 10th page). Quality is scored on the catalog, whose true text, headings and tables are
known: token recall and precision of the words on the page, headings recovered as markdown
headings, tables recovered as markdown tables with every cell right.

To keep the run near two minutes on 2 cores, each corpus PDF contributes its first
``--corpus-pages`` pages and the catalog three windows of ``--window`` pages (start, middle,
end); every mode extracts exactly the same pages. One-time costs (imports, loading the layout
model) are paid in a warm-up before timing. Legacy runs get header sizes from the pages they
convert, as a whole-document pass would (the default scans every page of the document).
Finally pyinstrument profiles the pagemill mode on the catalog windows and prints where the
time goes.

    python -m bench.bench_extract [--corpus DIR] [--corpus-pages 8] [--window 40] [--no-profile]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
import pymupdf4llm
from pymupdf4llm.helpers import pymupdf_rag

from bench.inputs import machine
from pagemill.errors import InputError
from pagemill.pdf.document import open_pdf, plan_batches
from pagemill.pdf.markdown import TABLE_STRATEGY
from pagemill.pdf.pages import extract_pages
from pagemill.settings import Settings
from pagemill_tools.sample import PageTruth, make_mixed

SETTINGS = Settings()  # what cdk.json deploys: markdown_mode legacy, 25-page batches
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

# One extraction: (PDF path, contiguous 0-based page indexes) -> markdown per page index.
Extractor = Callable[[Path, list[int]], dict[int, str]]


def by_get_text(path: Path, pages: list[int]) -> dict[int, str]:
    with pymupdf.open(path) as doc:
        return {i: doc.load_page(i).get_text() for i in pages}


def by_layout(path: Path, pages: list[int]) -> dict[int, str]:
    with pymupdf.open(path) as doc:
        chunks = pymupdf4llm.to_markdown(doc, pages=pages, page_chunks=True, use_ocr=False)
    return {i: c["text"] for i, c in zip(pages, chunks, strict=True)}


def legacy(table_strategy: str | None) -> Extractor:
    def run(path: Path, pages: list[int]) -> dict[int, str]:
        with pymupdf.open(path) as doc:
            headers = pymupdf_rag.IdentifyHeaders(doc, pages=pages)
            chunks = pymupdf4llm.to_markdown(
                doc, pages=pages, page_chunks=True, hdr_info=headers, table_strategy=table_strategy
            )
        return {i: c["text"] for i, c in zip(pages, chunks, strict=True)}

    return run


def pagemill_with(settings: Settings) -> Extractor:
    """ExtractBatch's library path under ``settings``, batch by batch as Plan cuts the pages."""

    def run(path: Path, pages: list[int]) -> dict[int, str]:
        # The window's share of Plan's count (Plan's whole-document scan is not ExtractBatch's time).
        with pymupdf.open(path) as doc:
            images_per_page = [len(doc.load_page(i).get_images()) for i in range(pages[0], pages[-1] + 1)]

        def store_image(sha256: str, ext: str, data: bytes) -> str:
            return f"{sha256}.{ext}"  # S3 takes the bytes away

        out: dict[int, str] = {}
        for n, (first, last) in enumerate(plan_batches(images_per_page, settings)):
            with pymupdf.open(path) as doc:  # each ExtractBatch invocation opens the file anew
                result = extract_pages(
                    doc, document_id="bench", batch_no=n, first_page=pages[0] + first, last_page=pages[0] + last,
                    settings=settings, store_image=store_image,
                )
            out.update({record.page_no - 1: record.markdown for record in result.pages})
        return out

    return run


by_pagemill = pagemill_with(SETTINGS)


# pymupdf4llm's layout switch is process-global and switching it on reloads the model, so it
# is set once per mode, outside the timing (see use_mode).
MODES: dict[str, Extractor] = {
    "get_text": by_get_text,
    "layout": by_layout,
    "legacy": legacy(TABLE_STRATEGY),
    "legacy-notab": legacy(None),
    "pagemill": by_pagemill,
}


# --- quality against the generated truth -------------------------------------------------------

_WORD = re.compile(r"\w+")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")


@dataclass
class Score:
    true_tokens: int = 0
    found_tokens: int = 0
    matched_tokens: int = 0
    headings: int = 0
    headings_found: int = 0
    tables: int = 0
    tables_found: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, truth: PageTruth, markdown: str, page_no: int) -> None:
        expected = Counter(_tokens(truth.text))
        found = Counter(_tokens(_plain(markdown)))
        self.true_tokens += sum(expected.values())
        self.found_tokens += sum(found.values())
        self.matched_tokens += sum((expected & found).values())
        heading_lines = [_squash(line.lstrip("#").replace("**", "")) for line in markdown.splitlines() if line.startswith("#")]
        for heading in truth.headings:
            self.headings += 1
            if heading in heading_lines:
                self.headings_found += 1
            elif len(self.misses) < 3:
                self.misses.append(f"p{page_no} heading {heading!r}")
        if truth.table_rows:
            self.tables += 1
            rows = _table_rows(markdown)
            if all(row in rows for row in truth.table_rows):
                self.tables_found += 1
            elif len(self.misses) < 3:
                self.misses.append(f"p{page_no} table")

    def row(self) -> str:
        recall = self.matched_tokens / self.true_tokens
        precision = self.matched_tokens / self.found_tokens if self.found_tokens else 0.0
        return (
            f"{recall:>8.3f}{precision:>10.3f}{f'{self.headings_found}/{self.headings}':>11}"
            f"{f'{self.tables_found}/{self.tables}':>9}"
        )


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _squash(text: str) -> str:
    return " ".join(text.split())


def _plain(markdown: str) -> str:
    """The words a reader sees: markdown syntax (emphasis, table rules, image links) removed."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", markdown)
    text = re.sub(r"<br\s*/?>", " ", text)
    return re.sub(r"[#*_|`]", " ", "\n".join(line for line in text.splitlines() if not _TABLE_RULE.match(line)))


def _table_rows(markdown: str) -> list[list[str]]:
    rows = []
    for line in markdown.splitlines():
        line = line.strip()
        if line.startswith("|") and not _TABLE_RULE.match(line):
            cells = line.strip("|").split("|")
            rows.append([_squash(re.sub(r"<br\s*/?>", " ", cell).replace("**", "")) for cell in cells])
    return rows


# --- running ---------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    documents: list[tuple[Path, list[int]]]

    @property
    def pages(self) -> int:
        return sum(len(pages) for _, pages in self.documents)


def corpus_workload(corpus: Path, max_pages: int) -> tuple[Workload, list[str]]:
    documents, skipped = [], []
    for path in sorted(corpus.glob("*.pdf")):
        try:
            doc = open_pdf(path, SETTINGS)
        except InputError as exc:
            skipped.append(f"{path.name} ({type(exc).__name__})")
            continue
        documents.append((path, list(range(min(doc.page_count, max_pages)))))
        doc.close()
    return Workload(f"corpus, {len(documents)} PDFs", documents), skipped


def catalog_workload(folder: Path, window: int) -> tuple[Workload, list[PageTruth]]:
    path = folder / "mixed-500.pdf"
    truth = make_mixed(path, pages=500, images=200)
    starts = [0, (500 - window) // 2, 500 - window]
    documents = [(path, list(range(s, s + window))) for s in starts]
    return Workload(f"catalog 500 p / 200 img, 3x{window} pages", documents), truth


def use_mode(name: str) -> None:
    pymupdf4llm.use_layout(name == "layout" or (name == "pagemill" and SETTINGS.markdown_mode == "layout"))


def timed(mode: Extractor, workload: Workload) -> tuple[float, dict[tuple[Path, int], str]]:
    markdown: dict[tuple[Path, int], str] = {}
    seconds = 0.0
    for path, pages in workload.documents:
        started = time.perf_counter()
        out = mode(path, pages)
        seconds += time.perf_counter() - started
        markdown.update({(path, i): text for i, text in out.items()})
    return seconds, markdown


def warm_up(folder: Path) -> None:
    path = folder / "warm.pdf"
    make_mixed(path, pages=10, images=4)
    for name, mode in MODES.items():
        use_mode(name)
        mode(path, list(range(10)))


def profile_pagemill(workload: Workload, top: int = 12) -> None:
    use_mode("pagemill")
    from pyinstrument import Profiler  # a dev dependency, for this report only

    profiler = Profiler(interval=0.001)
    profiler.start()
    timed(by_pagemill, workload)
    session = profiler.stop()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()

    def walk(frame, seen: frozenset[str]) -> None:
        name = f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"
        if name not in seen:  # recursion counts once
            inclusive[name] += frame.time
        if not frame.function.startswith("["):  # pyinstrument's synthetic [self] / [await] frames
            own[name] += frame.total_self_time
        for child in frame.children:
            walk(child, seen | {name})

    root = session.root_frame()
    walk(root, frozenset())
    inclusive = Counter({n: t for n, t in inclusive.items() if not n.startswith("[")})
    total = root.time
    print(f"\nprofile of pagemill on the catalog windows (pyinstrument, {total:.2f} s):")
    print("  inclusive (a function and what it calls):")
    wanted = [n for n, _ in inclusive.most_common() if not n.startswith(("<module>", "timed", "by_pagemill", "profile"))]
    for name in wanted[:top]:
        print(f"    {inclusive[name] / total:6.1%}  {name}")
    print("  own time:")
    for name, seconds in own.most_common(top):
        print(f"    {seconds / total:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--corpus-pages", type=int, default=8)
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {machine()['loadavg']}")
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as tmp:
        folder = Path(tmp)
        workloads: list[Workload] = []
        if args.corpus.is_dir():
            corpus, skipped = corpus_workload(args.corpus, args.corpus_pages)
            workloads.append(corpus)
            print(f"corpus: first {args.corpus_pages} pages of each PDF; skipped: {', '.join(skipped) or 'none'}")
        else:
            print(f"corpus: {args.corpus} not found, skipped")
        catalog, truth = catalog_workload(folder, args.window)
        workloads.append(catalog)
        warm_up(folder)

        rates: dict[str, dict[str, float]] = {}
        scores: dict[str, Score] = {}
        for name, mode in MODES.items():
            use_mode(name)
            for workload in workloads:
                seconds, markdown = timed(mode, workload)
                rates.setdefault(name, {})[workload.name] = workload.pages / seconds
                if workload is catalog:
                    score = scores[name] = Score()
                    for path, pages in workload.documents:
                        for i in pages:
                            score.add(truth[i], markdown[(path, i)], i + 1)

        print(f"\npages/s (ratio to layout, to get_text); load average: {machine()['loadavg']}")
        header = f"{'mode':<14}" + "".join(f"{'   ' + w.name + f' ({w.pages} p)':>42}" for w in workloads)
        print(header)
        for name in MODES:
            cells = ""
            for w in workloads:
                rate = rates[name][w.name]
                cells += f"{rate:>20,.1f}{rate / rates['layout'][w.name]:>10.2f}x{rate / rates['get_text'][w.name]:>10.3f}x "
            print(f"{name:<14}{cells}")

        print(f"\nquality on the catalog windows ({catalog.pages} pages with known truth)")
        print(f"{'mode':<14}{'recall':>8}{'precision':>10}{'headings':>11}{'tables':>9}   first misses")
        for name, score in scores.items():
            print(f"{name:<14}{score.row()}   {'; '.join(score.misses)}")
        if not args.no_profile:
            profile_pagemill(catalog)
    print(f"\nload average at end: {machine()['loadavg']}")


if __name__ == "__main__":
    main()
