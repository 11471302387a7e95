"""Every word of each page (pagemill.pdf.page_text): the completeness check and its fallbacks on
generated pages, OCR of generated scans in three orientations and of the corpus's scanned
files, and the bounds around OCR (cap, decompression bombs, engine failures) as warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from pagemill.pdf.completeness import word_loss, words
from pagemill.pdf.document import inspect_pdf, plan_batches
from pagemill.pdf.ocr import ocr_image, rapidocr_engine, render_for_ocr
from pagemill.pdf.pages import extract_pages
from pagemill.records import BatchResult, BatchSpec, SourceObject, dump, load
from pagemill.settings import Settings
from pagemill_tools.scans import add_scan, known_text

pytestmark = pytest.mark.heavy(50)

SETTINGS = Settings()
TEXT = known_text(seed=1, words=120)


def extract(doc: pymupdf.Document, settings: Settings = SETTINGS, **kwargs: Any) -> BatchResult:
    return extract_pages(
        doc, document_id="doc-1", batch_no=0, first_page=1, last_page=doc.page_count, settings=settings,
        store_image=lambda sha256, ext, data: f"images/{sha256}.{ext}", **kwargs,
    )


def recall(truth: str, markdown: str) -> float:
    return 1 - word_loss(truth, markdown).fraction


class BrokenEngine:
    """An OCR engine that fails the way a native library does (stands in for RapidOCR only)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("onnxruntime: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")


# --- the word comparison ------------------------------------------------------------------------


def test_words_fold_ligatures_case_and_markdown() -> None:
    assert words("**Ofﬁce** | dis-\ncount") == words("office dis count")
    # a word hyphenated at a line break is found joined, as pymupdf4llm writes it, or in halves
    assert word_loss("an ef-\nficient index", "an efficient index").missing == 0
    assert word_loss("an ef-\nficient index", "an ef- ficient index").missing == 0
    loss = word_loss("one two two three", "# One\n\ntwo")
    assert (loss.missing, loss.total) == (2, 4)


# --- the completeness check on text pages -------------------------------------------------------


def test_text_beside_vector_drawings_keeps_every_word_and_records_the_fallback() -> None:
    # GIVEN a page of prose beside a dense cluster of vector drawings with a label inside it
    doc = pymupdf.open()
    page = doc.new_page()
    for i in range(40):
        page.draw_line((300 + i * 5, 100), (300 + i * 5, 400), color=(0, 0, 0))
        page.draw_circle((400, 250 + i), 30 + i)
    page.insert_textbox(pymupdf.Rect(60, 100, 290, 600), TEXT, fontsize=10)
    page.insert_textbox(pymupdf.Rect(310, 150, 500, 300), "Figure label inside the drawing cluster", fontsize=9)
    text_layer = page.get_text()
    # WHEN the batch is extracted
    result = extract(doc)
    # THEN the page's markdown holds every word of its text layer, with no warning
    record = result.pages[0]
    assert word_loss(text_layer, record.markdown).missing == 0
    assert result.warnings == []
    # AND it records that plain pymupdf4llm was not enough here
    assert record.text_source in ("ignore_graphics", "text_blocks")
    assert record.ocr_confidence is None


def test_text_on_dark_filled_rectangles_keeps_every_word() -> None:
    # GIVEN white text on a dark panel, and on a dark full-page background
    doc = pymupdf.open()
    for panel in (pymupdf.Rect(40, 40, 560, 500), None):
        page = doc.new_page()
        page.draw_rect(panel or page.rect, color=None, fill=(0.1, 0.1, 0.3))
        page.insert_textbox(pymupdf.Rect(72, 72, 520, 480), TEXT, fontsize=11, color=(1, 1, 1))
    # WHEN extracted
    result = extract(doc)
    # THEN each page keeps every word, whichever path it took
    for record in result.pages:
        assert word_loss(TEXT, record.markdown).missing == 0
        assert record.text_source in ("text_layer", "ignore_graphics", "text_blocks")
    assert result.warnings == []


