"""The stuck signal against Step Functions' API (moto): running executions counted, the oldest found."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from pagemill.aws.watch import running_executions

DEFINITION = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}})


@pytest.fixture
def sfn():
    with mock_aws():
        client = boto3.client("stepfunctions", region_name="us-east-1")
        yield client


def _machine(sfn) -> str:
    return sfn.create_state_machine(
        name="documents", definition=DEFINITION, roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]


def test_nothing_running_is_zero(sfn) -> None:
    arn = _machine(sfn)
    now = sfn.describe_state_machine(stateMachineArn=arn)["creationDate"]
    assert running_executions(sfn, arn, now).count == 0
    assert running_executions(sfn, arn, now).oldest_seconds == 0.0


def test_oldest_running_execution_and_its_age(sfn) -> None:
    arn = _machine(sfn)
    started = [sfn.start_execution(stateMachineArn=arn, name=f"doc-{n}")["executionArn"] for n in range(3)]
    first = sfn.describe_execution(executionArn=started[0])["startDate"]
    later = first + timedelta(minutes=45)

    running = running_executions(sfn, arn, later)

    assert running.count == 3
    assert running.oldest_arn == started[0]
    assert running.oldest_seconds == pytest.approx(45 * 60, abs=5)

    # An execution that ends no longer counts: the oldest is now the next one.
    sfn.stop_execution(executionArn=started[0])
    running = running_executions(sfn, arn, later)
    assert running.count == 2
    assert running.oldest_arn in started[1:]
