"""`pagemill reembed --aws`: start the stack's reembed state machine (stacks/reembed.py), or follow
the execution already running, and read its progress from the execution's history: each
ReembedBatch's exit says how many chunks it embedded and how many remain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pagemill.errors import StackNotFound
from pagemill.operate.executions import Stack
from pagemill.operate.progress import read_history

BATCH_STATE = "ReembedBatch"
INDEX_STATE = "BuildChunkIndex"


@dataclass(frozen=True)
class ReembedRun:
    execution_arn: str
    status: str  # Step Functions': RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    embedded: int = 0  # chunks this execution re-embedded so far
    remaining: int | None = None  # after its latest batch (None: no batch has finished)
    model: str | None = None
    index_seconds: float | None = None  # once the index is built
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != "RUNNING"


def start(sfn: Any, stack: Stack, now: datetime | None = None) -> tuple[str, bool]:
    """The execution to follow and whether this call started it: one already running is followed,
    never doubled (two would share the chunks, skip-locked, but build the index twice)."""
    arn = stack.reembed_state_machine_arn
    if not arn:
        raise StackNotFound(
            f"stack {stack.name!r} has no ReembedStateMachineArn output: its text_embedder is off, or it was "
            "deployed before `pagemill reembed --aws` existed (cdk deploy)"
        )
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1)["executions"]
    if running:
        return running[0]["executionArn"], False
    name = f"reembed-{(now or datetime.now(UTC)):%Y%m%dT%H%M%S}"
    return sfn.start_execution(stateMachineArn=arn, name=name, input="{}")["executionArn"], True


def progress(sfn: Any, execution_arn: str) -> ReembedRun:
    described = sfn.describe_execution(executionArn=execution_arn)
    embedded, remaining, model, index_seconds = 0, None, None, None
    # Oldest first: the latest batch's remaining count wins.
    for event in reversed(read_history(sfn, execution_arn)):
        details = event.get("stateExitedEventDetails") or {}
        if not event["type"].endswith("StateExited") or details.get("name") not in (BATCH_STATE, INDEX_STATE):
            continue
        output = json.loads(details.get("output") or "{}")
        if details["name"] == BATCH_STATE and "batch" in output:
            embedded += int(output["batch"]["embedded"])
            remaining, model = int(output["batch"]["remaining"]), output["batch"]["model"]
        elif details["name"] == INDEX_STATE and "index" in output:
            index_seconds, model = float(output["index"]["index_seconds"]), output["index"]["model"]
    error = None
    if described.get("error") or described.get("cause"):
        error = f"{described.get('error', '')}: {described.get('cause', '')}".strip(": ")[:500]
    return ReembedRun(execution_arn, described["status"], embedded, remaining, model, index_seconds, error)
