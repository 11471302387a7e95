"""The spoken summary on the document's row (migration 0008). Idempotent: a re-run sets the same
columns, and a run with nothing spoken clears them."""

from __future__ import annotations

from typing import Any

import psycopg

from pagemill.db.connect import unavailable_on_failure
from pagemill.errors import InternalError
from pagemill.speech.outcome import SpeechOutcome

# documents.speech_<name>: the audio's, from SpeakSummary's result (pagemill.payloads.SpeechBranch).
AUDIO_COLUMNS = ("key", "format", "seconds", "voice", "engine", "language", "chars", "cut")


def store_speech(conn: psycopg.Connection[Any], document_id: str, outcome: SpeechOutcome | None) -> None:
    """``outcome`` None: nothing was to be spoken (no summary, or speech off)."""
    audio = outcome.audio if outcome else None
    values = [outcome.status if outcome else None, outcome.reason if outcome else None,
              *(getattr(audio, column) if audio else None for column in AUDIO_COLUMNS)]
    assignments = ", ".join(f"speech_{column} = %s" for column in ("status", "reason", *AUDIO_COLUMNS))
    with unavailable_on_failure(f"storing the spoken summary of document {document_id}"), conn.transaction():
        updated = conn.execute(
            f"update documents set {assignments}, updated_at = now() where id = %s",
            (*values, document_id),
        ).rowcount
        if updated != 1:
            raise InternalError(f"document {document_id} is not registered")
