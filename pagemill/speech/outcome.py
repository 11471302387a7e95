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
    audio: SpeechBranch | None = None  # SpeakSummary's result, when spoken

    def warnings(self, document_id: str) -> list[DocumentWarning]:
        """What makes the document partial: its audio missing, why, and how to fill it."""
        if self.status != FAILED:
            return []
        return [DocumentWarning(
            SPEECH_MISSING,
            f"the summary was not spoken ({self.reason}); `pagemill redrive {document_id}` speaks it",
        )]
