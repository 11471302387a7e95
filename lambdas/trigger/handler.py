"""EventBridge "Object Created" → one Step Functions execution per object version."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, event_source

from pagemill.edge import client
from pagemill.models import SourceObject
from pagemill.trigger import start_for_object

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
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
