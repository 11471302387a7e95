"""The executions' edge: EventBridge "Object Created" → one Step Functions execution per object
version; and, on a schedule, the running executions' count and oldest age as metrics (the
"stuck" alarm reads them)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import (
    S3EventBridgeNotificationEvent,
    event_source,
)

from pagemill.aws.clients import client
from pagemill.aws.trigger import start_for_object
from pagemill.aws.watch import running_executions
from pagemill.records import SourceObject

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_source(data_class=S3EventBridgeNotificationEvent)
def handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict[str, Any]:
    detail = event.detail
    source = SourceObject(bucket=detail.bucket.name, key=detail.object.key, version_id=detail.object.version_id)
    outcome = start_for_object(client("stepfunctions"), os.environ["STATE_MACHINE_ARN"], source)
    logger.info(
        "execution started" if outcome.started else "redelivered event: execution already exists",
        extra={"execution_arn": outcome.execution_arn, "key": source.key},
    )
    return {"execution_arn": outcome.execution_arn, "started": outcome.started}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def watch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    running = running_executions(client("stepfunctions"), os.environ["STATE_MACHINE_ARN"], datetime.now(timezone.utc))
    metrics.add_metric(name="RunningExecutions", unit=MetricUnit.Count, value=running.count)
    metrics.add_metric(name="OldestRunningExecutionSeconds", unit=MetricUnit.Seconds, value=running.oldest_seconds)
    logger.info("running executions", extra={"count": running.count, "oldest_seconds": running.oldest_seconds,
                                              "oldest_arn": running.oldest_arn})
    return {"count": running.count, "oldest_seconds": running.oldest_seconds, "oldest_arn": running.oldest_arn}
