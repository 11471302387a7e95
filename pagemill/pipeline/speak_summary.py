"""SpeakSummary: the document's summary (from UnderstandDocument's answer) spoken, stored as MP3
under the document's speech prefix. Write records it on the document. A failure raises
(SpeechFailed, or SpeechUnavailable once the state machine's retries are spent); the state
machine catches it and Write turns it into a warning: the document is never failed for it."""

from __future__ import annotations

from typing import Any

from pagemill import keys, storage
from pagemill.errors import InternalError
from pagemill.payloads import SpeakSummaryInput, SpeechBranch
from pagemill.pipeline.context import StageContext
from pagemill.records import Understanding, dump, load
from pagemill.speech.audio import CONTENT_TYPE
from pagemill.speech.engine import SpeechEngine, speak


def speak_summary(ctx: StageContext, payload: SpeakSummaryInput, engine: SpeechEngine) -> dict[str, Any]:
    """A SpeechBranch (without error) of the stored audio."""
    answer = load(Understanding, storage.get_json(ctx.s3, ctx.work_bucket, payload.understanding_key))
    if not answer.summary:
        # UnderstandDocument routes here only with a summary: without one this is a defect.
        raise InternalError(f"document {payload.document_id} has no summary at {payload.understanding_key}")
    spoken = speak(engine, answer.summary, language=answer.language, max_chars=ctx.settings.speech_max_chars)
    key = keys.summary_audio_key(payload.document_id, spoken.format)
    storage.put_bytes(ctx.s3, ctx.work_bucket, key, spoken.audio, CONTENT_TYPE)
    return dump(SpeechBranch(
        key=key, format=spoken.format, seconds=spoken.seconds, voice=spoken.voice.name, engine=spoken.voice.engine,
        language=spoken.voice.language, chars=spoken.chars, cut=spoken.cut,
    ))
