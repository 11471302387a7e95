"""The per-document token budget stops model calls (its own module: the budget is the caption
functions' configuration, so it needs an engine of its own)."""

from __future__ import annotations

from pathlib import Path

from pagemill.captions.client import BUDGET_EXHAUSTED
from tests.support.fake_anthropic import FakeAnthropic, tool_answer
from tests.support.model_api import answer, engine_for, image_rows, run_catalog


def test_the_token_budget_stops_calls(engine_home: Path, module_database_url: str, db, tmp_path: Path) -> None:
    # GIVEN a document budget of 5,000 tokens (a caption of these small images reserves about
    # 800 and is billed 940)
    with FakeAnthropic(default=tool_answer(answer, input_tokens=900, output_tokens=40), api_key="test-key") as fake, \
            engine_for(fake, engine_home, module_database_url, PAGEMILL_CAPTION_TOKEN_BUDGET="5000") as engine:
        # WHEN a catalog with a dozen images runs
        document, truth = run_catalog(engine, tmp_path, pages=12, seed=14)
    # THEN it succeeded, a few images were captioned and the rest stopped at the budget
    assert document.status == "SUCCEEDED"
    rows = image_rows(db, document.document_id)
    captioned = [r for r in rows if r[2] == "captioned"]
    assert 1 <= len(captioned) <= 5000 // 940 < truth.distinct_images
    assert len(fake.requests) == len(captioned)  # no request was sent that the budget refused
    assert all(r[3] == BUDGET_EXHAUSTED for r in rows if r[2] == "skipped")
    spent = db.execute("select input_tokens + output_tokens from documents where id = %s",
                       (document.document_id,)).fetchone()[0]
    assert 0 < spent <= 5000
