"""CaptionBatch and UnderstandDocument: thin handlers over pagemill.pipeline.caption_batch and .understand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from pagemill.aws.clients import (
    caption_breaker,
    caption_client,
    stage_context,
    token_budget,
)
from pagemill.captions.client import CaptionsUnavailable
from pagemill.pipeline import caption_batch as captioning
from pagemill.pipeline import understand as understanding

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# Seconds kept back from the function's timeout to write the results after the last call.
_RESERVE_SECONDS = 15.0


def _time_left(context: LambdaContext) -> Callable[[], float]:
    return lambda: context.get_remaining_time_in_millis() / 1000 - _RESERVE_SECONDS


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def caption_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    document_id = event["document_id"]
    logger.append_keys(document_id=document_id, batch_no=event.get("batch_no"))
    ctx = stage_context()
    try:
        client = caption_client()
    except CaptionsUnavailable as exc:
        result = captioning.skip_batch(ctx, images=event["images"], out_key=event["out_key"], reason=exc.reason)
    else:
        result = captioning.caption_batch(
            ctx, images=event["images"], out_key=event["out_key"], client=client, breaker=caption_breaker(),
            budget=token_budget(document_id), time_left=_time_left(context),
        )
    metrics.add_metric(name="ImagesCaptioned", unit=MetricUnit.Count, value=result["captioned"])
    metrics.add_metric(name="CaptionsSkipped", unit=MetricUnit.Count, value=result["skipped"])
    metrics.add_metric(name="ModelInputTokens", unit=MetricUnit.Count, value=result["input_tokens"])
    metrics.add_metric(name="ModelOutputTokens", unit=MetricUnit.Count, value=result["output_tokens"])
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def understand(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    document_id = event["document_id"]
    logger.append_keys(document_id=document_id)
    ctx = stage_context()
    try:
        client = caption_client()
    except CaptionsUnavailable as exc:
        result = understanding.skip_understanding(ctx, document_id=document_id, reason=exc.reason)
    else:
        result = understanding.understand(
            ctx, document_id=document_id, manifest_key=event["manifest_key"], client=client,
            breaker=caption_breaker(), budget=token_budget(document_id), time_left=_time_left(context),
        )
    metrics.add_metric(name="ProductsFound", unit=MetricUnit.Count, value=result["products"])
    metrics.add_metric(name="ModelInputTokens", unit=MetricUnit.Count, value=result["input_tokens"])
    metrics.add_metric(name="ModelOutputTokens", unit=MetricUnit.Count, value=result["output_tokens"])
    return result
