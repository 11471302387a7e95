"""status / cancel / redrive against a stack's state machine (deployed, or the local engine's):
Step Functions is the record of what ran,
S3 holds the progress, and the database (optional here) holds the document rows.

The clients are passed in (built at the edge: the CLI, the HTTP API, or a test under moto)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from pagemill.aws.trigger import execution_arn, execution_name, start_for_object
from pagemill.db import documents
from pagemill.errors import NotRedrivable, NotRunning, StackNotFound, UnknownDocument
from pagemill.operate import (
    DOCUMENT_ID,
    EXECUTION_TO_DOCUMENT,
    CancelOutcome,
    DocumentStatus,
    RedriveOutcome,
    StatusList,
)
from pagemill.operate.progress import (
    current_state,
    document_progress,
    planned_document,
    read_history,
    visited,
    written,
)
from pagemill.records import SourceObject, load

_ENDED_UNSUCCESSFULLY = {"FAILED", "TIMED_OUT", "ABORTED"}


@dataclass(frozen=True)
class Stack:
    name: str
    bucket: str
    state_machine_arn: str
    # `pagemill reembed --aws`'s state machine (None: chunk embeddings are off in the stack).
    reembed_state_machine_arn: str | None = None


def find_stack(cfn: Any, stack_name: str) -> Stack:
    """The stack's outputs (BucketName, StateMachineArn) from CloudFormation."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        region = cfn.meta.region_name
        raise StackNotFound(
            f"stack {stack_name!r} not found in {region}: {exc.response['Error'].get('Message', exc)} "
            "(--stack-name, --region or AWS_REGION)"
        ) from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = {"BucketName", "StateMachineArn"} - set(outputs)
    if missing:
        raise StackNotFound(f"stack {stack_name!r} has no output {', '.join(sorted(missing))}: is it a pagemill stack?")
    return Stack(stack_name, outputs["BucketName"], outputs["StateMachineArn"], outputs.get("ReembedStateMachineArn"))


def resolve(sfn: Any, s3: Any, stack: Stack, ref: str, conn: Any = None) -> str:
    """An execution ARN or name, an upload key (its latest version's latest attempt) or, with the
    database, a document id → the execution ARN."""
    if ref.startswith("arn:"):
        arn = ref
    elif "/" in ref or ref.lower().endswith(".pdf"):
        arn = latest_attempt(sfn, stack, _latest_version(s3, stack, ref))[0]
    elif DOCUMENT_ID.match(ref) and conn is not None and (row := documents.get_document(conn, ref)):
        arn = row["execution_arn"]
    else:
        arn = execution_arn(stack.state_machine_arn, ref)
    if _describe(sfn, arn) is None:
        hint = "" if conn is not None or not DOCUMENT_ID.match(ref) else " (a document id needs --database-url)"
        raise UnknownDocument(f"no execution for {ref!r} in stack {stack.name}{hint}")
    return arn


def latest_attempt(sfn: Any, stack: Stack, source: SourceObject) -> tuple[str, int]:
    """The last execution for this object version: the trigger's, or the latest `-r<N>` re-run."""
    attempt = 0
    while _describe(sfn, execution_arn(stack.state_machine_arn, execution_name(source, attempt + 1))) is not None:
        attempt += 1
    return execution_arn(stack.state_machine_arn, execution_name(source, attempt)), attempt


def status(sfn: Any, s3: Any, stack: Stack, arn: str) -> DocumentStatus:
    description = _describe(sfn, arn)
    if description is None:
        raise UnknownDocument(f"no execution {arn}")
    events = read_history(sfn, arn)
    document_id = planned_document(events)
    running = description["status"] == "RUNNING"
    progress = (
        document_progress(s3, stack.bucket, document_id, since=description.get("redriveDate") or description["startDate"])
        if document_id else None
    )
    failed = description["status"] in _ENDED_UNSUCCESSFULLY
    partial = _partial(description, events)
    return DocumentStatus(
        status="partial" if partial else EXECUTION_TO_DOCUMENT.get(description["status"], description["status"].lower()),
        document_id=document_id,
        execution_arn=arn,
        execution_status=description["status"],
        current_state=current_state(events) if running else None,
        pages_done=progress.pages_done if progress else None,
        page_count=progress.page_count if progress else None,
        error_class=description.get("error") if failed else None,
        error=description.get("cause") if failed else None,
        failed_state=_failed_state(events) if description["status"] == "FAILED" else None,
        source=_source_text(_source_of(description)),
        started_at=description["startDate"],
        updated_at=description.get("stopDate"),
        # The codes only: the messages, pages and images are in the document row (documents.warnings).
        warnings=[{"code": code} for code in written(events).get("warnings", [])],
        note=f"`pagemill redrive {arn} --aws` runs it again" if failed or partial else None,
    )


