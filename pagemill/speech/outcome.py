"""What became of a document's spoken summary, as Write records it on the document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pagemill.records import DocumentWarning

if TYPE_CHECKING:
    from pagemill.payloads import SpeechBranch

SPOKEN = "spoken"
FAILED = "failed"
SPEECH_MISSING = "speech_missing"


@dataclass(frozen=True)
class SpeechOutcome:
    status: str  # SPOKEN | FAILED
    reason: str | None = None  # why it failed
    key: str | None = None
    format: str | None = None
    seconds: float | None = None
    voice: str | None = None
    engine: str | None = None
    language: str | None = None
    chars: int | None = None
    cut: bool | None = None

    @classmethod
    def spoken(cls, result: SpeechBranch) -> SpeechOutcome:
        """From SpeakSummary's result (pagemill.pipeline.speak_summary)."""
        return cls(
            SPOKEN, key=result.key, format=result.format, seconds=result.seconds, voice=result.voice,
            engine=result.engine, language=result.language, chars=result.chars, cut=result.cut,
        )

    def warnings(self, document_id: str) -> list[DocumentWarning]:
        """What makes the document partial: its audio missing, why, and how to fill it."""
        if self.status != FAILED:
            return []
        return [DocumentWarning(
            SPEECH_MISSING,
            f"the summary was not spoken ({self.reason}); `pagemill redrive {document_id}` speaks it",
        )]