def test_bold_and_italic_headings_at_body_size_become_headings_and_bullets_do_not() -> None:
    # GIVEN body-size headings in bold and in italic, a bold lead-in bullet and a bold sentence
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Maintenance schedule", fontsize=10, fontname="hebo")
    page.insert_textbox(pymupdf.Rect(72, 80, 540, 180), TEXT[:300], fontsize=10)
    page.insert_text((72, 200), "Inspection notes", fontsize=10, fontname="heit")
    page.insert_textbox(pymupdf.Rect(72, 208, 540, 300), TEXT[300:600], fontsize=10)
    page.insert_text((72, 320), "•", fontsize=10)
    page.insert_text((86, 320), "Item one:", fontsize=10, fontname="hebo")
    page.insert_text((140, 320), "check the part", fontsize=10)
    page.insert_text((72, 350), "This whole sentence is set in bold.", fontsize=10, fontname="hebo")
    # WHEN extracted
    markdown = extract(doc).pages[0].markdown
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    # THEN exactly the two headings are markdown headings
    assert headings == ["## Maintenance schedule", "## Inspection notes"]


def test_an_unruled_table_stays_a_table() -> None:
    # GIVEN prose, then a table drawn without ruling lines (a bold header row), then prose
    rows = [["Region", "Units", "Revenue"], ["North", "1200", "34500"], ["South", "980", "28100"],
            ["East", "1430", "40200"]]
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_textbox(pymupdf.Rect(72, 60, 540, 160), TEXT[:400], fontsize=10)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            page.insert_text((80 + c * 120, 200 + r * 18), cell, fontsize=10, fontname="hebo" if r == 0 else "helv")
    page.insert_textbox(pymupdf.Rect(72, 300, 540, 400), TEXT[400:800], fontsize=10)
    # WHEN extracted
    markdown = extract(doc).pages[0].markdown
    # THEN every row is a markdown table row with its cells in order, under the real header
    table = [[" ".join(c.replace("**", "").split()) for c in line.strip().strip("|").split("|")]
             for line in markdown.splitlines() if line.startswith("|")]
    assert all(row in table for row in rows), markdown
    assert "Col1" not in markdown


# --- OCR of pages without a text layer ------------------------------------------------------------


class CountingEngine:
    """RapidOCR, counting for each page read its searches for lines, the lines its last search
    found, and the lines it read."""

    def __init__(self) -> None:
        self.engine = rapidocr_engine()
        self.pages: list[dict[str, int]] = []

    def load_img(self, image: Any) -> Any:
        self.pages.append({"searches": 0, "found": 0, "read": 0})  # once a page, before its search
        return self.engine.load_img(image)

    def __call__(self, image: Any, use_det: bool | None = None, use_cls: bool | None = None,
                 use_rec: bool | None = None) -> Any:
        result = self.engine(image, use_det=use_det, use_cls=use_cls, use_rec=use_rec)
        if use_det:
            self.pages[-1]["searches"] += 1
            self.pages[-1]["found"] = len(result.boxes) if result.boxes is not None else 0
        if use_rec:
            self.pages[-1]["read"] += len(result.txts or ())
        return result

    def recognize_txt(self, crops: list[Any]) -> Any:
        self.pages[-1]["read"] += len(crops)
        return self.engine.recognize_txt(crops)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


@pytest.fixture(scope="module")
def scans() -> tuple[pymupdf.Document, list[str], BatchResult, CountingEngine]:
    doc = pymupdf.open()
    texts = [known_text(seed=rotation, words=150) for rotation in (0, 180, 90)]
    for text, rotation in zip(texts, (0, 180, 90), strict=True):
        add_scan(doc, text, rotation=rotation)
    engine = CountingEngine()
    return doc, texts, extract(doc, ocr_engine=engine), engine


def test_scans_in_three_orientations_are_read_upright(scans) -> None:
    # GIVEN scans of known text: upright, upside down, and on their side
    _, texts, result, _ = scans
    # THEN each page's markdown is its OCR text, read upright (word recall at least 0.9)
    for record, text in zip(result.pages, texts, strict=True):
        assert record.text_source == "ocr"
        assert recall(text, record.markdown) >= 0.9, record.markdown[:200]
        assert 0.8 <= record.ocr_confidence <= 1.0
    assert result.warnings == []


def test_each_page_s_lines_are_read_once_the_right_way_up(scans) -> None:
    # GIVEN the upright scan, the one upside down and the one on its side, read
    _, _, _, engine = scans
    # THEN each line was read once, the right way up, after the six longest lines were read both
    # ways up to tell which way is up; only a page that had to be turned was searched again
    assert [(page["searches"], page["read"] - page["found"]) for page in engine.pages] == [(1, 6), (2, 12), (2, 12)]


