"""Extracting a batch of pages (pagemill.extract) from real PDFs: the sample catalog, generated
edge cases and the corpus. The image sink is a dict, as an S3 bucket would be."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pymupdf
import pytest

from pagemill.pdf.document import inspect_pdf, open_pdf, plan_batches
from pagemill.pdf.pages import extract_pages
from pagemill.records import BatchResult, dump, load
from pagemill.settings import Settings
from pagemill_tools.sample import CatalogTruth, make_catalog

SETTINGS = Settings()


class Bucket:
    """A dict-backed image store that refuses a second write of the same image in one batch."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes: list[str] = []

    def put(self, sha256: str, ext: str, data: bytes) -> str:
        key = f"images/{sha256}.{ext}"
        assert sha256 not in self.writes, f"image {sha256} stored twice in one batch"
        self.writes.append(sha256)
        self.objects[key] = data
        return key


def extract(doc: pymupdf.Document, first: int, last: int, bucket: Bucket, settings: Settings = SETTINGS,
            ocr_skip: tuple[int, ...] = ()) -> BatchResult:
    return extract_pages(
        doc, document_id="doc-1", batch_no=0, first_page=first, last_page=last, settings=settings,
        store_image=bucket.put, ocr_skip=ocr_skip,
    )


def squash(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CatalogTruth]:
    path = tmp_path_factory.mktemp("catalog") / "catalog.pdf"
    return path, make_catalog(path)


@pytest.fixture(scope="module")
def catalog_batch(catalog: tuple[Path, CatalogTruth]) -> tuple[BatchResult, Bucket, CatalogTruth]:
    path, truth = catalog
    doc = open_pdf(path, SETTINGS)
    bucket = Bucket()
    result = extract(doc, 1, truth.page_count, bucket)
    doc.close()
    return result, bucket, truth


# --- the sample catalog -----------------------------------------------------------------------


def test_catalog_distinct_images_are_stored_once_each(catalog_batch) -> None:
    # GIVEN the whole sample catalog extracted as one batch
    result, bucket, truth = catalog_batch
    # THEN exactly the catalog's distinct images were stored, each once, under the key the sink chose
    assert sorted(bucket.writes) == truth.image_hashes
    assert len(bucket.writes) == truth.distinct_images
    assert {o.s3_key for o in result.images} == set(bucket.objects)
    # AND each stored object is the image's bytes (its sha256 is its name)
    for occurrence in result.images:
        assert occurrence.size_bytes == len(bucket.objects[occurrence.s3_key])


def test_catalog_logo_is_on_every_page(catalog_batch) -> None:
    # GIVEN the whole sample catalog extracted as one batch
    result, _, truth = catalog_batch
    # THEN the logo has one occurrence on every page, at the place it is drawn
    logo = [o for o in result.images if o.sha256 == truth.logo_sha256]
    assert [o.page_no for o in logo] == list(range(1, truth.page_count + 1))
    assert {o.bbox for o in logo} == {(48.0, 28.0, 88.0, 68.0)}
    assert {(o.width, o.height, o.ext) for o in logo} == {(64, 64, "png")}
    # AND no page has two occurrences of one image
    pairs = [(o.sha256, o.page_no) for o in result.images]
    assert len(pairs) == len(set(pairs))


def test_catalog_pages_carry_text_size_and_image_counts(catalog_batch, catalog) -> None:
    # GIVEN the whole sample catalog extracted as one batch
    result, _, truth = catalog_batch
    doc = pymupdf.open(catalog[0])
    # THEN every page has its record, in order, with the plain-text size and the page size
    assert [p.page_no for p in result.pages] == list(range(1, truth.page_count + 1))
    for record in result.pages:
        assert record.char_count == len(doc.load_page(record.page_no - 1).get_text())
        assert (round(record.width), round(record.height)) == (595, 842)
        # the logo, plus a product photo on every page but the price table's
        assert record.image_count == (1 if record.page_no == truth.table_page else 2)
    doc.close()
    assert result.skipped_images == []


def test_catalog_markdown_has_headings_paragraphs_and_the_table(catalog_batch) -> None:
    # GIVEN the whole sample catalog extracted as one batch
    result, _, truth = catalog_batch
    for record, heading, paragraphs in zip(result.pages, truth.headings, truth.text_per_page, strict=True):
        # THEN each heading is a markdown heading on its page, and each paragraph is there
        assert any(line.startswith("#") and heading in line for line in record.markdown.splitlines()), heading
        for paragraph in paragraphs:
            assert squash(paragraph) in squash(record.markdown)
    # AND the price table is a markdown table with every row
    table_md = result.pages[truth.table_page - 1].markdown
    for row in truth.table_rows:
        assert "|" + "|".join(row) + "|" in table_md


