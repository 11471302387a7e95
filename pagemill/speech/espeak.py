"""The offline engine: espeak-ng, Debian's package (the Makefile installs it), run as a process
per summary so that a hung or crashing engine is killed at the timeout and never takes the worker
with it. It writes a WAV of 16-bit mono PCM to stdout."""

from __future__ import annotations

import io
import subprocess
import wave
from collections.abc import Mapping
from functools import cached_property

from pagemill.errors import SpeechFailed
from pagemill.speech.audio import Pcm
from pagemill.speech.voices import ESPEAK_VOICES, Voice, choose_voice

ENGINE = "espeak-ng"
INSTALL_HINT = "install it with `make install` (Debian: apt-get install espeak-ng)"


class EspeakEngine:
    def __init__(
        self,
        *,
        configured: Mapping[str, tuple[str, str | None]],
        default_language: str,
        timeout_seconds: float,
        binary: str = ENGINE,
    ) -> None:
        self._configured = configured
        self._default_language = default_language
        self._timeout = timeout_seconds
        self._binary = binary

    def voice_for(self, language: str | None) -> Voice:
        return choose_voice(
            language, self._installed, self._configured, default_language=self._default_language,
            fallback_engine=ENGINE,
        )

    def synthesize(self, text: str, voice: Voice) -> Pcm:
        out = self._run("-v", voice.name, "--stdin", "--stdout", stdin=text)
        try:
            with wave.open(io.BytesIO(out)) as wav:
                if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                    raise SpeechFailed(f"{ENGINE} gave {wav.getnchannels()}-channel {8 * wav.getsampwidth()}-bit audio")
                # Streamed to a pipe, the header's length is a placeholder: read to the end.
                samples = wav.readframes(wav.getnframes())
                rate = wav.getframerate()
        except (wave.Error, EOFError) as exc:
            raise SpeechFailed(f"{ENGINE} gave no readable audio for voice {voice.name}: {exc}") from exc
        if not samples:
            raise SpeechFailed(f"{ENGINE} gave no audio for voice {voice.name}")
        return Pcm(samples, rate)

    @cached_property
    def _installed(self) -> dict[str, tuple[str, str]]:
        """The languages the installed espeak-ng speaks, by ISO 639-1 code; espeak-ng takes the
        bare code as a voice (de, fr, zh), except where a default below names another."""
        listing = self._run("--voices").decode(errors="replace").splitlines()[1:]
        codes = {line.split()[1].split("-")[0] for line in listing if len(line.split()) > 1}
        known = {code: (code, ENGINE) for code in codes}
        known.update({language: voice for language, voice in ESPEAK_VOICES.items() if voice[0].split("-")[0] in codes})
        return known

    def _run(self, *args: str, stdin: str | None = None) -> bytes:
        try:
            proc = subprocess.run(
                [self._binary, *args], input=stdin.encode() if stdin is not None else None, capture_output=True,
                timeout=self._timeout, check=False,
            )
        except FileNotFoundError as exc:
            raise SpeechFailed(f"{self._binary} is not installed: {INSTALL_HINT}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SpeechFailed(f"{self._binary} did not finish within {self._timeout:g} s") from exc
        if proc.returncode != 0:
            said = proc.stderr.decode(errors="replace").strip().splitlines()
            raise SpeechFailed(f"{self._binary} {' '.join(args[:2])} exited with {proc.returncode}: "
                               f"{said[-1] if said else 'no message'}")
        return proc.stdout
