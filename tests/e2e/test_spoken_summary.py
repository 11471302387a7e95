"""The spoken summary end to end: UnderstandDocument's summary (the real anthropic SDK against the
fake Messages API) spoken by espeak-ng in SpeakSummary, stored under the document's prefix,
recorded on the document by Write and exported as summary.mp3."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile

from pagemill import keys
from pagemill.captions.caption import TOOL_NAME as CAPTION_TOOL
from pagemill.speech.outcome import SPEECH_MISSING
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.export import export_document
from pagemill_tools.operate import local
from tests.support.fake_anthropic import FakeAnthropic, tool_answer
from tests.support.model_api import CAPTION, UNDERSTANDING, clear_tables, engine_for, run_catalog

SUMMARY = (
    "A furniture catalog of oak chairs and pine tables. Each product lists its price, its size and the "
    "wood it is made of."
)


def answering(summary: str, language: str) -> Any:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["tool_choice"]["name"] == CAPTION_TOOL:
            return CAPTION
        return {**UNDERSTANDING, "summary": summary, "language": language}

    return tool_answer(answer)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=answering(SUMMARY, "en"), api_key="test-key") as server:
        yield server


@pytest.fixture(scope="module")
def speech_engine(fake: FakeAnthropic, engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    # Finnish is given a voice espeak-ng does not have: a summary in Finnish makes the engine fail.
    with engine_for(fake, engine_home, module_database_url, PAGEMILL_SPEECH_LOCAL_VOICES="fi=xx-yy") as running:
        yield running


@pytest.fixture
def api(fake: FakeAnthropic, speech_engine: LocalEngine) -> Iterator[FakeAnthropic]:
    fake.always(answering(SUMMARY, "en"))
    clear_tables(speech_engine)
    yield fake


def speech_row(db: Any, document_id: str) -> dict[str, Any]:
    cur = db.execute(
        "select status, speech_status, speech_reason, speech_key, speech_format, speech_seconds, speech_voice,"
        " speech_engine, speech_language, speech_chars, speech_cut from documents where id = %s", (document_id,),
    )
    return dict(zip([c.name for c in cur.description], cur.fetchone()))


def test_a_summary_is_spoken_stored_recorded_and_exported(api, speech_engine, db, tmp_path) -> None:
    # WHEN a catalog runs and the model summarizes it
    document, _ = run_catalog(speech_engine, tmp_path, pages=2, seed=31)
    # THEN SpeakSummary ran after UnderstandDocument
    assert document.status == "SUCCEEDED"
    visited = speech_engine.visited_states(document.execution_arn)
    assert {"UnderstandDocument", "SpeakSummary", "SummarySpoken"} <= set(visited)
    assert visited.index("SpeakSummary") > visited.index("UnderstandDocument")
    # AND the document records its audio: where, what, how long, who spoke it
    row = speech_row(db, document.document_id)
    key = keys.summary_audio_key(document.document_id, "mp3")
    assert row["status"] == "succeeded"
    assert {k: row[k] for k in ("speech_status", "speech_reason", "speech_key", "speech_format", "speech_voice",
                                "speech_engine", "speech_language", "speech_chars", "speech_cut")} == {
        "speech_status": "spoken", "speech_reason": None, "speech_key": key, "speech_format": "mp3",
        "speech_voice": "en-us", "speech_engine": "espeak-ng", "speech_language": "en",
        "speech_chars": len(SUMMARY), "speech_cut": False,
    }
    # AND the audio in the bucket is real: it decodes to about the recorded duration, over a second
    audio = speech_engine.s3.get_object(Bucket=speech_engine.deployment.bucket_name, Key=key)["Body"].read()
    data, rate = soundfile.read(io.BytesIO(audio))
    assert len(data) / rate == pytest.approx(row["speech_seconds"], abs=0.15)
    assert row["speech_seconds"] > 1.0
    # AND `pagemill run --out` exports it beside the document
    out = export_document(db, speech_engine.s3, speech_engine.deployment.bucket_name, document.document_id,
                          tmp_path / "out")
    assert (out / "summary.mp3").read_bytes() == audio
    # AND every state's seconds are recorded: a document of one batch with captions keeps only its
    # caption map items' spans in S3, every other state's travelled in the results
    timings = db.execute("select timings from documents where id = %s", (document.document_id,)).fetchone()[0]
    assert {"Plan", "ExtractPages", "Embed", "EmbedChunks", "Captions", "Understand", "SpeakSummary",
            "Write"} <= set(timings["states"])
    assert all(seconds >= 0 for seconds in timings["states"].values())
    listed = speech_engine.s3.list_objects_v2(Bucket=speech_engine.deployment.bucket_name,
                                              Prefix=keys.timings_prefix(document.document_id))
    kept = [item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", [])]
    assert kept and all(name.startswith("Captions-") for name in kept), kept


def test_without_a_summary_nothing_is_spoken(api, speech_engine, db, tmp_path) -> None:
    # GIVEN the model gives no summary
    api.always(answering("", "en"))
    # WHEN a catalog runs
    document, _ = run_catalog(speech_engine, tmp_path, pages=2, seed=32)
    # THEN SpeakSummary never ran, and the document has no audio
    assert document.status == "SUCCEEDED"
    visited = set(speech_engine.visited_states(document.execution_arn))
    assert "UnderstandDocument" in visited and "NoSpeech" in visited and "SpeakSummary" not in visited
    row = speech_row(db, document.document_id)
    assert (row["status"], row["speech_status"], row["speech_key"]) == ("succeeded", None, None)


def test_an_engine_failure_leaves_the_document_partial_and_a_redrive_fills_it(api, speech_engine, db, tmp_path) -> None:
    # GIVEN a summary in a language whose configured voice the engine does not have
    api.always(answering("Huonekaluluettelo tammituoleista ja mäntypöydistä.", "fi"))
    # WHEN a catalog runs
    document, _ = run_catalog(speech_engine, tmp_path, pages=2, seed=33)
    # THEN the execution still succeeded through SpeechFailed, with the pages written
    assert document.status == "SUCCEEDED"
    visited = set(speech_engine.visited_states(document.execution_arn))
    assert {"SpeakSummary", "SpeechFailed", "Write"} <= visited
    assert db.execute("select count(*) from pages where document_id = %s", (document.document_id,)).fetchone() == (2,)
    # AND the document is partial: its warning says the summary was not spoken, why, and how to fill it
    row = speech_row(db, document.document_id)
    assert (row["status"], row["speech_status"], row["speech_key"]) == ("partial", "failed", None)
    assert "SpeakSummary failed with SpeechFailed" in row["speech_reason"]
    assert "voice does not exist" in row["speech_reason"]
    [warning] = db.execute("select warnings from documents where id = %s", (document.document_id,)).fetchone()[0]
    assert warning["code"] == SPEECH_MISSING and row["speech_reason"] in warning["message"]
    assert f"pagemill redrive {document.document_id}" in warning["message"]

    # WHEN the summary can be spoken again (the model now summarizes in English) and on-call redrives it
    api.always(answering(SUMMARY, "en"))
    again = speech_engine.submit(local.redrive_source(db, document.document_id))
    speech_engine.wait([again])
    # THEN it succeeded with its audio, the warning gone
    row = speech_row(db, document.document_id)
    assert (row["status"], row["speech_status"], row["speech_voice"]) == ("succeeded", "spoken", "en-us")
    assert db.execute("select warnings from documents where id = %s", (document.document_id,)).fetchone() == ([],)
