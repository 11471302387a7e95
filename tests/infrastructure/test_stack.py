"""The whole pipeline stack, synthesized once: what only the composition shows (outputs, the
trigger and the watch wired to the state machine, ended executions settled), cfn-lint, and that
every construct is there. Each construct's own tests build it alone (test_<construct>.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.infrastructure.queries import documents_machine_id, handler_of, of_type


def test_the_stack_composes_every_construct(resources: dict[str, Any]) -> None:
    prefixes = {"Storage", "Captions", "Network", "Database", "Functions", "Migrations", "Gpu", "Documents",
                "Api", "Monitoring"}
    assert {p for p in prefixes if any(k.startswith(p) for k in resources)} == prefixes


def test_outputs_and_no_hard_coded_names(resources: dict[str, Any], template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert {"BucketName", "StateMachineArn"} <= set(outputs)
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        for key in ("BucketName", "FunctionName", "StateMachineName", "QueueName", "RoleName", "Name"):
            assert not isinstance(props.get(key), str), f"{logical_id} hard-codes {key}={props[key]!r}"


def test_cfn_lint_finds_no_errors(template: dict[str, Any]) -> None:
    from cfnlint.api import lint

    matches = lint(json.dumps(template), regions=["us-east-1"])
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)


def test_uploaded_pdfs_trigger_the_pipeline(resources: dict[str, Any]) -> None:
    (rule,) = [r for r in of_type(resources, "AWS::Events::Rule").values()
               if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]]
    (bucket_id,) = of_type(resources, "AWS::S3::Bucket")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": bucket_id}]
    assert {"wildcard": "uploads/*.pdf"} in pattern["detail"]["object"]["key"]
    (target,) = rule["Properties"]["Targets"]
    trigger_id = target["Arn"]["Fn::GetAtt"][0]
    assert resources[trigger_id]["Properties"]["Handler"] == "handler.handler"
    assert "DeadLetterConfig" in target
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    (queue,) = of_type(resources, "AWS::SQS::Queue").values()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    # AND the trigger knows which state machine to start
    machine_id = documents_machine_id(resources)
    assert resources[trigger_id]["Properties"]["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": machine_id}


def test_executions_that_ended_without_recording_it_settle_their_documents(resources: dict[str, Any]) -> None:
    # Stopped or timed out, they end without their Catch, so RecordFailure never runs; failed, it may
    # be RecordFailure that failed: a rule hands them to Settle
    machine_id = documents_machine_id(resources)
    (dlq_id,) = of_type(resources, "AWS::SQS::Queue")
    settle_id = next(i for i, f in of_type(resources, "AWS::Lambda::Function").items()
                     if handler_of(f) == "handler.settle")
    (rule,) = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
               if r["Properties"].get("Targets", [{}])[0].get("Arn") == {"Fn::GetAtt": [settle_id, "Arn"]}]
    assert rule["EventPattern"]["detail"] == {
        "stateMachineArn": [{"Ref": machine_id}], "status": ["ABORTED", "TIMED_OUT", "FAILED"],
    }
    target = rule["Targets"][0]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 8


def test_the_watch_knows_the_state_machine_and_may_list_its_executions(resources: dict[str, Any]) -> None:
    machine_id = documents_machine_id(resources)
    functions = of_type(resources, "AWS::Lambda::Function")
    (watch_id,) = [i for i, f in functions.items() if handler_of(f) == "handler.watch"]
    assert functions[watch_id]["Properties"]["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": machine_id}
    # it may list the executions of this state machine
    role_id = functions[watch_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [s for p in of_type(resources, "AWS::IAM::Policy").values()
                  if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert {"Action": "states:ListExecutions", "Effect": "Allow", "Resource": {"Ref": machine_id}} in statements


def test_the_local_engine_runs_every_function_from_its_handler_folder(template: dict[str, Any], tmp_path: Path) -> None:
    # GIVEN the synthesized template, ExtractBatch a container image (no Handler, its asset a build
    # context): the local engine runs each of pagemill's functions from the folder the stack names
    _assert_the_engine_runs_extract_batch_from_its_folder(template, tmp_path)


def test_the_local_engine_runs_a_pushed_extract_image_from_its_handler_folder(
    synthesize: Callable[..., Any], tmp_path: Path
) -> None:
    # GIVEN ExtractBatch as an image pushed to ECR: no asset at all in the template
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-extract:v1"
    template = synthesize(tmp_path / "cdk", extract_image_uri=uri).to_json()
    # THEN the local engine still runs it, from lambdas/extract
    _assert_the_engine_runs_extract_batch_from_its_folder(template, tmp_path)


def _assert_the_engine_runs_extract_batch_from_its_folder(template: dict[str, Any], tmp_path: Path) -> None:
    from pagemill_tools.engine.template import load_deployment
    from tests.infrastructure.conftest import ROOT

    path = tmp_path / "Pagemill.template.json"
    path.write_text(json.dumps(template))
    deployment = load_deployment(path, "Pagemill", ROOT)
    for logical_id, resource in of_type(template["Resources"], "AWS::Lambda::Function").items():
        if "pagemill:source" in resource["Metadata"]:
            spec = deployment.functions[logical_id]
            assert spec.handler == handler_of(resource)
            assert spec.source_dir == ROOT / resource["Metadata"]["pagemill:source"]
            assert (spec.source_dir / "handler.py").is_file()
    (extract,) = [spec for spec in deployment.functions.values() if spec.handler == "handler.extract_batch"]
    assert extract.source_dir == ROOT / "lambdas/extract"
    assert (extract.timeout_s, extract.memory_mb) == (300, 3008)
    assert extract.environment["PAGEMILL_MARKDOWN_MODE"] == "legacy"
    # the Map states' items wait behind the one-off states for a local worker (lambda_runtime)
    assert {spec.handler for spec in deployment.functions.values() if spec.map_item} == {
        "handler.extract_batch", "handler.caption_batch"}