def test_catalog_chunks_cover_every_page(catalog_batch) -> None:
    # GIVEN the whole sample catalog extracted as one batch
    result, _, truth = catalog_batch
    # THEN chunks are numbered, within the size limit, and every page lies in one
    assert result.chunks
    assert [c.chunk_no for c in result.chunks] == list(range(len(result.chunks)))
    for page_no in range(1, truth.page_count + 1):
        assert any(c.first_page <= page_no <= c.last_page for c in result.chunks)
    assert all(len(c.text) <= SETTINGS.chunk_chars for c in result.chunks)


def test_batch_result_round_trips_through_json(catalog_batch) -> None:
    # GIVEN a batch result as the Lambda writes it to S3
    result, _, _ = catalog_batch
    # WHEN it is serialised and read back
    again = load(BatchResult, json.loads(json.dumps(dump(result))))
    # THEN nothing changed
    assert again == result


def test_catalog_in_planned_batches_covers_each_page_once(catalog) -> None:
    # GIVEN the catalog planned into small batches, as the state machine would
    path, truth = catalog
    settings = Settings(batch_pages=10)
    doc = open_pdf(path, settings)
    batches = plan_batches(inspect_pdf(doc).images_per_page, settings)
    # WHEN each batch is extracted with its own store (a Lambda invocation each)
    results = [extract(doc, first, last, Bucket(), settings) for first, last in batches]
    doc.close()
    # THEN every page comes out once, and the distinct images across batches are the catalog's
    assert [p.page_no for r in results for p in r.pages] == list(range(1, truth.page_count + 1))
    assert sorted({o.sha256 for r in results for o in r.images}) == truth.image_hashes
    # AND batches follow the plan's cost limits (the catalog has two images per page)
    assert len(batches) == 5


def test_layout_mode_extracts_the_same_pages(catalog) -> None:
    # GIVEN the layout-model markdown mode
    path, truth = catalog
    settings = Settings(markdown_mode="layout")
    doc = open_pdf(path, settings)
    # WHEN three pages including the price table are extracted
    first = truth.table_page - 1
    result = extract(doc, first, first + 2, Bucket(), settings)
    doc.close()
    # THEN the headings and table cells are in the markdown and the images are the same
    for record in result.pages:
        assert truth.headings[record.page_no - 1] in record.markdown
    assert truth.table_rows[1][0] in result.pages[1].markdown
    assert sum(o.sha256 == truth.logo_sha256 for o in result.images) == 3


# --- generated edge cases ---------------------------------------------------------------------


def _pixmap(seed: int, size: int = 64) -> pymupdf.Pixmap:
    return pymupdf.Pixmap(pymupdf.csRGB, size, size, bytes((seed % 256, 80, 160)) * size * size, False)


def test_one_image_on_ten_pages_is_ten_occurrences_and_one_write(tmp_path: Path) -> None:
    # GIVEN a photo drawn on each of 10 pages (one xref) and a copy of it under a second xref on page 10
    doc = pymupdf.open()
    png = _pixmap(1).tobytes("png")
    for n in range(10):
        page = doc.new_page()
        page.insert_text((72, 72), f"Page {n + 1}")
        page.insert_image(pymupdf.Rect(100, 100, 200, 200), stream=png)
    doc.load_page(9).insert_image(pymupdf.Rect(300, 300, 400, 400), pixmap=_pixmap(1))
    path = tmp_path / "repeat.pdf"
    doc.save(path)
    # WHEN the 10 pages are one batch
    bucket = Bucket()
    result = extract(open_pdf(path, SETTINGS), 1, 10, bucket)
    # THEN there are 10 occurrences (one per page) and the image was written once
    assert [o.page_no for o in result.images] == list(range(1, 11))
    assert len(bucket.writes) == 1
    assert result.images[0].bbox == (100.0, 100.0, 200.0, 200.0)


def test_tiny_images_are_skipped_without_storing(tmp_path: Path) -> None:
    # GIVEN a page with a 16x16 bullet, a 200x8 rule and a 64x64 photo
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_image(pymupdf.Rect(10, 10, 26, 26), pixmap=_pixmap(2, 16))
    rule = pymupdf.Pixmap(pymupdf.csRGB, 200, 8, b"\x00" * 4800, False)
    page.insert_image(pymupdf.Rect(10, 40, 210, 48), pixmap=rule)
    page.insert_image(pymupdf.Rect(100, 100, 164, 164), pixmap=_pixmap(3))
    path = tmp_path / "tiny.pdf"
    doc.save(path)
    # WHEN it is extracted
    bucket = Bucket()
    result = extract(open_pdf(path, SETTINGS), 1, 1, bucket)
    # THEN only the photo is kept; the two decorations are skipped as tiny
    assert len(result.images) == 1 and len(bucket.writes) == 1
    assert sorted((s.width, s.height, s.reason) for s in result.skipped_images) == [(16, 16, "tiny"), (200, 8, "tiny")]


