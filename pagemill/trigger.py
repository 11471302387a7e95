"""Starting one execution per uploaded object version.

The execution name is derived from bucket/key/versionId, and Step Functions refuses a second
execution with the same name, so an event that EventBridge delivers twice starts nothing new."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pagemill.models import SourceObject

_MAX_NAME = 80  # Step Functions' limit on execution names


@dataclass(frozen=True)
class StartOutcome:
    execution_arn: str
    started: bool  # False: an execution for this object version already existed


def execution_name(source: SourceObject) -> str:
    identity = f"{source.bucket}/{source.key}/{source.version_id or 'null'}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    # A readable stem makes the console's execution list scannable; the digest makes it unique.
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", PurePosixPath(source.key).stem).strip("-")
    return f"{stem[: _MAX_NAME - len(digest) - 1]}-{digest}" if stem else digest


def start_for_object(sfn: Any, state_machine_arn: str, source: SourceObject) -> StartOutcome:
    name = execution_name(source)
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps({"source": source.to_dict()})
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        arn = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        return StartOutcome(execution_arn=arn, started=False)
    return StartOutcome(execution_arn=response["executionArn"], started=True)