def _partial(description: dict[str, Any], events: list[dict[str, Any]]) -> bool:
    return description["status"] == "SUCCEEDED" and written(events).get("status") == "partial"


def recent(sfn: Any, stack: Stack, limit: int = 20) -> StatusList:
    """The latest executions, newest first; failed ones with their error (one describe each)."""
    listed = sfn.list_executions(stateMachineArn=stack.state_machine_arn, maxResults=limit)["executions"]
    items = []
    counts: dict[str, int] = {}
    for e in listed:
        doc_status = EXECUTION_TO_DOCUMENT.get(e["status"], e["status"].lower())
        counts[doc_status] = counts.get(doc_status, 0) + 1
        error = cause = None
        if e["status"] in _ENDED_UNSUCCESSFULLY:
            d = _describe(sfn, e["executionArn"]) or {}
            error, cause = d.get("error"), d.get("cause")
        items.append(DocumentStatus(
            status=doc_status, execution_arn=e["executionArn"], execution_status=e["status"], error_class=error,
            error=cause, started_at=e["startDate"], updated_at=e.get("stopDate"),
        ))
    return StatusList(items=items, counts=counts)


def cancel(sfn: Any, stack: Stack, arn: str, reason: str, conn: Any = None) -> CancelOutcome:
    """Stop a running execution; with the database, first record the cancellation there, so the
    document row says cancelled and work still in flight (a Plan, a Write) cannot revive or
    complete it. Without it, the stack's Settle function marks the row cancelled when the stop
    event arrives; cancelling a stopped execution again with the database settles it at once."""
    description = _describe(sfn, arn)
    if description is None:
        raise UnknownDocument(f"no execution {arn}")
    running = description["status"] == "RUNNING"
    if not running and not (description["status"] == "ABORTED" and conn is not None):
        raise NotRunning(f"execution {arn} is {description['status']}, not running: nothing to cancel")
    document_id, document_status = None, "cancelled"
    if conn is not None:
        document_id = documents.cancel_execution(conn, arn, reason)
        if document_id is None:
            row_id = documents.document_for_execution(conn, arn)
            row = documents.get_document(conn, row_id) if row_id else None
            if not running:
                raise NotRunning(f"execution {arn} is ABORTED and its document is "
                                 f"{row['status'] if row else 'not registered'}: nothing to cancel")
            document_id, document_status = (row["id"], row["status"]) if row else (None, "cancelled")
    if running:
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause=reason)
    if not running:
        note = "the execution was already stopped; its document row is now cancelled"
    elif conn is None:
        note = "execution stopped; the stack's Settle function marks its document cancelled"
    elif document_status == "succeeded":
        note = "execution stopped, but its Write had already committed: the document stays succeeded"
    else:
        note = "execution stopped; the document is cancelled"
    return CancelOutcome(arn, document_id or planned_document(read_history(sfn, arn)), document_status, running, note)


@dataclass(frozen=True)
class RedrivePlan:
    how: str  # "redrive" | "restart"
    execution_arn: str  # the unsuccessful execution
    source: SourceObject
    attempt: int  # of that execution: 0 for the trigger's, N for `-r<N>`
    why: str


