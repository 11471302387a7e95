"""Per-page markdown decisions (pagemill.pdf.markdown) on generated pages: a page skips table
detection only when its drawings cannot form a table, and its markdown is what the full
pymupdf4llm pass (table detection on every page) gives."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pymupdf4llm
import pytest

from bench.bench_extract import legacy
from pagemill.pdf import markdown
from pagemill.pdf.markdown import TABLE_STRATEGY, may_hold_table, may_hold_unruled_table, page_markdown
from pagemill_tools.sample import PageTruth, add_text_grid, make_mixed


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PageTruth]]:
    # 10 pages: ruled tables on pages 2 and 7, photos on 4 others, the rest text only
    path = tmp_path_factory.mktemp("mixed") / "mixed.pdf"
    return path, make_mixed(path, pages=10, images=4, table_every=5)


def full_pass(path: Path, pages: list[int]) -> dict[int, str]:
    """pymupdf4llm legacy with table detection on every page, as before the per-page decision
    (the benchmark's reference)."""
    pymupdf4llm.use_layout(False)
    return legacy(TABLE_STRATEGY)(path, pages)


def test_only_table_pages_need_table_detection(mixed) -> None:
    # GIVEN text-only, photo and ruled-table pages
    path, truth = mixed
    with pymupdf.open(path) as doc:
        # WHEN each page is classified
        needs = [may_hold_table(page) for page in doc]
    # THEN exactly the table pages need detection
    assert needs == [bool(page.table_rows) for page in truth]
    assert sum(needs) == 2


def test_per_page_markdown_equals_the_full_pass_and_keeps_the_tables(mixed) -> None:
    # GIVEN the generated pages, and the markdown of the full pass over them
    path, truth = mixed
    pages = list(range(len(truth)))
    expected = full_pass(path, pages)
    # WHEN pagemill decides per page
    with pymupdf.open(path) as doc:
        got = page_markdown(doc, pages, set(), "legacy")
    # THEN every page's markdown is the full pass's, character for character
    assert got == expected
    # AND each table page still yields its table, every row a markdown row with the right cells
    for index, page in enumerate(truth):
        assert all("|" + "|".join(row) + "|" in got[index] for row in page.table_rows)
        assert ("|---|" in got[index]) == bool(page.table_rows)
        assert f"# **{page.headings[0]}**" in got[index]


def test_a_page_of_lines_that_cannot_form_a_grid_skips_detection(tmp_path: Path) -> None:
    # GIVEN a text page with a header rule, a footer rule and a box around a note
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Terms and conditions")
    page.draw_line((72, 80), (520, 80))
    page.draw_line((72, 700), (520, 700))
    page.draw_rect(pymupdf.Rect(72, 300, 520, 400))
    page.insert_text((80, 350), "Note: prices change without notice.")
    # AND a page with a 2 x 2 ruled grid
    grid = doc.new_page()
    for y in (100, 130, 160):
        grid.draw_line((72, y), (372, y))
    for x in (72, 222, 372):
        grid.draw_line((x, 100), (x, 160))
    for y, x, text in [(120, 80, "a"), (120, 230, "b"), (150, 80, "c"), (150, 230, "d")]:
        grid.insert_text((x, y), text)
    # THEN the first cannot hold a table and the second can
    assert [may_hold_table(p) for p in doc] == [False, True]
    path = tmp_path / "rules.pdf"
    doc.save(path)
    # AND both come out as the full pass gives them, the grid as a table
    with pymupdf.open(path) as again:
        got = page_markdown(again, [0, 1], set(), "legacy")
    assert got == full_pass(path, [0, 1])
    assert "|c|d|" in got[1]


def test_the_layout_model_is_loaded_once_across_mode_switches(mixed) -> None:
    # GIVEN a process that has converted a page in layout mode
    path, _ = mixed
    with pymupdf.open(path) as doc:
        page_markdown(doc, [0], set(), "layout")
        analyser = pymupdf._get_layout
        # WHEN it converts in legacy mode and then in layout mode again
        page_markdown(doc, [0], set(), "legacy")
        assert pymupdf._get_layout is None  # legacy pages are not analysed by the model
        page_markdown(doc, [0], set(), "layout")
    # THEN the layout mode uses the analyser it loaded first (loading it costs about half a second)
    assert callable(analyser) and pymupdf._get_layout is analyser
    pymupdf4llm.use_layout(False)


def test_legacy_mode_is_left_on_after_pages_went_to_the_layout_model() -> None:
    # GIVEN a page of text in aligned columns (an unruled table: legacy detects none)
    doc = pymupdf.open()
    add_text_grid(doc.new_page())
    # WHEN legacy markdown is asked for
    markdown = page_markdown(doc, [0], set(), "legacy")
    # THEN the layout model made the table, and pymupdf4llm is back in legacy mode for what follows
    assert "|" in markdown[0] and "cell53" in markdown[0]
    assert pymupdf4llm._use_layout is False and pymupdf._get_layout is None


def test_cells_in_columns_make_a_grid_only_when_their_rows_stand_together() -> None:
    # GIVEN rows of three cells starting at the same three positions: once one under another,
    # once scattered down the page between lines of prose (formulas across two columns do that)
    def page_with_rows(ys: list[int]) -> pymupdf.Page:
        page = pymupdf.open().new_page()
        for y in ys:
            for x in (72, 220, 380):
                page.insert_text((x, y), f"cell at {x}", fontsize=10)
        for y in range(90, 700, 40):
            if all(abs(y - row) > 12 for row in ys):
                page.insert_text((72, y), "A line of prose that runs along without any gap in it", fontsize=10)
        return page

    # THEN the first may hold an unruled table, the second does not
    assert may_hold_unruled_table(page_with_rows([200, 214, 228]))
    assert not may_hold_unruled_table(page_with_rows([140, 380, 620]))


def test_a_table_of_contents_is_not_a_grid() -> None:
    # GIVEN entries of a table of contents: number, title, dots leading to the page number, each
    # part starting where it does in the other entries; and the same lines without their dots
    def contents(leaders: bool) -> pymupdf.Page:
        page = pymupdf.open().new_page()
        for n, y in enumerate(range(100, 200, 14), start=1):
            page.insert_text((72, y), f"{n}.", fontsize=10)
            page.insert_text((110, y), f"Chapter {n} of the report", fontsize=10)
            if leaders:
                page.insert_text((300, y), " ".join("." * 18), fontsize=10)
            page.insert_text((500, y), str(10 * n), fontsize=10)
        return page

    # THEN the entries are no table (the layout model cut their words across cells), while the
    # same columns without leaders still are one
    assert not may_hold_unruled_table(contents(leaders=True))
    assert may_hold_unruled_table(contents(leaders=False))


def test_a_booktabs_table_goes_to_the_layout_model_without_a_legacy_pass(tmp_path: Path, monkeypatch) -> None:
    # GIVEN an unruled table under booktabs rules, with a footnote rule lower down (horizontal
    # lines only, but their ends give the page vertical edges: it may hold a ruled table), and
    # the same table inside a full grid
    doc = pymupdf.open()
    for ruled in (False, True):
        page = doc.new_page()
        add_text_grid(page)
        page.draw_line((72, 700), (250, 700))
        for y in range(86, 213, 20 if ruled else 1):
            if ruled or y in (86, 106, 212):
                page.draw_line((66, y), (520, y))
        for x in (66, 186, 306, 426, 520) if ruled else ():
            page.draw_line((x, 86), (x, 212))
        assert may_hold_table(page) and may_hold_unruled_table(page)
    path = tmp_path / "booktabs.pdf"
    doc.save(path)
    # WHEN legacy markdown is asked for, recording which pages take each pass
    passes: list[tuple[str, list[int]]] = []
    converted = markdown._full_markdown

    def spy(doc: pymupdf.Document, pages: list[int], mode: str, *args) -> dict[int, str]:
        passes.append((mode, list(pages)))
        return converted(doc, pages, mode, *args)

    monkeypatch.setattr(markdown, "_full_markdown", spy)
    with pymupdf.open(path) as again:
        got = page_markdown(again, [0, 1], set(), "legacy")
    # THEN the booktabs page went to the layout model alone, which made its table, and the grid
    # took the legacy pass, whose table it keeps
    assert passes == [("legacy", [1]), ("layout", [0])]
    assert "|" in got[0] and "cell53" in got[0]
    assert got[1] == full_pass(path, [1])[1] and "|cell50|cell51|cell52|cell53|" in got[1]


def test_fast_mode_keeps_ruled_tables_and_never_runs_the_layout_model(tmp_path: Path, monkeypatch) -> None:
    # GIVEN an unruled table (text in aligned columns) and the same table inside a full grid
    doc = pymupdf.open()
    for ruled in (False, True):
        page = doc.new_page()
        add_text_grid(page)
        for y in range(86, 213, 20) if ruled else ():
            page.draw_line((66, y), (520, y))
        for x in (66, 186, 306, 426, 520) if ruled else ():
            page.draw_line((x, 86), (x, 212))
    path = tmp_path / "grids.pdf"
    doc.save(path)
    # WHEN fast markdown is asked for, with the layout model made unreachable
    def no_model() -> None:
        raise AssertionError("fast mode asked for the layout model")

    monkeypatch.setattr(markdown.layout_model, "analyser", no_model)
    with pymupdf.open(path) as again:
        got = page_markdown(again, [0, 1], set(), "fast")
    # THEN the ruled table is the legacy pass's, and the unruled one comes out as its words
    assert got == full_pass(path, [0, 1])
    assert "|cell50|cell51|cell52|cell53|" in got[1]
    assert "|" not in got[0] and "cell53" in got[0]
