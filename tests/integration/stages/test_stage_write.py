"""Write on its own: everything the document's stages left in S3 → its rows, in one transaction."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pagemill import keys
from pagemill.captions.client import NO_API_KEY
from pagemill.clip.model import ClipModel
from pagemill.db import documents
from pagemill.errors import DatabaseUnavailable, ExecutionCancelled
from pagemill.payloads import CaptionBatchInput, DocumentInput, EmbedInput, WriteInput
from pagemill.pipeline.caption_batch import caption_batch
from pagemill.pipeline.context import ModelAccess, StageContext
from pagemill.pipeline.embed import embed
from pagemill.pipeline.understand import skip_understanding
from pagemill.pipeline.warnings import CAPTIONS_MISSING
from pagemill.pipeline.write import CAPTION_BATCH_FAILED, write
from pagemill.records import load, load_list
from pagemill.speech.outcome import SPEECH_MISSING
from pagemill.storage import get_json
from tests.support.stages import EXECUTION_ARN, Upload


def write_input(document: DocumentInput, **branches: Any) -> WriteInput:
    # As the Write state builds it from $.plan, $.enrich and the context object.
    return load(WriteInput, {
        "document_id": document.document_id, "manifest_key": document.manifest_key, "execution_arn": EXECUTION_ARN,
        "started_at": "2026-12-02T10:00:00.000Z", **branches,
    })


def test_write_stores_pages_chunks_images_embeddings_and_model_output(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any], document: DocumentInput,
    collected: dict[str, Any], clip: ClipModel, model: ModelAccess, upload: Upload,
) -> None:
    # GIVEN a catalogue extracted and embedded, its first caption batch captioned, the second
    # batch lost (its Lambda gave up), and understanding skipped
    vectors = embed(ctx, clip, load(EmbedInput, {"document_id": document.document_id,
                                                 "images_key": collected["images_key"]}))
    items = load_list(CaptionBatchInput, get_json(ctx.s3, ctx.work_bucket, collected["caption_batches_key"]))
    caption_batch(ctx, items[0], model)
    understood = skip_understanding(ctx, document, NO_API_KEY)
    payload = write_input(
        document, embeddings_index_key=vectors["index_key"],
        captions={"prefix": collected["captions_prefix"], "error": None},
        understanding={"key": understood["understanding_key"], "error": None},
    )
    # WHEN the document is written
    counts = write(ctx, conn, payload)
    # THEN it is partial (the lost batch's captions are missing) with every page, chunk and distinct image
    doc_id = document.document_id
    assert db.execute("select status, page_count from documents where id = %s", (doc_id,)).fetchone() == (
        "partial", 6)
    assert (counts["status"], counts["warnings"]) == ("partial", [CAPTIONS_MISSING])
    assert counts["pages"] == db.execute("select count(*) from pages where document_id = %s", (doc_id,)).fetchone()[0]
    assert counts["pages"] == 6 and counts["chunks"] > 0 and counts["images"] == upload.truth.distinct_images
    # AND each image has its embedding; the first batch's images their captions, the rest the reason
    rows = db.execute("select sha256, embedding is not null, caption_status, caption_reason from images"
                      " where document_id = %s", (doc_id,)).fetchall()
    first = {i.sha256 for i in items[0].images}
    assert all(embedded for _, embedded, _, _ in rows)
    assert {(sha in first, status, reason) for sha, _, status, reason in rows} == {
        (True, "captioned", None), (False, "skipped", CAPTION_BATCH_FAILED)}
    # AND the warning names the images without a caption, and why; no API key is a note, not a warning
    [warning] = db.execute("select warnings from documents where id = %s", (doc_id,)).fetchone()[0]
    assert sorted(warning["images"]) == sorted(sha for sha, *_ in rows if sha not in first)
    assert CAPTION_BATCH_FAILED in warning["message"]
    assert db.execute("select understanding_status, understanding_reason from documents where id = %s",
                      (doc_id,)).fetchone() == ("skipped", NO_API_KEY)


def test_write_of_a_cancelled_execution_changes_nothing(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any], document: DocumentInput,
) -> None:
    # GIVEN the execution was cancelled while Write was in flight
    db.execute("insert into cancellations (execution_arn, reason) values (%s, 'pagemill cancel')", (EXECUTION_ARN,))
    # WHEN Write runs THEN it refuses, and the document has no rows
    with pytest.raises(ExecutionCancelled):
        write(ctx, conn, write_input(document))
    assert db.execute("select count(*) from pages where document_id = %s", (document.document_id,)).fetchone() == (0,)


def test_a_document_is_never_seen_finished_without_its_timings(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any], document: DocumentInput,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN recording the timings fails (the database went away at that moment)
    def lost(*args: Any, **kwargs: Any) -> None:
        raise DatabaseUnavailable("the database went away")

    monkeypatch.setattr(documents, "set_timings", lost)
    # WHEN Write runs THEN it fails, and nothing of it is committed: the document still reads
    # running (a retry writes it whole), never finished with no timings
    with pytest.raises(DatabaseUnavailable):
        write(ctx, conn, write_input(document))
    row = db.execute("select status, timings from documents where id = %s", (document.document_id,)).fetchone()
    assert row[0] == "running", row


def test_write_records_the_spoken_summary_and_why_one_is_missing(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any], document: DocumentInput,
) -> None:
    doc_id = document.document_id
    columns = ("select speech_status, speech_reason, speech_key, speech_format, speech_seconds, speech_voice,"
               " speech_engine, speech_language, speech_chars, speech_cut from documents where id = %s")
    key = keys.summary_audio_key(doc_id, "mp3")
    # GIVEN SpeakSummary spoke the summary (its result, as SummarySpoken passes it on)
    spoken = {"key": key, "format": "mp3", "seconds": 3.5, "voice": "Joanna", "engine": "neural", "language": "en",
              "chars": 48, "cut": False, "error": None, "cause": None}
    # WHEN Write runs THEN the document succeeded, and says where the audio is, what it is and who spoke it
    assert write(ctx, conn, write_input(document, speech=spoken))["status"] == "succeeded"
    assert db.execute(columns, (doc_id,)).fetchone() == (
        "spoken", None, key, "mp3", 3.5, "Joanna", "neural", "en", 48, False)
    # GIVEN a later run whose SpeakSummary failed (SpeechFailed, what its Catch recorded)
    cause = json.dumps({"errorType": "SpeechFailed", "errorMessage": "Polly EngineNotSupportedException: no neural"})
    # WHEN Write runs again THEN the document is partial: the audio is gone from the row, the reason says
    # why, and the warning how to fill it
    counts = write(ctx, conn, write_input(document, speech={"error": "SpeechFailed", "cause": cause}))
    assert (counts["status"], counts["warnings"]) == ("partial", [SPEECH_MISSING])
    reason = "SpeakSummary failed with SpeechFailed: Polly EngineNotSupportedException: no neural"
    assert db.execute(columns, (doc_id,)).fetchone() == ("failed", reason, *([None] * 8))
    status, [warning] = db.execute("select status, warnings from documents where id = %s", (doc_id,)).fetchone()
    assert status == "partial" and warning["code"] == SPEECH_MISSING
    assert reason in warning["message"] and f"pagemill redrive {doc_id}" in warning["message"]
    # AND with nothing to speak, nothing is recorded, and nothing is missing
    assert write(ctx, conn, write_input(document, speech=None))["status"] == "succeeded"
    assert db.execute(columns, (doc_id,)).fetchone() == (None,) * 10
