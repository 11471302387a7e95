"""CollectImages and Embed (CPU ONNX Runtime): thin handlers over pagemill.pipeline.collect_images and .embed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from pagemill.aws.clients import clip_model, stage_context
from pagemill.pipeline.collect_images import collect_images as run_collect_images
from pagemill.pipeline.embed import embed as run_embed

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def collect_images(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(document_id=event["document_id"])
    result = run_collect_images(stage_context(), document_id=event["document_id"], manifest_key=event["manifest_key"])
    metrics.add_metric(name="ImagesCollected", unit=MetricUnit.Count, value=result["image_count"])
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def embed(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(document_id=event["document_id"])
    result = run_embed(stage_context(), clip_model(), document_id=event["document_id"], images_key=event["images_key"])
    metrics.add_metric(name="ImagesEmbedded", unit=MetricUnit.Count, value=result["count"])
    return result
