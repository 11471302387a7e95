"""Write, RecordFailure and Settle (executions stopped or timed out as a whole): thin handlers
over pagemill.pipeline.write, .record_failure and .settle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from pagemill.aws.clients import db_connection, stage_context
from pagemill.pipeline.record_failure import record_failure as run_record_failure
from pagemill.pipeline.settle import settle_ended_execution
from pagemill.pipeline.write import write as run_write

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def write(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    logger.append_keys(document_id=event["document_id"])
    counts = run_write(
        stage_context(), db_connection(), document_id=event["document_id"], manifest_key=event["manifest_key"],
        execution_arn=event.get("execution_arn"), started_at=event.get("started_at"),
        embeddings_index_key=event.get("embeddings_index_key"), captions=event.get("captions"),
        understanding=event.get("understanding"),
    )
    metrics.add_metric(name="DocumentsSucceeded", unit=MetricUnit.Count, value=1)
    for name, value in counts.items():
        metrics.add_metric(name=f"{name.capitalize()}Written", unit=MetricUnit.Count, value=value)
    return counts


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    state = event["state"]
    logger.append_keys(key=state.get("source", {}).get("key"), document_id=(state.get("plan") or {}).get("document_id"))
    recorded = run_record_failure(stage_context(), db_connection(), state, event.get("execution_arn"))
    logger.warning("document failed", extra=recorded)
    metrics.add_metric(name="DocumentsFailed", unit=MetricUnit.Count, value=1)
    # Its own metric: a dimension on the batch above would split every metric of the invocation.
    with single_metric(name="DocumentsFailedByClass", unit=MetricUnit.Count, value=1) as by_class:
        by_class.add_dimension(name="ErrorClass", value=recorded["error"])
    return recorded


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def settle(event: dict[str, Any], context: LambdaContext) -> dict[str, str | None]:
    """EventBridge "Step Functions Execution Status Change" for ABORTED and TIMED_OUT executions."""
    detail = event["detail"]
    logger.append_keys(execution_arn=detail["executionArn"])
    settled = settle_ended_execution(db_connection(), execution_arn=detail["executionArn"],
                                             status=detail["status"])
    # No metric of its own: AWS/States ExecutionsAborted and ExecutionsTimedOut count these (alarmed).
    logger.info("execution settled", extra=settled)
    return settled
