"""Write, RecordFailure and Settle (executions that ended without recording their end): thin handlers
over pagemill.pipeline.write, .record_failure and .settle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pagemill import metrics as m
from pagemill.aws.clients import db_connection, stage_context
from pagemill.aws.handler import lambda_handler, logger, metrics, publish_failure_class
from pagemill.payloads import ExecutionEnded, RecordFailureInput, WriteInput
from pagemill.pipeline.record_failure import record_failure as run_record_failure
from pagemill.pipeline.settle import settle_ended_execution
from pagemill.pipeline.write import write as run_write

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

_ROWS = {m.rows_written(kind): kind for kind in ("pages", "chunks", "images")}


@lambda_handler(WriteInput, counts=_ROWS)
def write(payload: WriteInput, context: LambdaContext) -> dict[str, Any]:
    written = run_write(stage_context(), db_connection(), payload)
    # One metric per outcome: partial documents have their own alarm.
    outcome = m.DOCUMENTS_PARTIAL if written["status"] == "partial" else m.DOCUMENTS_SUCCEEDED
    metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
    return written


@lambda_handler(RecordFailureInput, counts={m.DOCUMENTS_FAILED: 1})
def record_failure(payload: RecordFailureInput, context: LambdaContext) -> dict[str, str]:
    recorded = run_record_failure(stage_context(), db_connection(), payload)
    logger.warning("document failed", extra=recorded)
    publish_failure_class(recorded["error"])
    return recorded


# No metric of its own: AWS/States ExecutionsAborted, ExecutionsTimedOut and ExecutionsFailed count these (alarmed).
@lambda_handler(ExecutionEnded)
def settle(payload: ExecutionEnded, context: LambdaContext) -> dict[str, str | None]:
    """EventBridge "Step Functions Execution Status Change" for ABORTED, TIMED_OUT and FAILED executions."""
    settled = settle_ended_execution(db_connection(), payload)
    logger.info("execution settled", extra=settled)
    return settled
