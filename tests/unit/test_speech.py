"""Speaking a summary: the text cut at a sentence, the voice per language, espeak-ng's real audio
(decoded by libsndfile, an independent decoder), and the MP3 every engine's PCM becomes."""

from __future__ import annotations

import io
import math
import struct

import pytest
import soundfile

from pagemill.errors import SpeechFailed
from pagemill.settings import Settings
from pagemill.speech.audio import Pcm, encode_mp3, join
from pagemill.speech.engine import speak
from pagemill.speech.espeak import EspeakEngine
from pagemill.speech.text import cap_at_sentence, pieces
from pagemill.speech.voices import POLLY_VOICES, Voice, choose_voice, parse_voices

SHORT = "A furniture catalog of oak chairs and pine tables."
LONG = (
    "A furniture catalog of oak chairs and pine tables. Each product lists its price, its size and the "
    "wood it is made of. The last pages hold the order form and the delivery terms for every country."
)


def decoded_seconds(mp3: bytes) -> float:
    data, rate = soundfile.read(io.BytesIO(mp3), dtype="int16")
    assert rate > 0 and data.ndim == 1
    assert abs(data).max() > 1000  # sound, not silence
    return len(data) / rate


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    return EspeakEngine(configured={}, default_language="en", timeout_seconds=30)


def tone(seconds: float, rate: int = 16000) -> Pcm:
    samples = [int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate))]
    return Pcm(struct.pack(f"<{len(samples)}h", *samples), rate)


# --- the text -----------------------------------------------------------------------------------


def test_a_summary_within_the_cap_is_spoken_whole() -> None:
    assert cap_at_sentence(f"  {SHORT}\n", 200) == (SHORT, False)


def test_a_long_summary_is_cut_after_the_last_sentence_that_fits() -> None:
    text, cut = cap_at_sentence(LONG, 100)
    assert cut and text == "A furniture catalog of oak chairs and pine tables."
    text, cut = cap_at_sentence(LONG, 160)
    assert cut and text.endswith("the wood it is made of.") and len(text) == 117


def test_without_a_sentence_end_the_cut_is_at_a_word() -> None:
    text, cut = cap_at_sentence("oak chairs and pine tables and beech stools", 20)
    assert (text, cut) == ("oak chairs and pine", True)


def test_pieces_are_whole_sentences_that_give_back_the_text() -> None:
    parts = pieces(LONG, 100)
    assert len(parts) == 3 and all(len(p) <= 100 and p.endswith(".") for p in parts)
    assert " ".join(parts) == LONG
    assert pieces("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


# --- voices -------------------------------------------------------------------------------------


def test_voices_are_configured_per_language_over_the_defaults() -> None:
    configured = parse_voices("de=Daniel:neural, EN=Ruth:generative,fr=Remi")
    assert configured == {"de": ("Daniel", "neural"), "en": ("Ruth", "generative"), "fr": ("Remi", None)}
    pick = lambda language: choose_voice(
        language, POLLY_VOICES, configured, default_language="en", fallback_engine="neural"
    )
    assert pick("de") == Voice("de", "Daniel", "neural")
    assert pick("fr") == Voice("fr", "Remi", "neural")  # the engine from the defaults
    assert pick("it") == Voice("it", "Bianca", "neural")
    # A language without a voice, or none said: the default language's
    assert pick("xx") == pick(None) == Voice("en", "Ruth", "generative")


@pytest.mark.parametrize("spec", ["de", "=Daniel", "de=", "de=Daniel:loud", "1=Daniel"])
def test_a_malformed_voice_setting_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="PAGEMILL_SPEECH_VOICES"):
        Settings.from_env({"PAGEMILL_SPEECH_VOICES": spec})


def test_speech_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"PAGEMILL_SPEECH must be one of \('polly', 'local', 'off'\)"):
        Settings.from_env({"PAGEMILL_SPEECH": "loud"})
    with pytest.raises(ValueError, match="PAGEMILL_SPEECH_MAX_CHARS"):
        Settings.from_env({"PAGEMILL_SPEECH_MAX_CHARS": "10"})
    assert Settings.from_env({}).speech == "polly"  # the local engine sets "local"


# --- audio --------------------------------------------------------------------------------------


def test_pcm_becomes_an_mp3_of_the_same_length() -> None:
    pcm = join([tone(1.0), tone(0.5)])
    assert pcm.seconds == pytest.approx(1.5)
    assert decoded_seconds(encode_mp3(pcm)) == pytest.approx(1.5, abs=0.15)  # the encoder's padding


# --- espeak-ng ----------------------------------------------------------------------------------


def test_espeak_speaks_real_audio_that_grows_with_the_text(espeak: EspeakEngine) -> None:
    short = speak(espeak, SHORT, language="en", max_chars=1500)
    long = speak(espeak, LONG, language="en", max_chars=1500)
    # THEN both are MP3s that decode, over a second each, the longer text the longer audio
    assert short.format == "mp3" and short.audio[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"ID")
    short_seconds, long_seconds = decoded_seconds(short.audio), decoded_seconds(long.audio)
    assert 1.0 < short_seconds < long_seconds
    assert short.seconds == pytest.approx(short_seconds, abs=0.15)
    assert long_seconds > 2 * short_seconds
    assert short.voice == Voice("en", "en-us", "espeak-ng") and (short.chars, short.cut) == (len(SHORT), False)


def test_espeak_speaks_the_summary_language(espeak: EspeakEngine) -> None:
    spoken = speak(espeak, "Ein Katalog mit Stühlen und Tischen aus Eiche.", language="de", max_chars=1500)
    assert spoken.voice == Voice("de", "de", "espeak-ng")
    assert decoded_seconds(spoken.audio) > 1.0


def test_the_cap_cuts_what_is_spoken_and_says_so(espeak: EspeakEngine) -> None:
    spoken = speak(espeak, LONG, language="en", max_chars=100)
    assert spoken.cut and spoken.chars == len("A furniture catalog of oak chairs and pine tables.")


def test_an_unknown_espeak_voice_fails_with_the_engines_reason() -> None:
    engine = EspeakEngine(configured=parse_voices("en=xx-yy"), default_language="en", timeout_seconds=30)
    with pytest.raises(SpeechFailed, match="exited with 1: .*voice does not exist"):
        speak(engine, SHORT, language="en", max_chars=1500)


def test_a_missing_engine_says_how_to_install_it() -> None:
    engine = EspeakEngine(configured={}, default_language="en", timeout_seconds=30, binary="espeak-ng-missing")
    with pytest.raises(SpeechFailed, match="not installed: install it with `make install`"):
        engine.synthesize(SHORT, Voice("en", "en-us", "espeak-ng"))