def test_ocr_text_becomes_chunks(scans) -> None:
    _, texts, result, _ = scans
    chunked = " ".join(chunk.text for chunk in result.chunks)
    assert recall(" ".join(texts), chunked) >= 0.9
    assert {chunk.first_page for chunk in result.chunks} >= {1, 2, 3}


def test_plan_counts_scans_as_costly_pages(scans) -> None:
    # GIVEN the three scans after two text pages
    doc, _, _, _ = scans
    mixed = pymupdf.open()
    for _ in range(2):
        mixed.new_page().insert_text((72, 72), TEXT[:80])
    mixed.insert_pdf(doc)
    info = inspect_pdf(mixed)
    # THEN only the scans need OCR, and each weighs ocr_page_cost more in a batch
    assert info.ocr_pages == [3, 4, 5]
    settings = Settings(batch_cost=2 + 1 + SETTINGS.image_page_cost + SETTINGS.ocr_page_cost)
    assert plan_batches(info.images_per_page, settings, frozenset(info.ocr_pages)) == [(1, 3), (4, 4), (5, 5)]
    assert plan_batches(info.images_per_page, settings) == [(1, 5)]


def test_pages_over_the_ocr_cap_get_a_warning_not_ocr() -> None:
    # GIVEN a batch whose second scan is beyond the document's OCR cap (Plan's decision)
    doc = pymupdf.open()
    for seed in (1, 2):
        add_scan(doc, known_text(seed, 60), dpi=150)
    spec = BatchSpec("doc-1", SourceObject("b", "k"), 0, 1, 2, ocr_skip=(2,))
    assert load(BatchSpec, json.loads(json.dumps(dump(spec)))) == spec  # through the manifest's JSON
    # WHEN extracted
    result = extract(doc, ocr_skip=spec.ocr_skip)
    # THEN page 1 is read, page 2 is not and the batch says so
    assert [r.text_source for r in result.pages] == ["ocr", "text_layer"]
    assert [(w.code, w.pages) for w in result.warnings] == [("ocr_cap_reached", [2])]
    assert "PAGEMILL_OCR_MAX_PAGES" in result.warnings[0].message


def test_a_scan_too_large_to_render_is_refused_with_a_warning() -> None:
    # GIVEN a scan whose image has more pixels than the decompression-bomb limit
    doc = pymupdf.open()
    add_scan(doc, known_text(3, 60), dpi=150)
    settings = Settings(max_image_pixels=1_000_000)
    # WHEN extracted, with an engine that would fail if it were ever called
    result = extract(doc, settings, ocr_engine=BrokenEngine())
    # THEN the page is not rendered for OCR, and the warning says why
    assert [(w.code, w.pages) for w in result.warnings] == [("ocr_refused", [1])]
    assert result.pages[0].text_source == "text_layer"


def test_the_ocr_models_ship_in_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no way out to the network
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    # WHEN a fresh engine is built THEN its models load from the installed package, and it reads
    engine = rapidocr_engine.__wrapped__(threads=1)
    doc = pymupdf.open()
    add_scan(doc, "Models inside the wheel", dpi=150)
    assert "wheel" in ocr_image(engine, render_for_ocr(doc.load_page(0), SETTINGS)).markdown


def test_an_ocr_failure_on_one_page_is_a_warning_not_a_failed_batch() -> None:
    # GIVEN a text page and a scan, and an OCR engine that fails
    doc = pymupdf.open()
    doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 520, 700), TEXT, fontsize=11)
    add_scan(doc, known_text(4, 60), dpi=150)
    # WHEN extracted
    result = extract(doc, ocr_engine=BrokenEngine())
    # THEN the batch completes: the text page whole, the scan named in an ocr_failed warning
    assert word_loss(TEXT, result.pages[0].markdown).missing == 0
    assert [(w.code, w.pages) for w in result.warnings] == [("ocr_failed", [2])]


@pytest.mark.corpus
def test_a_corpus_scan_gets_text(corpus: Path) -> None:
    # GIVEN a scanned file of the corpus (cardinal.pdf's four orientations: tests/e2e/test_corpus.py)
    with pymupdf.open(corpus / "epson.pdf") as doc:
        result = extract(doc)
    # THEN every page is read with OCR and holds text
    assert all(r.text_source == "ocr" for r in result.pages)
    counts = [sum(words(r.markdown).values()) for r in result.pages]
    assert min(counts) >= 50, counts
