"""The executions' edge: EventBridge "Object Created" → one Step Functions execution per object
version; and, on a schedule, the running executions' count and oldest age as metrics (the
"stuck" alarm reads them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pagemill import metrics as m
from pagemill.aws.clients import ExecutionsEnv, client
from pagemill.aws.handler import lambda_handler
from pagemill.aws.trigger import start_for_upload
from pagemill.aws.watch import report_running
from pagemill.payloads import ObjectCreated

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@lambda_handler(ObjectCreated)
def handler(event: ObjectCreated, context: LambdaContext) -> dict[str, Any]:
    return start_for_upload(client("stepfunctions"), ExecutionsEnv.from_environ().state_machine_arn, event.source)


@lambda_handler(
    counts={m.RUNNING_EXECUTIONS: "count", m.OLDEST_RUNNING_EXECUTION_SECONDS: "oldest_seconds"},
    units={m.OLDEST_RUNNING_EXECUTION_SECONDS: MetricUnit.Seconds},
)
def watch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return report_running(client("stepfunctions"), ExecutionsEnv.from_environ().state_machine_arn)
