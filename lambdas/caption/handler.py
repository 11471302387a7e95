"""CaptionBatch and UnderstandDocument: thin handlers over pagemill.pipeline.caption_batch and .understand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pagemill import metrics as m
from pagemill.aws.clients import model_access, stage_context
from pagemill.aws.handler import lambda_handler
from pagemill.captions.client import CaptionsUnavailable
from pagemill.payloads import CaptionBatchInput, DocumentInput
from pagemill.pipeline import caption_batch as captioning
from pagemill.pipeline import understand as understanding

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.typing import LambdaContext

# Seconds kept back from the function's timeout to write the results after the last call.
_RESERVE_SECONDS = 15.0
_TOKENS = {m.MODEL_INPUT_TOKENS: "input_tokens", m.MODEL_OUTPUT_TOKENS: "output_tokens"}


@lambda_handler(CaptionBatchInput, counts={m.IMAGES_CAPTIONED: "captioned", m.CAPTIONS_SKIPPED: "skipped", **_TOKENS},
                state="Captions")
def caption_batch(payload: CaptionBatchInput, context: LambdaContext) -> dict[str, Any]:
    return _with_model(payload, context, captioning.caption_batch, captioning.skip_batch)


@lambda_handler(DocumentInput, counts={m.PRODUCTS_FOUND: "products", **_TOKENS}, state="Understand")
def understand(payload: DocumentInput, context: LambdaContext) -> dict[str, Any]:
    return _with_model(payload, context, understanding.understand, understanding.skip_understanding)


def _with_model(payload: Any, context: LambdaContext, run: Callable[..., Any], skip: Callable[..., Any]) -> Any:
    """``run`` with the model, or ``skip`` with the reason the model cannot be used (no API key)."""
    time_left = lambda: context.get_remaining_time_in_millis() / 1000 - _RESERVE_SECONDS
    try:
        model = model_access(payload.document_id, time_left)
    except CaptionsUnavailable as exc:
        return skip(stage_context(), payload, exc.reason)
    return run(stage_context(), payload, model)
