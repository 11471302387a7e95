"""The "stuck" signal: how many executions are running and how long the oldest has been at it.

Step Functions publishes its execution metrics when an execution ends, so one that never ends (a
callback nobody answers, a map that never drains) shows nowhere until its execution timeout fires,
hours later. Reading the running executions on a schedule lets an alarm fire at the expected
maximum duration instead.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningExecutions:
    count: int
    oldest_seconds: float  # 0 when nothing is running
    oldest_arn: str | None


def running_executions(sfn: Any, state_machine_arn: str, now: datetime) -> RunningExecutions:
    count, oldest_start, oldest_arn = 0, None, None
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    for page in pages:
        for execution in page["executions"]:
            count += 1
            if oldest_start is None or execution["startDate"] < oldest_start:
                oldest_start, oldest_arn = execution["startDate"], execution["executionArn"]
    age = max(0.0, (now - oldest_start).total_seconds()) if oldest_start else 0.0
    return RunningExecutions(count=count, oldest_seconds=age, oldest_arn=oldest_arn)


def report_running(sfn: Any, state_machine_arn: str) -> dict[str, Any]:
    """The watch function's work: the running executions now, logged and returned (its metrics)."""
    running = asdict(running_executions(sfn, state_machine_arn, datetime.now(UTC)))
    log.info("running executions", extra=running)
    return running
