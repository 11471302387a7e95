"""Starting one execution per uploaded object version.

The execution name is derived from bucket/key/versionId, and Step Functions refuses a second
execution with the same name, so an event that EventBridge delivers twice starts nothing new."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pagemill.records import SourceObject, dump

log = logging.getLogger(__name__)

_MAX_NAME = 80  # Step Functions' limit on execution names


@dataclass(frozen=True)
class StartOutcome:
    execution_arn: str
    started: bool  # False: an execution for this object version already existed


def execution_name(source: SourceObject, attempt: int = 0) -> str:
    """``attempt`` > 0 names a re-run of the same object version (``pagemill redrive``): ``-r<N>``."""
    identity = f"{source.bucket}/{source.key}/{source.version_id or 'null'}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32] + (f"-r{attempt}" if attempt else "")
    # A readable stem makes the console's execution list scannable; the digest makes it unique.
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(source.key).stem).strip("-")
    return f"{stem[: _MAX_NAME - len(digest) - 1]}-{digest}" if stem else digest


def start_for_object(sfn: Any, state_machine_arn: str, source: SourceObject, attempt: int = 0) -> StartOutcome:
    name = execution_name(source, attempt)
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps({"source": dump(source)})
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return StartOutcome(execution_arn=execution_arn(state_machine_arn, name), started=False)
    return StartOutcome(execution_arn=response["executionArn"], started=True)


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def start_for_upload(sfn: Any, state_machine_arn: str, source: SourceObject) -> dict[str, Any]:
    """The trigger's work: one execution for an uploaded object version (a redelivered event
    starts nothing), logged, and returned as the trigger's result."""
    outcome = start_for_object(sfn, state_machine_arn, source)
    log.info(
        "execution started" if outcome.started else "redelivered event: execution already exists",
        extra={"execution_arn": outcome.execution_arn, "key": source.key},
    )
    return {"execution_arn": outcome.execution_arn, "started": outcome.started}
