"""Amazon Polly: SynthesizeSpeech in pieces under its per-request character limit, as 16 kHz PCM,
joined into one recording (so the duration is exact and the MP3 is encoded like the local one).
The client is built at the edge (pagemill.aws.clients) with its timeouts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pagemill.errors import SpeechFailed, SpeechUnavailable
from pagemill.speech.audio import Pcm, join
from pagemill.speech.text import pieces
from pagemill.speech.voices import POLLY_VOICES, Voice, choose_voice

# SynthesizeSpeech takes at most 3,000 billed characters a request; a margin for the counting.
REQUEST_CHARS = 2900
SAMPLE_RATE = 16000  # Polly's PCM rates are 8000 and 16000 Hz
# Polly's answers that say "not now": the state machine retries them (SpeechUnavailable).
_NOT_NOW = {"ThrottlingException", "ServiceFailureException", "ServiceUnavailableException", "RequestLimitExceeded"}


class PollyEngine:
    def __init__(self, client: Any, *, configured: Mapping[str, tuple[str, str | None]], default_language: str) -> None:
        self._client = client
        self._configured = configured
        self._default_language = default_language

    def voice_for(self, language: str | None) -> Voice:
        return choose_voice(
            language, POLLY_VOICES, self._configured, default_language=self._default_language, fallback_engine="neural"
        )

    def synthesize(self, text: str, voice: Voice) -> Pcm:
        return join(self._piece(piece, voice) for piece in pieces(text, REQUEST_CHARS))

    def _piece(self, text: str, voice: Voice) -> Pcm:
        try:
            response = self._client.synthesize_speech(
                Text=text, TextType="text", VoiceId=voice.name, Engine=voice.engine, OutputFormat="pcm",
                SampleRate=str(SAMPLE_RATE),
            )
            with response["AudioStream"] as stream:
                samples = stream.read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            said = f"Polly {error.get('Code', 'error')}: {error.get('Message', '')}".strip()
            if error.get("Code") in _NOT_NOW or status >= 500:
                raise SpeechUnavailable(said) from exc
            raise SpeechFailed(f"{said} (voice {voice.name}, engine {voice.engine})") from exc
        except BotoCoreError as exc:  # no connection, or no answer within the client's timeouts
            raise SpeechUnavailable(f"Polly did not answer: {exc}") from exc
        if not samples:
            raise SpeechFailed(f"Polly gave no audio (voice {voice.name}, engine {voice.engine})")
        return Pcm(samples, SAMPLE_RATE)