def test_tiny_image_is_not_decoded(tmp_path: Path) -> None:
    # GIVEN a page with a 16x16 image whose stream is garbage (decoding it would fail) and a photo
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "A bullet and a photo")
    xref = page.insert_image(pymupdf.Rect(10, 10, 26, 26), pixmap=_pixmap(4, 16))
    page.insert_image(pymupdf.Rect(100, 100, 164, 164), pixmap=_pixmap(6))
    doc.update_stream(xref, b"not a JPEG 2000 codestream" * 4, compress=False)
    doc.xref_set_key(xref, "Filter", "/JPXDecode")
    path = tmp_path / "tiny-broken.pdf"
    doc.save(path)
    # WHEN it is extracted
    result = extract(open_pdf(path, SETTINGS), 1, 1, Bucket())
    # THEN the tiny image is a "tiny" skip, not an "unreadable" one (it was never decoded), and the
    # page keeps its full markdown path (an unreadable image would make it text-only)
    assert [(s.width, s.height, s.reason) for s in result.skipped_images] == [(16, 16, "tiny")]
    assert len(result.images) == 1 and result.images[0].bbox == (100.0, 100.0, 164.0, 164.0)


def test_jpeg_is_stored_as_its_original_bytes(tmp_path: Path) -> None:
    # GIVEN a page drawing a JPEG
    jpeg = _pixmap(7, 96).tobytes("jpeg")
    doc = pymupdf.open()
    doc.new_page().insert_image(pymupdf.Rect(50, 50, 146, 146), stream=jpeg)
    path = tmp_path / "jpeg.pdf"
    doc.save(path)
    # WHEN it is extracted
    bucket = Bucket()
    result = extract(open_pdf(path, SETTINGS), 1, 1, bucket)
    # THEN the stored object is the JPEG file itself, byte for byte, under its own hash
    [occurrence] = result.images
    assert occurrence.ext == "jpeg"
    assert bucket.objects[occurrence.s3_key] == jpeg
    assert occurrence.sha256 == hashlib.sha256(jpeg).hexdigest() and occurrence.size_bytes == len(jpeg)