def plan_redrive(sfn: Any, stack: Stack, arn: str) -> RedrivePlan:
    """Decide how to run the latest attempt for this execution's object version again.

    RedriveExecution continues an execution from its unsuccessful step. A document that failed
    through Catch → RecordFailure → DocumentFailed has only the Fail state left unsuccessful, so
    a redrive would fail again at once: it gets a new execution (``-r<N>``), which Plan
    registers again (a failed or cancelled document is not a duplicate). A cancelled execution is
    also started anew: its ARN stays cancelled, and late work under it is refused. Timeouts and
    failures that did not reach RecordFailure are redriven, keeping the pages already extracted.
    A partial document (the execution succeeded, Write said partial) gets a new execution as well:
    Write replaces its rows and fills what can be made now.
    """
    description = _describe(sfn, arn)
    if description is None:
        raise UnknownDocument(f"no execution {arn}")
    source = _source_of(description)
    if source is None:
        raise NotRedrivable(f"execution {arn} has no source object in its input")
    latest, attempt = latest_attempt(sfn, stack, source)
    if latest != arn:
        description = _describe(sfn, latest) or description
    status_now = description["status"]
    if _partial(description, read_history(sfn, latest)):
        return RedrivePlan("restart", latest, source, attempt,
                           "its document is partial: Plan registers it again and Write fills what it can")
    if status_now not in _ENDED_UNSUCCESSFULLY:
        raise NotRedrivable(f"execution {latest} is {status_now}: nothing to redrive")
    if status_now == "ABORTED":
        return RedrivePlan("restart", latest, source, attempt, "it was stopped (cancelled)")
    if status_now == "FAILED" and visited(read_history(sfn, latest), "RecordFailure"):
        return RedrivePlan("restart", latest, source, attempt, "it failed through RecordFailure")
    if description.get("redriveStatus") == "NOT_REDRIVABLE":
        return RedrivePlan("restart", latest, source, attempt,
                           f"Step Functions cannot redrive it: {description.get('redriveStatusReason', '')}")
    return RedrivePlan("redrive", latest, source, attempt, f"it ended {status_now} before recording a failure")


def execute_redrive(sfn: Any, stack: Stack, plan: RedrivePlan) -> RedriveOutcome:
    if plan.how == "redrive":
        sfn.redrive_execution(executionArn=plan.execution_arn)
        return RedriveOutcome("redrive", plan.execution_arn, plan.execution_arn,
                              f"redriven from its unsuccessful step ({plan.why})")
    outcome = start_for_object(sfn, stack.state_machine_arn, plan.source, attempt=plan.attempt + 1)
    if not outcome.started:
        raise NotRedrivable(f"{outcome.execution_arn} already exists")
    return RedriveOutcome("restart", outcome.execution_arn, plan.execution_arn,
                          f"started a new execution of the same object version ({plan.why})")


def redrive(sfn: Any, stack: Stack, arn: str) -> RedriveOutcome:
    return execute_redrive(sfn, stack, plan_redrive(sfn, stack, arn))


def _describe(sfn: Any, arn: str) -> dict[str, Any] | None:
    try:
        return sfn.describe_execution(executionArn=arn)
    except (sfn.exceptions.ExecutionDoesNotExist, sfn.exceptions.InvalidArn):
        return None


def _latest_version(s3: Any, stack: Stack, key: str) -> SourceObject:
    try:
        head = s3.head_object(Bucket=stack.bucket, Key=key)
    except ClientError as exc:
        raise UnknownDocument(f"s3://{stack.bucket}/{key} does not exist") from exc
    return SourceObject(bucket=stack.bucket, key=key, version_id=head.get("VersionId"))


def _source_of(description: dict[str, Any]) -> SourceObject | None:
    source = json.loads(description.get("input") or "{}").get("source")
    return load(SourceObject, source) if source else None


def _source_text(source: SourceObject | None) -> str | None:
    if source is None:
        return None
    return f"s3://{source.bucket}/{source.key}" + (f" (version {source.version_id})" if source.version_id else "")


def _failed_state(events: list[dict[str, Any]]) -> str | None:
    """The state whose failure the Catch sent to RecordFailure (the failed.<State> key)."""
    for event in events:
        if event["type"].endswith("StateEntered") and event["stateEnteredEventDetails"]["name"] == "RecordFailure":
            failed = json.loads(event["stateEnteredEventDetails"].get("input") or "{}").get("failed") or {}
            return next(iter(failed), None)
    return None
