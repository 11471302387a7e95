"""SpeakSummary with Amazon Polly: moto does not implement speech synthesis, so the real botocore
Polly client answers through botocore's Stubber, which checks every request it is sent (voice,
engine, format, text); the audio lands in moto's S3 under the document's speech prefix."""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import soundfile
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from pagemill import keys, storage
from pagemill.errors import SpeechFailed, SpeechUnavailable
from pagemill.payloads import SpeakSummaryInput
from pagemill.pipeline.context import StageContext
from pagemill.pipeline.speak_summary import speak_summary
from pagemill.records import Understanding, dump
from pagemill.settings import Settings
from pagemill.speech.espeak import EspeakEngine
from pagemill.speech.polly import REQUEST_CHARS, SAMPLE_RATE, PollyEngine
from pagemill.speech.voices import parse_voices

BUCKET = "work"
DOCUMENT = "d" * 32
REGION = "eu-west-1"


def pcm(seconds: float) -> bytes:
    """What Polly's "pcm" output is: signed 16-bit little-endian mono at 16 kHz."""
    n = int(seconds * SAMPLE_RATE)
    return struct.pack(f"<{n}h", *(int(6000 * math.sin(2 * math.pi * 220 * i / SAMPLE_RATE)) for i in range(n)))


def audio_answer(seconds: float) -> dict[str, Any]:
    data = pcm(seconds)
    return {"AudioStream": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "audio/pcm",
            "RequestCharacters": 10}


def expected(text: str, voice: str, engine: str = "neural") -> dict[str, Any]:
    return {"Text": text, "TextType": "text", "VoiceId": voice, "Engine": engine, "OutputFormat": "pcm",
            "SampleRate": str(SAMPLE_RATE)}


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> Iterator[StageContext]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield StageContext(s3=s3, settings=Settings(speech="polly", speech_max_chars=4000), work_bucket=BUCKET)


@pytest.fixture
def polly() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("polly", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def understood(ctx: StageContext, summary: str | None, language: str | None) -> SpeakSummaryInput:
    """SpeakSummary's input for an understanding with this summary, stored where UnderstandDocument puts it."""
    key = keys.understanding_key(DOCUMENT)
    answer = Understanding("product_catalog", summary, status="understood", language=language)
    storage.put_json(ctx.s3, BUCKET, key, dump(answer))
    return SpeakSummaryInput(document_id=DOCUMENT, understanding_key=key)


def test_polly_speaks_in_the_languages_neural_voice_into_the_speech_prefix(ctx, polly) -> None:
    client, stubber = polly
    summary = "Ein Katalog mit Stühlen und Tischen aus Eiche."
    # GIVEN a German summary, and Polly answering 2.5 s of audio for exactly the request below
    stubber.add_response("synthesize_speech", audio_answer(2.5), expected(summary, "Vicki"))
    # WHEN SpeakSummary runs with Polly
    result = speak_summary(ctx, understood(ctx, summary, "de"), PollyEngine(client, configured={},
                                                                             default_language="en"))
    # THEN the MP3 is under the document's speech prefix, and it decodes to the audio's length
    key = f"documents/{DOCUMENT}/speech/summary.mp3"
    assert result == {"key": key, "format": "mp3", "seconds": 2.5, "voice": "Vicki", "engine": "neural",
                      "language": "de", "chars": len(summary), "cut": False, "error": None, "cause": None,
                      "span": None}
    stored = ctx.s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["ContentType"] == "audio/mpeg"
    data, rate = soundfile.read(io.BytesIO(stored["Body"].read()))
    assert len(data) / rate == pytest.approx(2.5, abs=0.15)


def test_a_summary_over_the_request_limit_is_spoken_in_pieces_and_joined(ctx, polly) -> None:
    client, stubber = polly
    sentence = "Oak chairs, pine tables and beech stools are listed with their prices. "
    summary = (sentence * (REQUEST_CHARS // len(sentence) + 5)).strip()
    first = (sentence * (REQUEST_CHARS // len(sentence))).strip()
    second = summary[len(first):].strip()
    # GIVEN a configured voice and engine for English, and one request per piece
    stubber.add_response("synthesize_speech", audio_answer(1.0), expected(first, "Ruth", "generative"))
    stubber.add_response("synthesize_speech", audio_answer(0.5), expected(second, "Ruth", "generative"))
    engine = PollyEngine(client, configured=parse_voices("en=Ruth:generative"), default_language="en")
    result = speak_summary(ctx, understood(ctx, summary, "en"), engine)
    # THEN one recording of both pieces
    assert (result["seconds"], result["voice"], result["engine"]) == (1.5, "Ruth", "generative")


def test_throttling_is_left_to_the_state_machines_retry(ctx, polly) -> None:
    client, stubber = polly
    stubber.add_client_error("synthesize_speech", "ThrottlingException", "Rate exceeded", 400)
    engine = PollyEngine(client, configured={}, default_language="en")
    with pytest.raises(SpeechUnavailable, match="ThrottlingException"):
        speak_summary(ctx, understood(ctx, "A catalog.", "en"), engine)
    assert storage.list_keys(ctx.s3, BUCKET, keys.speech_prefix(DOCUMENT)) == []


def test_a_refused_voice_fails_the_step_with_polly_reason(ctx, polly) -> None:
    client, stubber = polly
    stubber.add_client_error("synthesize_speech", "EngineNotSupportedException",
                             "This voice does not support the selected engine: neural", 400)
    engine = PollyEngine(client, configured=parse_voices("en=Matthew:neural"), default_language="en")
    with pytest.raises(SpeechFailed, match="EngineNotSupportedException.*voice Matthew, engine neural"):
        speak_summary(ctx, understood(ctx, "A catalog.", "en"), engine)


def test_the_local_engine_stores_the_same_shape(ctx) -> None:
    engine = EspeakEngine(configured={}, default_language="en", timeout_seconds=30)
    summary = "A furniture catalog of oak chairs and pine tables."
    result = speak_summary(ctx, understood(ctx, summary, None), engine)
    assert (result["voice"], result["engine"], result["language"]) == ("en-us", "espeak-ng", "en")
    assert result["seconds"] > 1.0
    assert storage.list_keys(ctx.s3, BUCKET, keys.speech_prefix(DOCUMENT)) == [result["key"]]
