"""Plan and ExtractBatch: thin handlers over pagemill.pipeline.plan and .extract_batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from pagemill.aws.clients import db_connection, stage_context
from pagemill.pipeline.extract_batch import extract_batch as run_extract_batch
from pagemill.pipeline.plan import plan as run_plan
from pagemill.records import BatchSpec, SourceObject
from pagemill.storage import SourceCache

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# /tmp survives warm invocations: the next batch of the same document skips the download.
# Per process, because the local engine's workers share one /tmp.
_sources = SourceCache(Path(f"/tmp/pagemill-sources/{os.getpid()}"))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    source = SourceObject.from_dict(event["source"])
    logger.append_keys(bucket=source.bucket, key=source.key, version_id=source.version_id)
    result = run_plan(stage_context(), db_connection(), source, event.get("execution_arn"))
    logger.append_keys(document_id=result["document_id"])
    metrics.add_metric(name="DocumentsPlanned", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="PagesPlanned", unit=MetricUnit.Count, value=result["page_count"])
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def extract_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    spec = BatchSpec.from_dict(event)
    logger.append_keys(document_id=spec.document_id, batch=spec.batch_no, pages=f"{spec.first_page}-{spec.last_page}")
    result = run_extract_batch(stage_context(), spec, _sources)
    metrics.add_metric(name="PagesExtracted", unit=MetricUnit.Count, value=result["pages"])
    metrics.add_metric(name="ImagesExtracted", unit=MetricUnit.Count, value=result["images"])
    return result
