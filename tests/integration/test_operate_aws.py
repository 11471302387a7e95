"""`pagemill status / cancel / redrive --aws` against Step Functions, S3 and CloudFormation in moto,
with small state machines whose states carry the pipeline's names, run by moto's interpreter.

moto 5.2.5 has no RedriveExecution: the one test of that call stubs it with botocore's Stubber
(after the decision to redrive was made against moto), asserting the request it would send."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from unittest import mock

import boto3
import psycopg
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from pagemill import keys
from pagemill.aws.trigger import start_for_object
from pagemill.db import documents
from pagemill.errors import NotRedrivable, NotRunning, StackNotFound, UnknownDocument
from pagemill.operate import executions as aws
from pagemill.records import SourceObject, dump
from pagemill_tools.engine.containers import stop_once_started

REGION = "eu-west-1"
DOCUMENT_ID = "a" * 32
PLAN = {
    "Type": "Pass", "ResultPath": "$.plan",
    "Result": {"document_id": DOCUMENT_ID, "page_count": 100, "batch_count": 4, "manifest_key": "m", "duplicate": False},
}
RUNNING = {"Plan": {**PLAN, "Next": "ExtractPages"}, "ExtractPages": {"Type": "Wait", "Seconds": 120, "End": True}}
FAILED_THROUGH_RECORD_FAILURE = {
    "Plan": {**PLAN, "Next": "ExtractPages"},
    # What a Catch leaves in the state: the error under failed.<State>.
    "ExtractPages": {"Type": "Pass", "Result": {"Error": "EncryptedPdf", "Cause": "{}"},
                     "ResultPath": "$.failed.ExtractPages", "Next": "RecordFailure"},
    "RecordFailure": {"Type": "Pass", "Next": "DocumentFailed"},
    "DocumentFailed": {"Type": "Fail", "Error": "EncryptedPdf", "Cause": "The PDF is encrypted; upload it without a password"},
}
# What Write leaves in the state for a document that finished with something missing.
ENDED_PARTIAL = {
    "Plan": {**PLAN, "Next": "Write"},
    "Write": {"Type": "Pass", "ResultPath": "$.written", "End": True, "Result": {
        "pages": 100, "chunks": 40, "images": 12, "status": "partial", "warnings": ["captions_missing"],
    }},
}
FAILED_BEFORE_RECORDING = {
    "Plan": {**PLAN, "Next": "ExtractPages"},
    "ExtractPages": {"Type": "Fail", "Error": "States.Timeout", "Cause": "the map run timed out"},
}


@pytest.fixture
def moto() -> Iterator[dict]:
    # The engine's fix for moto's stop race: on AWS an execution can be stopped as soon as it exists.
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), \
            mock.patch.object(ExecutionWorker, "stop", stop_once_started):
        session = boto3.Session(region_name=REGION)
        clients = {name: session.client(name) for name in ("stepfunctions", "s3", "cloudformation")}
        yield clients
        sfn = clients["stepfunctions"]
        # No interpreter thread left waiting after the test.
        for machine in sfn.list_state_machines()["stateMachines"]:
            for e in sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")["executions"]:
                sfn.stop_execution(executionArn=e["executionArn"])


@pytest.fixture
def deploy(moto: dict) -> Callable[[dict], aws.Stack]:
    """A bucket, a state machine of the given states, and a stack whose outputs name them."""

    def deploy(states: dict) -> aws.Stack:
        s3, sfn, cfn = moto["s3"], moto["stepfunctions"], moto["cloudformation"]
        s3.create_bucket(Bucket="uploads", CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket="uploads", VersioningConfiguration={"Status": "Enabled"})
        arn = sfn.create_state_machine(
            name="Documents", definition=json.dumps({"StartAt": "Plan", "States": states}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        cfn.create_stack(StackName="Pagemill", TemplateBody=json.dumps({
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"BucketName": {"Value": "uploads"}, "StateMachineArn": {"Value": arn}},
        }))
        return aws.find_stack(cfn, "Pagemill")

    return deploy


def upload(moto: dict, stack: aws.Stack, key: str = "uploads/catalog.pdf") -> SourceObject:
    version = moto["s3"].put_object(Bucket=stack.bucket, Key=key, Body=b"%PDF-1.7 ...")["VersionId"]
    return SourceObject(bucket=stack.bucket, key=key, version_id=version)


def start_registered(moto: dict, stack: aws.Stack, conn: psycopg.Connection) -> tuple[SourceObject, str]:
    """An upload, its execution started, and its document registered running as Plan does."""
    source = upload(moto, stack)
    arn = start_for_object(moto["stepfunctions"], stack.state_machine_arn, source).execution_arn
    documents.register_document(conn, document_id=DOCUMENT_ID, sha256="a" * 64, size_bytes=10, source=source,
                                execution_arn=arn)
    return source, arn


def settled(sfn, arn: str, until: Callable[[dict], bool] = lambda d: d["status"] != "RUNNING") -> dict:
    for _ in range(100):
        description = sfn.describe_execution(executionArn=arn)
        if until(description):
            return description
        time.sleep(0.05)
    raise AssertionError(f"{arn} did not settle")


def test_the_stack_is_found_by_name_and_a_missing_one_is_a_clear_error(deploy, moto: dict) -> None:
    stack = deploy(RUNNING)
    assert (stack.name, stack.bucket) == ("Pagemill", "uploads")
    assert stack.state_machine_arn.endswith(":stateMachine:Documents")
    with pytest.raises(StackNotFound, match="'Elsewhere' not found in eu-west-1"):
        aws.find_stack(moto["cloudformation"], "Elsewhere")


def test_status_of_a_running_upload_shows_its_state_and_pages_done(deploy, moto: dict) -> None:
    # GIVEN an upload whose execution is extracting pages: 2 of 4 batches written
    stack = deploy(RUNNING)
    sfn, s3 = moto["stepfunctions"], moto["s3"]
    source = upload(moto, stack)
    arn = start_for_object(sfn, stack.state_machine_arn, source).execution_arn
    settled(sfn, arn, until=lambda d: "ExtractPages" in json.dumps(
        sfn.get_execution_history(executionArn=arn)["events"], default=str))
    manifest = [{"first_page": a, "last_page": a + 24} for a in (1, 26, 51, 76)]
    s3.put_object(Bucket=stack.bucket, Key=keys.manifest_key(DOCUMENT_ID), Body=json.dumps(manifest))
    for first in (1, 26):
        s3.put_object(Bucket=stack.bucket, Key=keys.batch_result_key(DOCUMENT_ID, first, first + 24), Body=b"{}")
    # WHEN on-call asks by the upload key
    resolved = aws.resolve(sfn, s3, stack, "uploads/catalog.pdf")
    status = aws.status(sfn, s3, stack, resolved)
    # THEN it is the trigger's execution of the latest version, running in ExtractPages at 50/100 pages
    assert resolved == arn
    assert (status.status, status.execution_status, status.current_state) == ("running", "RUNNING", "ExtractPages")
    assert (status.document_id, status.pages_done, status.page_count) == (DOCUMENT_ID, 50, 100)
    assert status.source == f"s3://uploads/uploads/catalog.pdf (version {source.version_id})"
    # AND an execution name or ARN finds the same; an unknown key is a clear error
    assert aws.resolve(sfn, s3, stack, arn.rsplit(":", 1)[-1]) == arn
    with pytest.raises(UnknownDocument, match="does not exist"):
        aws.resolve(sfn, s3, stack, "uploads/never.pdf")


def test_cancel_stops_the_execution_and_marks_the_document_cancelled(
    deploy, moto: dict, database_url: str
) -> None:
    # GIVEN a running execution whose Plan registered the document
    stack = deploy(RUNNING)
    sfn = moto["stepfunctions"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        source, arn = start_registered(moto, stack, conn)
        # WHEN it is cancelled with the database at hand
        outcome = aws.cancel(sfn, stack, arn, "cancelled by on-call: wrong file", conn)
        # THEN the execution is aborted and the row says cancelled, with the reason
        assert (outcome.document_id, outcome.status, outcome.stopped) == (DOCUMENT_ID, "cancelled", True)
        assert settled(sfn, arn)["status"] == "ABORTED"
        row = documents.get_document(conn, DOCUMENT_ID)
        assert (row["status"], row["error"]) == ("cancelled", "cancelled by on-call: wrong file")
        # AND a second cancel is refused
        with pytest.raises(NotRunning, match="its document is cancelled"):
            aws.cancel(sfn, stack, arn, "again", conn)
    assert aws.status(sfn, moto["s3"], stack, arn).status == "cancelled"
    # AND redrive starts a new execution of the same object version, which the key now resolves to
    redriven = aws.redrive(sfn, stack, arn)
    assert (redriven.how, redriven.previous_execution_arn) == ("restart", arn)
    assert redriven.execution_arn.endswith("-r1")
    assert json.loads(sfn.describe_execution(executionArn=redriven.execution_arn)["input"]) == {"source": dump(source)}
    assert aws.resolve(sfn, moto["s3"], stack, source.key) == redriven.execution_arn


def test_cancel_with_the_database_settles_an_execution_stopped_in_the_console(
    deploy, moto: dict, database_url: str
) -> None:
    # GIVEN an execution stopped without pagemill (the console): its document row stays running
    stack = deploy(RUNNING)
    sfn = moto["stepfunctions"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        _, arn = start_registered(moto, stack, conn)
        sfn.stop_execution(executionArn=arn)
        settled(sfn, arn)
        # WHEN it is cancelled with the database; without it, it is refused (nothing to stop)
        with pytest.raises(NotRunning, match="ABORTED"):
            aws.cancel(sfn, stack, arn, "settle")
        outcome = aws.cancel(sfn, stack, arn, "settle after a console stop", conn)
        # THEN the row is cancelled, and nothing was stopped
        assert (outcome.status, outcome.stopped, outcome.document_id) == ("cancelled", False, DOCUMENT_ID)
        assert documents.get_document(conn, DOCUMENT_ID)["status"] == "cancelled"


def test_a_failure_recorded_by_record_failure_is_restarted_not_redriven(deploy, moto: dict) -> None:
    # GIVEN an execution that failed through Catch → RecordFailure → DocumentFailed
    stack = deploy(FAILED_THROUGH_RECORD_FAILURE)
    sfn = moto["stepfunctions"]
    source = upload(moto, stack)
    arn = start_for_object(sfn, stack.state_machine_arn, source).execution_arn
    assert settled(sfn, arn)["status"] == "FAILED"
    # WHEN on-call looks: the class and reason the Fail state carries, and the state that failed
    status = aws.status(sfn, moto["s3"], stack, arn)
    assert (status.status, status.error_class, status.failed_state) == ("failed", "EncryptedPdf", "ExtractPages")
    assert status.error == "The PDF is encrypted; upload it without a password"
    # THEN redrive would only re-enter DocumentFailed: a new execution -r1 is started instead, then -r2
    first = aws.redrive(sfn, stack, arn)
    assert (first.how, first.execution_arn.rsplit("-", 1)[-1]) == ("restart", "r1")
    settled(sfn, first.execution_arn)
    second = aws.redrive(sfn, stack, arn)  # the latest attempt (-r1) is the one run again
    assert (second.previous_execution_arn, second.execution_arn.rsplit("-", 1)[-1]) == (first.execution_arn, "r2")


def test_a_failure_before_record_failure_is_redriven(deploy, moto: dict) -> None:
    # GIVEN an execution that failed in ExtractPages without reaching RecordFailure
    stack = deploy(FAILED_BEFORE_RECORDING)
    sfn = moto["stepfunctions"]
    arn = start_for_object(sfn, stack.state_machine_arn, upload(moto, stack)).execution_arn
    assert settled(sfn, arn)["status"] == "FAILED"
    # WHEN the redrive is planned (against moto), THEN it is a RedriveExecution of the same execution
    plan = aws.plan_redrive(sfn, stack, arn)
    assert (plan.how, plan.execution_arn) == ("redrive", arn)
    with Stubber(sfn) as stub:
        stub.add_response("redrive_execution", {"redriveDate": datetime.now(timezone.utc)}, {"executionArn": arn})
        outcome = aws.execute_redrive(sfn, stack, plan)
        stub.assert_no_pending_responses()
    assert (outcome.how, outcome.execution_arn) == ("redrive", arn)


def test_status_lists_recent_executions_and_a_running_one_is_not_redriven(deploy, moto: dict) -> None:
    stack = deploy(RUNNING)
    sfn = moto["stepfunctions"]
    arns = [start_for_object(sfn, stack.state_machine_arn, upload(moto, stack, f"uploads/{n}.pdf")).execution_arn
            for n in range(3)]
    sfn.stop_execution(executionArn=arns[0])
    settled(sfn, arns[0])
    listing = aws.recent(sfn, stack)
    assert listing.counts == {"running": 2, "cancelled": 1}
    assert {i.execution_arn for i in listing.items} == set(arns)
    with pytest.raises(NotRedrivable, match="RUNNING"):
        aws.redrive(sfn, stack, arns[1])


def test_the_command_with_aws_finds_the_stack_and_reports(deploy, moto: dict) -> None:
    from typer.testing import CliRunner

    from pagemill_tools.cli import app

    # GIVEN a failed upload in the stack cdk.json names (Pagemill)
    stack = deploy(FAILED_THROUGH_RECORD_FAILURE)
    sfn = moto["stepfunctions"]
    arn = start_for_object(sfn, stack.state_machine_arn, upload(moto, stack)).execution_arn
    settled(sfn, arn)
    runner = CliRunner(env={"DATABASE_URL": None})  # the database is optional with --aws
    # WHEN `pagemill status --aws KEY --json` runs, THEN it prints the failure and exits 1
    result = runner.invoke(app, ["status", "uploads/catalog.pdf", "--aws", "--region", REGION, "--json"])
    assert result.exit_code == 1, result.output
    shown = json.loads(result.stdout)
    assert (shown["execution_arn"], shown["error_class"]) == (arn, "EncryptedPdf")
    # AND cancel of an execution that is not running is refused with exit 1; a wrong stack exits 2
    refused = runner.invoke(app, ["cancel", arn, "--aws", "--region", REGION])
    assert refused.exit_code == 1 and "not running" in refused.output
    missing = runner.invoke(app, ["status", "--aws", "--stack-name", "Nope", "--region", REGION])
    assert missing.exit_code == 2 and "'Nope' not found" in missing.output


def test_a_partial_document_shows_partial_and_is_redriven_as_a_new_execution(deploy, moto: dict) -> None:
    # GIVEN an execution that succeeded with its document partial (the model API was down)
    stack = deploy(ENDED_PARTIAL)
    source = upload(moto, stack)
    arn = start_for_object(moto["stepfunctions"], stack.state_machine_arn, source).execution_arn
    settled(moto["stepfunctions"], arn)
    # WHEN on-call asks for its status
    shown = aws.status(moto["stepfunctions"], moto["s3"], stack, arn)
    # THEN it is partial, with what is missing and how to fill it
    assert (shown.status, shown.execution_status) == ("partial", "SUCCEEDED")
    assert shown.warnings == [{"code": "captions_missing"}]
    assert f"pagemill redrive {arn} --aws" in shown.note
    # AND a redrive starts a new execution of the same upload (Plan registers the partial document again)
    outcome = aws.redrive(moto["stepfunctions"], stack, arn)
    assert (outcome.how, outcome.previous_execution_arn) == ("restart", arn)
    assert outcome.execution_arn.endswith("-r1") and "partial" in outcome.note
