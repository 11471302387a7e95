"""The state payloads and records: parsed from the JSON the state machine and S3 hold, written
back in the same shape."""

from __future__ import annotations

import json

import pytest

from pagemill.errors import InternalError
from pagemill.payloads import (
    ExecutionEnded,
    ObjectCreated,
    RecordFailureInput,
    WriteInput,
)
from pagemill.records import BatchResult, SourceObject, Understanding, dump, load


def test_write_input_reads_the_branches_and_ignores_what_it_does_not_use() -> None:
    # GIVEN Write's payload as the state machine builds it, with a failed caption branch
    event = {"document_id": "d1", "manifest_key": "documents/d1/manifest.json", "embeddings_index_key": None,
             "captions": {"prefix": "documents/d1/captions/", "error": "States.TaskFailed"},
             "understanding": {"key": None, "error": None}, "execution_arn": "arn:x",
             "started_at": "2026-12-02T10:00:00Z", "added_later": 1}
    # WHEN it is parsed THEN each branch is typed
    payload = load(WriteInput, event)
    assert payload.captions is not None and payload.captions.error == "States.TaskFailed"
    assert payload.understanding is not None and payload.understanding.key is None


def test_record_failure_input_reads_the_catch_and_the_plan() -> None:
    state = {"source": {"bucket": "b", "key": "k.pdf", "version_id": None}, "plan": {"document_id": "d1"},
             "failed": {"Write": {"Error": "States.Timeout", "Cause": None}}}
    payload = load(RecordFailureInput, {"state": state, "execution_arn": "arn:x"})
    assert payload.document_id == "d1" and payload.state.failed is not None
    assert (payload.state.failed["Write"].error, payload.state.failed["Write"].cause) == ("States.Timeout", None)


def test_eventbridge_events_are_read_flat() -> None:
    created = load(ObjectCreated, {"detail-type": "Object Created", "detail": {
        "bucket": {"name": "uploads"}, "object": {"key": "a/b.pdf", "size": 3, "version-id": "v1"}}})
    assert created.source == SourceObject("uploads", "a/b.pdf", "v1")
    ended = load(ExecutionEnded, {"detail": {"executionArn": "arn:x", "status": "ABORTED"}})
    assert (ended.execution_arn, ended.status) == ("arn:x", "ABORTED")


def test_a_payload_that_does_not_fit_is_an_internal_error_naming_the_field() -> None:
    with pytest.raises(InternalError, match="manifest_key"):
        load(WriteInput, {"document_id": "d1"})


def test_records_round_trip_through_json_in_the_shape_s3_holds() -> None:
    # GIVEN a batch result and an understanding as the stages wrote them before (JSON in S3)
    stored = {"document_id": "d1", "batch_no": 0, "first_page": 1, "last_page": 1, "seconds": 0.5,
              "pages": [{"page_no": 1, "markdown": "# A", "char_count": 3, "width": 595.0, "height": 842.0,
                         "image_count": 1, "text_source": "text_layer", "ocr_confidence": None}],
              "chunks": [{"chunk_no": 0, "first_page": 1, "last_page": 1, "text": "A"}],
              "images": [{"sha256": "s", "page_no": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "width": 10, "height": 10,
                          "ext": "png", "s3_key": "documents/d1/images/s.png", "size_bytes": 99}],
              "skipped_images": [], "warnings": [{"code": "page_failed", "message": "m", "pages": [1], "images": []}]}
    result = load(BatchResult, stored)
    # THEN it reads typed (a bbox is a tuple) and writes back exactly the same JSON
    assert result.images[0].bbox == (0.0, 0.0, 10.0, 10.0)
    assert json.loads(json.dumps(dump(result))) == stored
    # AND a page written before pages recorded their text source reads as taken from the text layer
    older = {k: v for k, v in stored["pages"][0].items() if k not in ("text_source", "ocr_confidence")}
    assert load(BatchResult, {**stored, "pages": [older]}).pages[0].text_source == "text_layer"
    answer = {"doc_type": "datasheet", "summary": "s", "products": [{"name": "p", "attributes": {}, "page": None}],
              "input_tokens": 1, "output_tokens": 2, "status": "understood", "reason": None, "pages_read": 1,
              "truncated": False, "language": "en"}
    assert dump(load(Understanding, answer)) == answer
    # AND one written before the summary's language was asked for reads as "not said"
    assert load(Understanding, {k: v for k, v in answer.items() if k != "language"}).language is None
