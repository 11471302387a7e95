"""EventBridge patterns more than one construct matches on."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_stepfunctions as sfn

# In an execution's output (a JSON string in the event), Write's "$.written.status" of a partial
# document; compact as Step Functions writes it, and spaced, to be safe.
PARTIAL_OUTPUT = ('*"status":"partial"*', '*"status": "partial"*')


def execution_status_pattern(
    state_machine: sfn.IStateMachine, *statuses: str, output_wildcards: tuple[str, ...] = ()
) -> events.EventPattern:
    """EventBridge's event for executions of ``state_machine`` ending in one of ``statuses`` (and,
    with ``output_wildcards``, whose output matches one of them)."""
    detail: dict[str, object] = {"stateMachineArn": [state_machine.state_machine_arn], "status": list(statuses)}
    if output_wildcards:
        detail["output"] = [{"wildcard": w} for w in output_wildcards]
    return events.EventPattern(
        source=["aws.states"], detail_type=["Step Functions Execution Status Change"], detail=detail,
    )
