"""Captions and document understanding end to end: the Enrich stage's CaptionImages map and
UnderstandDocument run the real anthropic SDK against a local server that speaks the Messages
API; the breaker and the budget live in the stack's DynamoDB table (moto); Write stores it all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemill.captions.caption import TOOL_NAME as CAPTION_TOOL
from pagemill.captions.client import CIRCUIT_OPEN
from pagemill.pipeline.warnings import CAPTIONS_MISSING, UNDERSTANDING_MISSING
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.operate import local
from tests.support.fake_anthropic import (
    FakeAnthropic,
    rate_limited,
    server_error,
    tool_answer,
)
from tests.support.model_api import (
    CAPTION,
    THRESHOLD,
    answer,
    clear_tables,
    engine_for,
    image_rows,
    run_catalog,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=tool_answer(answer, input_tokens=900, output_tokens=40), api_key="test-key") as server:
        yield server


@pytest.fixture(scope="module")
def captions_engine(fake: FakeAnthropic, engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    with engine_for(fake, engine_home, module_database_url) as running:
        yield running


@pytest.fixture
def api(fake: FakeAnthropic, captions_engine: LocalEngine) -> Iterator[FakeAnthropic]:
    """The fake API answering normally, with no requests recorded and the breaker closed."""
    fake.always(tool_answer(answer, input_tokens=900, output_tokens=40))
    fake.requests.clear()
    clear_tables(captions_engine)
    yield fake


def test_images_are_captioned_and_the_document_understood(api, captions_engine, db, tmp_path) -> None:
    # WHEN a catalog runs with the API answering
    document, truth = run_catalog(captions_engine, tmp_path, pages=6, seed=11)
    # THEN it succeeded through CaptionImages and UnderstandDocument
    assert document.status == "SUCCEEDED"
    visited = set(captions_engine.visited_states(document.execution_arn))
    assert {"CaptionImages", "CaptionsDone", "UnderstandDocument"} <= visited
    # AND every image row carries the model's caption and tags
    rows = image_rows(db, document.document_id)
    assert len(rows) == truth.distinct_images
    assert all(r == (CAPTION["caption"], CAPTION["tags"], "captioned", None) for r in rows), rows
    # AND one request per image plus one for the document, with the key and an image block each
    captions = [r for r in api.requests if r.body["tool_choice"]["name"] == CAPTION_TOOL]
    assert len(captions) == truth.distinct_images and len(api.requests) == truth.distinct_images + 1
    assert all(r.api_key == "test-key" and r.model == "claude-sonnet-5" and len(r.images) == 1 for r in captions)
    # AND the understanding: type, summary, products with their pages
    doc = db.execute(
        "select doc_type, summary, understanding_status, input_tokens, output_tokens, caption_summary"
        " from documents where id = %s", (document.document_id,),
    ).fetchone()
    assert doc[:3] == ("product_catalog", "A furniture catalog.", "understood")
    products = db.execute(
        "select name, attributes, page_no from products where document_id = %s order by product_no",
        (document.document_id,),
    ).fetchall()
    assert products == [("Oak chair", {"sku": "OC-1", "price": "120 EUR"}, 2), ("Pine table", {"sku": "PT-9"}, 3)]
    # AND the tokens the API billed, captions and understanding together
    assert doc[3:5] == (900 * (truth.distinct_images + 1), 40 * (truth.distinct_images + 1))
    assert doc[5]["captioned"] == truth.distinct_images and doc[5]["skipped"] == 0


def test_rate_limits_are_waited_out_and_retries_stop(api, captions_engine, db, tmp_path) -> None:
    # GIVEN the API asks twice to wait (429 with retry-after), then answers
    api.enqueue(rate_limited(retry_after=0.2), rate_limited(retry_after=0.2))
    # WHEN a catalog runs
    document, truth = run_catalog(captions_engine, tmp_path, pages=4, seed=12)
    # THEN the two refused requests were retried, and nothing more was sent
    assert document.status == "SUCCEEDED"
    assert len(api.requests) == truth.distinct_images + 1 + 2
    assert all(status == "captioned" for _, _, status, _ in image_rows(db, document.document_id))


def test_with_the_api_down_the_document_ends_partial_and_a_redrive_fills_the_captions(
    api, captions_engine, db, tmp_path
) -> None:
    # GIVEN every request fails with 500
    api.always(server_error(500))
    # WHEN a 40-page catalog (41 images) runs
    document, truth = run_catalog(captions_engine, tmp_path, pages=40, seed=13)
    # THEN the document finished with its pages and images stored, but partial
    assert document.status == "SUCCEEDED"
    status, warnings = db.execute("select status, warnings from documents where id = %s",
                                  (document.document_id,)).fetchone()
    assert status == "partial"
    rows = image_rows(db, document.document_id)
    assert len(rows) == truth.distinct_images >= 40
    # AND every image is recorded as skipped with a reason, most of them without a request
    assert all(status == "skipped" and reason for _, _, status, reason in rows)
    reasons = [reason for *_, reason in rows]
    assert reasons.count(CIRCUIT_OPEN) >= truth.distinct_images - 2 * THRESHOLD
    # AND only a handful of requests were sent: the breaker's threshold, plus the few already
    # in flight in the batches running beside each other when it opened
    assert THRESHOLD <= len(api.requests) <= 3 * THRESHOLD, len(api.requests)
    understanding = db.execute(
        "select understanding_status, understanding_reason from documents where id = %s", (document.document_id,)
    ).fetchone()
    assert understanding[0] == "skipped" and understanding[1]
    # AND the warnings say what is missing, how many, why, and how to fill it
    by_code = {w["code"]: w for w in warnings}
    assert set(by_code) == {CAPTIONS_MISSING, UNDERSTANDING_MISSING}
    missing = by_code[CAPTIONS_MISSING]
    assert missing["message"].startswith(f"{truth.distinct_images} of {truth.distinct_images} images were not captioned")
    assert CIRCUIT_OPEN in missing["message"] and f"pagemill redrive {document.document_id}" in missing["message"]
    assert len(missing["images"]) == truth.distinct_images

    # WHEN the API is back and on-call redrives the document (the file it came from, again)
    api.always(tool_answer(answer, input_tokens=900, output_tokens=40))
    clear_tables(captions_engine)
    again = captions_engine.submit(local.redrive_source(db, document.document_id))
    captions_engine.wait([again])
    # THEN it succeeded, every image captioned, the warnings gone
    assert db.execute("select status, warnings, understanding_status from documents where id = %s",
                      (document.document_id,)).fetchone() == ("succeeded", [], "understood")
    assert all(r == (CAPTION["caption"], CAPTION["tags"], "captioned", None) for r in image_rows(db, document.document_id))
    # AND each row is there once
    for table, key in (("pages", "page_no"), ("chunks", "chunk_no"), ("images", "image_no"), ("products", "product_no")):
        total, distinct = db.execute(f"select count(*), count(distinct {key}) from {table} where document_id = %s",
                                     (document.document_id,)).fetchone()
        assert total == distinct > 0, table
    assert len(image_rows(db, document.document_id)) == truth.distinct_images