def test_many_images_on_a_page_are_each_located(tmp_path: Path) -> None:
    # GIVEN a page drawing 40 distinct images in a grid, one of them twice
    doc = pymupdf.open()
    page = doc.new_page()
    rects = [pymupdf.Rect(20 + 70 * (n % 8), 20 + 70 * (n // 8), 84 + 70 * (n % 8), 84 + 70 * (n // 8))
             for n in range(40)]
    for n, rect in enumerate(rects):
        page.insert_image(rect, pixmap=_pixmap(100 + n))
    xref = page.get_images()[0][0]
    page.insert_image(pymupdf.Rect(300, 600, 364, 664), xref=xref)
    path = tmp_path / "grid.pdf"
    doc.save(path)
    # WHEN it is extracted
    result = extract(open_pdf(path, SETTINGS), 1, 1, Bucket())
    # THEN every image has its own place, the repeated one where it is first drawn
    assert sorted(o.bbox for o in result.images) == sorted(tuple(r) for r in rects)


def test_unreadable_image_is_skipped_and_the_batch_survives(tmp_path: Path) -> None:
    # GIVEN two pages, the second with an image whose JPEG 2000 stream is garbage
    doc = pymupdf.open()
    for n in range(2):
        page = doc.new_page()
        page.insert_text((72, 72), f"Text of page {n + 1}")
        xref = page.insert_image(pymupdf.Rect(100, 100, 164, 164), pixmap=_pixmap(10 + n))
    doc.update_stream(xref, b"not a JPEG 2000 codestream" * 20, compress=False)
    doc.xref_set_key(xref, "Filter", "/JPXDecode")
    path = tmp_path / "broken-image.pdf"
    doc.save(path)
    # WHEN both pages are one batch
    result = extract(open_pdf(path, SETTINGS), 1, 2, Bucket())
    # THEN the broken image is a skip, the good one an occurrence, and both pages have their text
    assert [(s.page_no, s.reason) for s in result.skipped_images] == [(2, "unreadable")]
    assert [o.page_no for o in result.images] == [1]
    assert [p.markdown.strip() for p in result.pages] == ["Text of page 1", "Text of page 2"]


def test_encrypted_with_empty_user_password_extracts(tmp_path: Path) -> None:
    # GIVEN an owner-password-only PDF with text and an image
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Owner locked, anyone can read")
    page.insert_image(pymupdf.Rect(100, 100, 164, 164), pixmap=_pixmap(5))
    path = tmp_path / "owner.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner")
    # WHEN it is extracted
    bucket = Bucket()
    result = extract(open_pdf(path, SETTINGS), 1, 1, bucket)
    # THEN text and image come out decrypted
    assert "anyone can read" in result.pages[0].markdown
    assert len(bucket.writes) == 1


# --- corpus -----------------------------------------------------------------------------------


@pytest.mark.corpus
def test_pdkids_has_ten_distinct_images(corpus: Path) -> None:
    # GIVEN the anthology whose pages all list the same 10 pictures in a shared resource dictionary
    doc = open_pdf(corpus / "pdkids.pdf", SETTINGS)
    batches = plan_batches(inspect_pdf(doc).images_per_page, SETTINGS)
    # WHEN every batch is extracted
    results = [extract(doc, first, last, Bucket()) for first, last in batches]
    doc.close()
    # THEN the document has 10 distinct images, each found where it is actually drawn
    occurrences = [o for r in results for o in r.images]
    assert len({o.sha256 for o in occurrences}) == 10
    assert all(o.bbox != (0.0, 0.0, 0.0, 0.0) for o in occurrences)
    assert len(occurrences) == 10  # each picture is drawn on one page, not on all 55


@pytest.mark.corpus
@pytest.mark.parametrize("mode", ["legacy", "layout"])
def test_enormous_image_is_skipped_without_decoding(
    corpus: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a page drawing a 9000x9000 image (81 Mpx; 243 MB decoded) and a watch on every way
    # PyMuPDF decodes an image: extract_image, Pixmap(doc, xref), page rendering
    decoded: list[str] = []
    real_extract, real_render = pymupdf.Document.extract_image, pymupdf.Page.get_pixmap

    class WatchedPixmap(pymupdf.Pixmap):
        def __init__(self, *args) -> None:
            if len(args) == 2 and isinstance(args[0], pymupdf.Document):
                decoded.append(f"Pixmap(doc, {args[1]})")
            super().__init__(*args)

    def watched_extract(doc, xref):
        decoded.append(f"extract_image({xref})")
        return real_extract(doc, xref)

    def watched_render(page, *args, **kwargs):
        decoded.append("get_pixmap")
        return real_render(page, *args, **kwargs)

    monkeypatch.setattr(pymupdf, "Pixmap", WatchedPixmap)
    monkeypatch.setattr(pymupdf.Document, "extract_image", watched_extract)
    monkeypatch.setattr(pymupdf.Page, "get_pixmap", watched_render)
    settings = Settings(markdown_mode=mode)
    doc = open_pdf(corpus / "enormous.pdf", settings)
    bucket = Bucket()
    # WHEN it is extracted
    result = extract(doc, 1, 1, bucket, settings)
    doc.close()
    # THEN the image is a too_many_pixels skip, nothing was stored, and nothing decoded it
    assert [(s.width, s.height, s.reason) for s in result.skipped_images] == [(9000, 9000, "too_many_pixels")]
    assert result.images == [] and bucket.writes == []
    assert decoded == []


@pytest.mark.corpus
def test_images_inside_form_xobjects(corpus: Path) -> None:
    # GIVEN the GAO brochure: 80 placements of 54 distinct images, all inside form XObjects
    doc = open_pdf(corpus / "gao-23-106826-2p.pdf", SETTINGS)
    bucket = Bucket()
    # WHEN both pages are extracted
    result = extract(doc, 1, 2, bucket)
    doc.close()
    # THEN each distinct image is stored once and every placement has a position on the page
    assert len(bucket.writes) == 54
    assert len({o.sha256 for o in result.images}) == 54
    assert all(o.bbox != (0.0, 0.0, 0.0, 0.0) for o in result.images)


@pytest.mark.corpus
def test_same_scan_on_four_rotated_pages(corpus: Path) -> None:
    # GIVEN one scan placed on 4 pages in 4 orientations
    doc = open_pdf(corpus / "cardinal.pdf", SETTINGS)
    bucket = Bucket()
    # WHEN the pages are extracted (without OCR: the images are the point here, and OCR of
    # these pages has its own test in tests/e2e/test_corpus.py)
    result = extract(doc, 1, 4, bucket, ocr_skip=(1, 2, 3, 4))
    doc.close()
    # THEN it is one image with four occurrences, each covering most of its page
    assert len(bucket.writes) == 1
    assert [o.page_no for o in result.images] == [1, 2, 3, 4]
    for occurrence, page in zip(result.images, result.pages, strict=True):
        x0, y0, x1, y1 = occurrence.bbox
        assert (x1 - x0) * (y1 - y0) > 0.5 * page.width * page.height
