"""Monitoring in an otherwise empty stack, watching the functions and a stand-in state machine:
alarms into one topic, failed documents published, the stuck alarm, the dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pagemill import metrics
from tests.infrastructure.conftest import (
    construct_template,
    monitoring_part,
    part_fixture,
)
from tests.infrastructure.queries import handler_of, of_type, pagemill_functions

template = part_fixture(monitoring_part)


def alarms_on(resources: dict[str, Any], namespace: str, metric: str) -> list[dict[str, Any]]:
    return [
        a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == namespace and a["Properties"].get("MetricName") == metric
    ]


def test_alarms_page_one_topic(resources: dict[str, Any]) -> None:
    (topic_id,) = of_type(resources, "AWS::SNS::Topic")
    alarms = of_type(resources, "AWS::CloudWatch::Alarm").values()
    assert alarms
    for alarm in alarms:
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic_id}], props
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmDescription"].startswith("pagemill: ")
    # the state machine's bad outcomes, and the GPU task's failures and missed heartbeats
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled", "ExecutionsAborted"):
        assert len(alarms_on(resources, "AWS/States", metric)) == 1, metric
    for metric in ("ServiceIntegrationsFailed", "ServiceIntegrationsTimedOut"):
        (gpu,) = alarms_on(resources, "AWS/States", metric)
        assert gpu["Dimensions"] == [
            {"Name": "ServiceIntegrationResourceArn", "Value": "arn:aws:states:::ecs:runTask.waitForTaskToken"}
        ]
    # every function's errors, throttles and duration near its timeout
    functions = pagemill_functions(resources)
    for metric in ("Errors", "Throttles", "Duration"):
        watched = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms_on(resources, "AWS/Lambda", metric)}
        assert watched == set(functions), metric
    for alarm in alarms_on(resources, "AWS/Lambda", "Duration"):
        function = functions[alarm["Dimensions"][0]["Value"]["Ref"]]
        assert alarm["Threshold"] == function["Properties"]["Timeout"] * 1000 * 0.8
    # the trigger's dead-letter queue, as soon as it holds anything
    (dlq,) = alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Threshold"] == 1


def test_failed_and_partial_documents_are_published(resources: dict[str, Any]) -> None:
    (topic_id,) = of_type(resources, "AWS::SNS::Topic")
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    rules = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
             and r["Properties"]["Targets"][0]["Arn"] == {"Ref": topic_id}]
    by_status = {tuple(r["EventPattern"]["detail"]["status"]): r["EventPattern"]["detail"] for r in rules}
    assert by_status == {
        ("FAILED", "TIMED_OUT", "ABORTED"): {"stateMachineArn": [{"Ref": machine_id}],
                                            "status": ["FAILED", "TIMED_OUT", "ABORTED"]},
        # a succeeded execution whose output (a JSON string) holds Write's "status": "partial"
        ("SUCCEEDED",): {"stateMachineArn": [{"Ref": machine_id}], "status": ["SUCCEEDED"],
                         "output": [{"wildcard": '*"status":"partial"*'}, {"wildcard": '*"status": "partial"*'}]},
    }


def test_partial_documents_raise_an_alarm_beside_the_failures(resources: dict[str, Any]) -> None:
    (partial,) = alarms_on(resources, metrics.NAMESPACE, metrics.DOCUMENTS_PARTIAL)
    assert (partial["Threshold"], partial["Statistic"]) == (1, "Sum")
    assert partial["Dimensions"] == [{"Name": "service", "Value": "pagemill"}]


def test_alarm_email_subscribes_to_the_topic(tmp_path: Path) -> None:
    resources = construct_template(tmp_path, monitoring_part, alarm_email="oncall@example.com").to_json()["Resources"]
    (subscription,) = of_type(resources, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "oncall@example.com"


def test_executions_running_too_long_raise_the_stuck_alarm(resources: dict[str, Any]) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    (watch_id,) = [i for i, f in functions.items() if handler_of(f) == "handler.watch"]
    # the watch runs every five minutes (what it may list: test_stack)
    (schedule,) = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
                   if "ScheduleExpression" in r["Properties"]]
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Targets"][0]["Arn"] == {"Fn::GetAtt": [watch_id, "Arn"]}
    # the alarm: the oldest running execution past stuck_after_minutes (cdk.json: 30)
    (stuck,) = alarms_on(resources, metrics.NAMESPACE, metrics.OLDEST_RUNNING_EXECUTION_SECONDS)
    assert stuck["Threshold"] == 30 * 60
    assert stuck["Statistic"] == "Maximum"
    assert stuck["Dimensions"] == [{"Name": "service", "Value": "pagemill"}]


def test_dashboard_shows_throughput_failures_by_class_and_every_state(resources: dict[str, Any]) -> None:
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    for metric in ("DocumentsSucceeded", "DocumentsPartial", "DocumentsFailed", "PagesExtracted", "ImagesExtracted", "ImagesEmbedded",
                   "RunningExecutions", "OldestRunningExecutionSeconds"):
        assert f'"{metric}"' in text, metric
    assert "DocumentsFailedByClass" in text and "ErrorClass" in text and "SEARCH(" in text
    # every function behind a state has its durations on the dashboard, and so has the GPU task
    for function_id in pagemill_functions(resources):
        assert json.dumps({"Ref": function_id}) in text, function_id
    assert "ecs:runTask.waitForTaskToken" in text
