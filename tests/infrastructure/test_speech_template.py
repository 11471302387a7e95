"""SpeakSummary in the template: after UnderstandDocument only when it says so, retried on
throttling, with a timeout, caught into a warning; its function may call Polly and write the
document's speech prefix, nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from pagemill import keys
from pagemill.errors import SpeechUnavailable
from stacks.config import ConfigError, PipelineConfig
from tests.infrastructure.conftest import part_fixture, state_machine_part
from tests.infrastructure.queries import (
    Context,
    as_list,
    function_with,
    role_statements,
)

template = part_fixture(state_machine_part)  # the functions with the state machine

NULL = "States.StringToJson('null')"


def understanding_branch(definition: dict[str, Any]) -> dict[str, Any]:
    return definition["States"]["Enrich"]["Branches"][2]["States"]


def test_speak_summary_follows_understanding_only_when_it_says_so(definition: dict[str, Any]) -> None:
    states = understanding_branch(definition)
    understand = states["UnderstandDocument"]
    assert understand["ResultSelector"] == {
        "key.$": "$.Payload.understanding_key", "speak_on.$": "$.Payload.speak_on", "span.$": "$.Payload.span"
    }
    assert (understand["ResultPath"], understand["Next"]) == ("$.understood", "HowToSpeak?")
    choice = states["HowToSpeak?"]
    assert choice["Choices"] == [{"Variable": "$.understood.speak_on", "StringEquals": "lambda", "Next": "SpeakSummary"}]
    assert choice["Default"] == "NoSpeech"
    # AND every way out of the branch has the same shape: key, error, speech, and UnderstandDocument's
    # span (SpeakSummary's is in its result, speech)
    assert states["NoSpeech"]["Parameters"] == {
        "key.$": "$.understood.key", "error.$": NULL, "speech.$": NULL, "span.$": "$.understood.span"
    }
    assert states["SummarySpoken"]["Parameters"] == {
        "key.$": "$.understood.key", "error.$": NULL, "speech.$": "$.spoken.audio", "span.$": "$.understood.span"
    }
    assert states["NoUnderstanding"]["Parameters"] == {"key.$": NULL, "error.$": NULL, "speech.$": NULL, "span.$": NULL}
    assert states["UnderstandingFailed"]["Parameters"]["speech.$"] == NULL
    assert states["UnderstandingFailed"]["Parameters"]["span.$"] == NULL


def test_speak_summary_retries_throttling_times_out_and_never_fails_the_document(definition: dict[str, Any]) -> None:
    states = understanding_branch(definition)
    speak = states["SpeakSummary"]
    assert speak["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "understanding_key.$": "$.understood.key"
    }
    # a timeout a little over the function's 120 s
    assert 120 < speak["TimeoutSeconds"] <= 180
    # Polly's throttling (SpeechUnavailable) and Lambda's are retried with backoff and jitter
    transient = next(r for r in speak["Retry"] if SpeechUnavailable.__name__ in r["ErrorEquals"])
    assert "Lambda.TooManyRequestsException" in transient["ErrorEquals"]
    assert transient["BackoffRate"] == 2.0 and transient["JitterStrategy"] == "FULL" and transient["MaxAttempts"] >= 3
    # AND anything left is caught into the branch's result, for Write to make a warning of
    assert speak["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.speech_failed", "Next": "SpeechFailed"}]
    assert states["SpeechFailed"]["Parameters"] == {
        "key.$": "$.understood.key", "error.$": NULL,
        "speech": {"error.$": "$.speech_failed.Error", "cause.$": "$.speech_failed.Cause"},
        "span.$": "$.understood.span",
    }
    assert definition["States"]["Write"]["Parameters"]["Payload"]["speech.$"] == "$.enrich.understanding.speech"


def test_the_speech_function_may_call_polly_and_write_its_speech_only(resources: dict[str, Any]) -> None:
    function = function_with(resources, "handler.speak_summary")
    env = function["Properties"]["Environment"]["Variables"]
    assert env["PAGEMILL_SPEECH"] == "polly" and env["PAGEMILL_SPEECH_MAX_CHARS"] == "1500"
    assert function["Properties"]["Timeout"] == 120
    statements = role_statements(resources, function["Properties"]["Role"]["Fn::GetAtt"][0])
    granted = {(action, _target(resource)) for s in statements for action in as_list(s["Action"])
               for resource in as_list(s["Resource"])}
    writes = {(a, t) for a, t in granted if a.startswith(("s3:Put", "s3:Delete"))}
    assert writes == {("s3:PutObject", f"/{keys.speech_prefix('*')}*")}
    reads = {t for a, t in granted if a.startswith("s3:GetObject")}
    assert reads == {f"/{keys.understanding_key('*')}"}
    assert {a for a, _ in granted if a.startswith("polly:")} == {"polly:SynthesizeSpeech"}
    # AND nothing else: logs and X-Ray are the function's own (AWSLambdaBasicExecutionRole, tracing)
    others = {a for a, _ in granted if not a.startswith(("s3:", "polly:", "xray:"))}
    assert not others, others
    # AND UnderstandDocument knows whether to speak
    understand = function_with(resources, "handler.understand")
    assert understand["Properties"]["Environment"]["Variables"]["PAGEMILL_SPEECH"] == "polly"


def _target(resource: Any) -> str:
    """The object part of a bucket-ARN Fn::Join, or the resource as it is."""
    if isinstance(resource, dict) and "Fn::Join" in resource:
        return resource["Fn::Join"][1][-1]
    return str(resource)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("speech", "local", "context 'speech' must be 'polly' or 'off' on AWS"),
    ("speech", "loud", "context 'speech' must be one of"),
    ("speech_voices", "de=Daniel:loud", "engine 'loud' of de"),
    ("speech_max_chars", 10, "'speech_max_chars' must be at least 100"),
])
def test_speech_context_is_checked(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_context(Context(**{key: value}))
