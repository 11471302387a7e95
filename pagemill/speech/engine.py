"""The speech interface and what every engine shares: the summary cut to the cap, spoken in the
voice of its language, encoded to MP3."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from pagemill.speech.audio import FORMAT, Pcm, encode_mp3
from pagemill.speech.text import cap_at_sentence
from pagemill.speech.voices import Voice

log = logging.getLogger(__name__)


class SpeechEngine(Protocol):
    """Turns text into PCM in a voice. Raises SpeechFailed when it cannot (deterministic), and
    SpeechUnavailable when the service refused for now (the state machine retries that)."""

    def voice_for(self, language: str | None) -> Voice: ...

    def synthesize(self, text: str, voice: Voice) -> Pcm: ...


@dataclass(frozen=True)
class SpokenSummary:
    audio: bytes
    format: str
    seconds: float
    voice: Voice
    chars: int  # characters spoken
    cut: bool  # the summary was longer than the cap: only its first ``chars`` were spoken


def speak(engine: SpeechEngine, summary: str, *, language: str | None, max_chars: int) -> SpokenSummary:
    text, cut = cap_at_sentence(summary, max_chars)
    voice = engine.voice_for(language)
    pcm = engine.synthesize(text, voice)
    spoken = SpokenSummary(encode_mp3(pcm), FORMAT, round(pcm.seconds, 3), voice, len(text), cut)
    log.info("summary spoken", extra={
        "voice": voice.name, "engine": voice.engine, "language": voice.language, "seconds": spoken.seconds,
        "chars": spoken.chars, "cut": cut, "bytes": len(spoken.audio),
    })
    return spoken
