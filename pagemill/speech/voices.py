"""Which voice speaks a summary: one per language (ISO 639-1), from the defaults below with the
configured ones over them. A language without a voice is spoken by the default language's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Amazon Polly: a neural voice per language where Polly has one (Russian has standard voices only).
POLLY_VOICES: dict[str, tuple[str, str]] = {
    "ar": ("Hala", "neural"), "ca": ("Arlet", "neural"), "cs": ("Jitka", "neural"), "da": ("Sofie", "neural"),
    "de": ("Vicki", "neural"), "en": ("Joanna", "neural"), "es": ("Lucia", "neural"), "fi": ("Suvi", "neural"),
    "fr": ("Lea", "neural"), "hi": ("Kajal", "neural"), "it": ("Bianca", "neural"), "ja": ("Takumi", "neural"),
    "ko": ("Seoyeon", "neural"), "nb": ("Ida", "neural"), "nl": ("Laura", "neural"), "pl": ("Ola", "neural"),
    "pt": ("Ines", "neural"), "ru": ("Tatyana", "standard"), "sv": ("Elin", "neural"), "tr": ("Burcu", "neural"),
    "zh": ("Zhiyu", "neural"),
}
POLLY_ENGINES = ("neural", "standard", "long-form", "generative")
# espeak-ng: a language's voice is its code (de, fr, zh), except these.
ESPEAK_VOICES: dict[str, tuple[str, str]] = {
    "en": ("en-us", "espeak-ng"), "no": ("nb", "espeak-ng"), "zh": ("cmn", "espeak-ng"),
}


@dataclass(frozen=True)
class Voice:
    language: str  # the summary's language this voice speaks (ISO 639-1)
    name: str  # Polly's VoiceId, or the espeak-ng voice
    engine: str  # Polly's engine (neural, standard, ...), or "espeak-ng"


def parse_voices(spec: str, setting: str = "voices") -> dict[str, tuple[str, str | None]]:
    """``"de=Daniel:neural,en=Ruth"`` → {"de": ("Daniel", "neural"), "en": ("Ruth", None)}."""
    voices: dict[str, tuple[str, str | None]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        language, equals, voice = item.partition("=")
        name, _, engine = voice.partition(":")
        language, name, engine = language.strip().lower(), name.strip(), engine.strip()
        if not equals or not language.isalpha() or not name:
            raise ValueError(f"{setting}: {item!r} is not language=voice[:engine] (e.g. de=Daniel:neural)")
        if engine and engine not in POLLY_ENGINES:
            raise ValueError(f"{setting}: engine {engine!r} of {language} is not one of {', '.join(POLLY_ENGINES)}")
        voices[language] = (name, engine or None)
    return voices


def choose_voice(
    language: str | None,
    defaults: Mapping[str, tuple[str, str]],
    configured: Mapping[str, tuple[str, str | None]],
    *,
    default_language: str,
    fallback_engine: str,
) -> Voice:
    """The voice for ``language``: the configured one, else the default one, else the default
    language's; a language with neither becomes ``Voice(language, language, fallback_engine)``
    only when it is the default language (espeak-ng's voices are named by language)."""
    for candidate in (language, default_language):
        if not candidate:
            continue
        candidate = candidate.lower()
        if candidate in configured:
            name, engine = configured[candidate]
            return Voice(candidate, name, engine or defaults.get(candidate, ("", fallback_engine))[1])
        if candidate in defaults:
            name, engine = defaults[candidate]
            return Voice(candidate, name, engine)
    return Voice(default_language, default_language, fallback_engine)
