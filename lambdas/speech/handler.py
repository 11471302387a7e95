"""SpeakSummary: a thin handler over pagemill.pipeline.speak_summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pagemill import metrics as m
from pagemill.aws.clients import speech_engine, stage_context
from pagemill.aws.handler import lambda_handler
from pagemill.payloads import SpeakSummaryInput
from pagemill.pipeline.speak_summary import speak_summary as run_speak_summary

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@lambda_handler(
    SpeakSummaryInput, counts={m.SUMMARY_SECONDS_SPOKEN: "seconds", m.SUMMARY_CHARS_SPOKEN: "chars"},
    units={m.SUMMARY_SECONDS_SPOKEN: MetricUnit.Seconds}, state="SpeakSummary",
)
def speak_summary(payload: SpeakSummaryInput, context: LambdaContext) -> dict[str, Any]:
    return run_speak_summary(stage_context(), payload, speech_engine())
