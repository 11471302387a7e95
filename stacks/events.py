"""EventBridge patterns more than one construct matches on."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_stepfunctions as sfn


def execution_status_pattern(state_machine: sfn.IStateMachine, *statuses: str) -> events.EventPattern:
    """EventBridge's event for executions of ``state_machine`` ending in one of ``statuses``."""
    return events.EventPattern(
        source=["aws.states"],
        detail_type=["Step Functions Execution Status Change"],
        detail={"stateMachineArn": [state_machine.state_machine_arn], "status": list(statuses)},
    )
