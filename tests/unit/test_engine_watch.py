"""The local engine's watch lists the running executions page by page; moto's next token names an
execution, and one that ended between two pages is "not found" (InvalidToken). The listing then
says it does not know, and the watch keeps its last one (the interpreter reports ends anyway)."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from pagemill_tools.engine.engine import LocalEngine

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Documents"


def engine_listing(pages: list[dict | None]) -> LocalEngine:
    """An engine whose Step Functions client answers ListExecutions with these pages (None: an
    InvalidToken error)."""
    engine = LocalEngine.__new__(LocalEngine)
    engine.state_machine_arn = ARN
    engine.sfn = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(engine.sfn)
    for page in pages:
        if page is None:
            stubber.add_client_error("list_executions", service_error_code="InvalidToken", service_message="Resource not found!")
        else:
            stubber.add_response("list_executions", page)
    stubber.activate()
    return engine


def execution(name: str) -> dict:
    return {"executionArn": f"{ARN}:{name}", "stateMachineArn": ARN, "name": name, "status": "RUNNING",
            "startDate": "2026-12-03T00:00:00Z"}


def test_a_listing_whose_next_page_is_gone_says_it_does_not_know() -> None:
    # GIVEN a first page of running executions that points at a second, which has gone
    engine = engine_listing([{"executions": [execution("a")], "nextToken": "b"}, None])
    # WHEN the watch lists the running executions
    # THEN it learns nothing (rather than failing the run or taking every run for ended)
    assert engine._running_executions() is None


def test_a_whole_listing_names_the_running_executions() -> None:
    engine = engine_listing([{"executions": [execution("a")], "nextToken": "b"}, {"executions": [execution("b")]}])
    assert engine._running_executions() == {f"{ARN}:a", f"{ARN}:b"}
    assert engine_listing([{"executions": []}])._running_executions() == set()
