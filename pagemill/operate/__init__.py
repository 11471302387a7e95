"""Operating the pipeline: ``pagemill status / cancel / redrive`` and the HTTP API, on a stack's
Step Functions (``executions``: AWS, or the local engine's moto) and on the local engine's record
(pagemill_tools.operate.local). What each returns is a typed record the CLI prints as a table or as JSON; what cannot
be done as asked raises an OperationError (pagemill.errors) that says why and what to do."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The document's status, from the execution's when the document row is not at hand.
EXECUTION_TO_DOCUMENT = {
    "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "failed",
    "ABORTED": "cancelled", "PENDING_REDRIVE": "running",
}
# Finished with its rows written.
FINISHED = {"succeeded", "partial"}
# What a document id looks like (pagemill.pipeline.context.document_id_for: 32 hex digits of the sha256).
DOCUMENT_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class DocumentStatus:
    status: str  # running | succeeded | partial | failed | cancelled | interrupted
    document_id: str | None = None
    execution_arn: str | None = None
    execution_status: str | None = None  # RUNNING, SUCCEEDED, ... as Step Functions says; None: unknown
    current_state: str | None = None
    pages_done: int | None = None
    page_count: int | None = None
    error_class: str | None = None
    error: str | None = None
    failed_state: str | None = None
    # What a partial document is missing (pagemill.records.DocumentWarning as dicts).
    warnings: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None  # s3://bucket/key (version) or the local file
    started_at: datetime | None = None
    updated_at: datetime | None = None
    note: str | None = None  # what the operator should know, or do next


@dataclass(frozen=True)
class StatusList:
    items: list[DocumentStatus]
    counts: dict[str, int] = field(default_factory=dict)  # by status, over what the list covers


@dataclass(frozen=True)
class CancelOutcome:
    execution_arn: str
    document_id: str | None
    status: str  # the document's status afterwards (cancelled, or succeeded if Write won the race)
    stopped: bool  # a live execution was stopped
    note: str


@dataclass(frozen=True)
class RedriveOutcome:
    how: str  # "redrive": RedriveExecution of the same execution; "restart": a new execution of the source
    execution_arn: str  # the execution that now does the work
    previous_execution_arn: str
    note: str
