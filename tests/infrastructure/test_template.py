"""The synthesized template: the state machine's failure handling, the bucket, the trigger and
the functions, asserted on the CloudFormation that `cdk deploy` would send."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pagemill
from pagemill.errors import input_error_names, transient_error_names

ROOT = Path(__file__).resolve().parents[2]

# One worker for the module where xdist honours groups; the template fixture is shared either way.
pytestmark = pytest.mark.xdist_group("infrastructure")

INPUT_ERRORS = {"NotAPdf", "EmptyFile", "EncryptedPdf", "MalformedPdf", "NoPages", "PageLimitExceeded", "FileTooLarge"}
WORK_STATES = ("Plan", "ExtractPages", "Write")


def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those inside a Map's ItemProcessor."""
    for name, state in states.items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"]["States"])


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _states(definition["States"]) if s["Type"] == "Task"}


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def _function(resources: dict[str, Any], handler: str) -> dict[str, Any]:
    matches = [
        r for r in _of_type(resources, "AWS::Lambda::Function").values() if r["Properties"]["Handler"] == handler
    ]
    assert len(matches) == 1, f"expected one function with handler {handler}, found {len(matches)}"
    return matches[0]


# --- the state machine ---------------------------------------------------------------------


def test_states_read_like_the_pipeline(definition: dict[str, Any]) -> None:
    # GIVEN the synthesized definition
    states = definition["States"]
    # THEN the happy path is Plan → AlreadyProcessed? → ExtractPages → Write → Done
    assert definition["StartAt"] == "Plan"
    assert states["Plan"]["Next"] == "AlreadyProcessed?"
    choice = states["AlreadyProcessed?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [{"Variable": "$.plan.duplicate", "BooleanEquals": True, "Next": "AlreadyProcessed"}]
    assert choice["Default"] == "ExtractPages"
    assert states["AlreadyProcessed"]["Type"] == "Succeed"
    assert states["ExtractPages"]["Next"] == "Write"
    assert states["Write"]["Next"] == "Done"
    assert states["Done"]["Type"] == "Succeed"
    # AND a failure ends in DocumentFailed with the recorded error and reason
    assert states["RecordFailure"]["Next"] == "DocumentFailed"
    assert states["DocumentFailed"] == {"Type": "Fail", "ErrorPath": "$.recorded.error", "CausePath": "$.recorded.reason"}
    # AND the execution as a whole has a deadline
    assert definition["TimeoutSeconds"] == 120 * 60


def test_every_task_has_a_timeout_and_jittered_backoff(definition: dict[str, Any]) -> None:
    tasks = _tasks(definition)
    assert set(tasks) == {"Plan", "ExtractBatch", "Write", "RecordFailure"}
    for name, task in tasks.items():
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert task.get("TimeoutSeconds", 0) > 0, f"{name} has no TimeoutSeconds"
        assert task["Retry"], f"{name} has no Retry"
        for retry in task["Retry"]:
            assert retry["BackoffRate"] > 1, f"{name}: {retry}"
            assert retry["MaxDelaySeconds"] > 0, f"{name}: {retry}"
            assert retry["JitterStrategy"] == "FULL", f"{name}: {retry}"
            assert retry["MaxAttempts"] >= 1, f"{name}: {retry}"


def test_task_timeouts_leave_room_for_the_function_timeout(
    definition: dict[str, Any], resources: dict[str, Any]
) -> None:
    # A task outlives its function, so a slow invocation fails with Lambda's own Sandbox.Timedout.
    handlers = {"Plan": "handler.plan", "ExtractBatch": "handler.extract_batch", "Write": "handler.write",
                "RecordFailure": "handler.record_failure"}
    for name, task in _tasks(definition).items():
        function_timeout = _function(resources, handlers[name])["Properties"]["Timeout"]
        assert function_timeout < task["TimeoutSeconds"] <= function_timeout + 60, name


def test_retries_never_name_input_errors(definition: dict[str, Any]) -> None:
    for name, task in _tasks(definition).items():
        retried = {e for retry in task["Retry"] for e in retry["ErrorEquals"]}
        assert not retried & INPUT_ERRORS, f"{name} retries deterministic input errors {retried & INPUT_ERRORS}"
        assert "States.ALL" not in retried, f"{name} retries everything"


def _library_errors() -> tuple[set[str], set[str]]:
    """pagemill's (transient, input) error names. The names come from a subclass walk, so every
    errors module of the library is imported first: the answer must not depend on test order."""
    for path in sorted(Path(pagemill.__file__).parent.rglob("errors.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        importlib.import_module(module)
    return set(transient_error_names()), set(input_error_names())


def test_retries_match_the_library_error_classes(definition: dict[str, Any]) -> None:
    # GIVEN pagemill's typed errors (the class name is the Step Functions error name)
    transient, permanent = _library_errors()
    assert INPUT_ERRORS <= permanent
    # THEN every task retries each transient error and no input error
    for name, task in _tasks(definition).items():
        retried = {e for retry in task["Retry"] for e in retry["ErrorEquals"]}
        assert transient <= retried, f"{name} does not retry {transient - retried}"
        assert not retried & permanent, f"{name} retries {retried & permanent}"
    # AND the module constants say the same
    from stacks.state_machine import CRASH_ERRORS, TRANSIENT_ERRORS

    assert transient <= set(TRANSIENT_ERRORS)
    assert not (set(TRANSIENT_ERRORS) | set(CRASH_ERRORS)) & permanent


def test_work_states_catch_everything_into_record_failure(definition: dict[str, Any]) -> None:
    states = definition["States"]
    for name in WORK_STATES:
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": f"$.failed.{name}", "Next": "RecordFailure"}
        ], name
    # RecordFailure itself must not loop back into itself
    assert "Catch" not in states["RecordFailure"]


def test_extract_pages_is_a_distributed_map_over_the_manifest(definition: dict[str, Any]) -> None:
    extract_pages = definition["States"]["ExtractPages"]
    assert extract_pages["Type"] == "Map"
    assert extract_pages["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert extract_pages["ItemProcessor"]["StartAt"] == "ExtractBatch"
    reader = extract_pages["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"]["InputType"] == "JSON"
    assert reader["Parameters"]["Key.$"] == "$.plan.manifest_key"
    assert reader["Parameters"]["Bucket"].startswith("<Storage")
    assert extract_pages["MaxConcurrency"] == 40
    # the map's results stay in S3: nothing large travels in the state
    assert extract_pages["ResultPath"] is None
    assert extract_pages["ItemProcessor"]["States"]["ExtractBatch"]["Parameters"]["Payload.$"] == "$"


def test_payloads_pass_keys_not_data(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["Plan"]["Parameters"]["Payload"] == {"source.$": "$.source", "execution_arn.$": "$$.Execution.Id"}
    assert states["Plan"]["ResultPath"] == "$.plan"
    assert set(states["Plan"]["ResultSelector"]) == {
        "document_id.$", "page_count.$", "batch_count.$", "manifest_key.$", "duplicate.$"
    }
    assert states["Write"]["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id",
        "manifest_key.$": "$.plan.manifest_key",
        "execution_arn.$": "$$.Execution.Id",
        "started_at.$": "$$.Execution.StartTime",
    }
    assert states["Write"]["ResultPath"] == "$.written"
    assert states["RecordFailure"]["Parameters"]["Payload"] == {"state.$": "$", "execution_arn.$": "$$.Execution.Id"}
    assert states["RecordFailure"]["ResultPath"] == "$.recorded"


def test_state_machine_is_standard_traced_and_logged(resources: dict[str, Any]) -> None:
    (machine,) = _of_type(resources, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] in ("ALL", "ERROR")
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True


def test_state_machine_reads_only_manifests_from_the_bucket(resources: dict[str, Any]) -> None:
    (machine,) = _of_type(resources, "AWS::StepFunctions::StateMachine").values()
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for policy in _of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    s3_resources = [json.dumps(s["Resource"]) for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert s3_resources and all('"/documents/*"' in r for r in s3_resources), s3_resources
    assert any("states:StartExecution" in _actions(s) for s in statements)  # the map's child executions


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


# --- storage and trigger -------------------------------------------------------------------


def test_bucket_is_private_encrypted_versioned_and_tls_only(resources: dict[str, Any]) -> None:
    (bucket,) = _of_type(resources, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "SSEAlgorithm"
    ] in ("AES256", "aws:kms")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True
    }
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert bucket["DeletionPolicy"] == "Retain"
    (policy,) = _of_type(resources, "AWS::S3::BucketPolicy").values()
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )


def test_uploaded_pdfs_trigger_the_pipeline(resources: dict[str, Any]) -> None:
    (rule,) = _of_type(resources, "AWS::Events::Rule").values()
    (bucket_id,) = _of_type(resources, "AWS::S3::Bucket")
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
    (queue,) = _of_type(resources, "AWS::SQS::Queue").values()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    # AND the trigger knows which state machine to start
    (machine_id,) = _of_type(resources, "AWS::StepFunctions::StateMachine")
    assert resources[trigger_id]["Properties"]["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": machine_id}


# --- functions -----------------------------------------------------------------------------

FUNCTIONS = {
    # handler: (source folder, timeout s, memory MB)
    "handler.plan": ("lambdas/extract", 300, 2048),
    "handler.extract_batch": ("lambdas/extract", 300, 3008),
    "handler.write": ("lambdas/write", 300, 1024),
    "handler.record_failure": ("lambdas/write", 60, 512),
    "handler.handler": ("lambdas/trigger", 30, 256),
}


def test_functions_are_python312_x86_with_timeouts_and_tracing(resources: dict[str, Any]) -> None:
    assert len(_of_type(resources, "AWS::Lambda::Function")) == len(FUNCTIONS)
    for handler, (source, timeout, memory) in FUNCTIONS.items():
        props = _function(resources, handler)["Properties"]
        assert props["Runtime"] == "python3.12", handler
        assert props["Architectures"] == ["x86_64"], handler
        assert (props["Timeout"], props["MemorySize"]) == (timeout, memory), handler
        assert props["TracingConfig"] == {"Mode": "Active"}, handler
        assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "pagemill", handler
        assert "LogGroup" in props["LoggingConfig"], handler
    assert _function(resources, "handler.extract_batch")["Properties"]["EphemeralStorage"] == {"Size": 2048}
    for group in _of_type(resources, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 30


def test_pipeline_functions_get_their_settings(resources: dict[str, Any]) -> None:
    (bucket_id,) = _of_type(resources, "AWS::S3::Bucket")
    for handler in ("handler.plan", "handler.extract_batch", "handler.write", "handler.record_failure"):
        variables = _function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables["PAGEMILL_WORK_BUCKET"] == {"Ref": bucket_id}
        assert variables["PAGEMILL_BATCH_PAGES"] == "25"
        assert variables["PAGEMILL_MAX_PAGES"] == "10000"
        assert variables["PAGEMILL_MAX_BYTES"] == "536870912"
        assert variables["PAGEMILL_MARKDOWN_MODE"] == "legacy"
        assert "DATABASE_SECRET_ARN" not in variables  # none configured in cdk.json


def test_each_function_names_its_handler_folder(resources: dict[str, Any]) -> None:
    # With bundling skipped, the asset path is the handler folder itself; pagemill:source names
    # it relative to the repository root (what a local runner uses).
    for handler, (source, _, _) in FUNCTIONS.items():
        metadata = _function(resources, handler)["Metadata"]
        assert metadata["pagemill:source"] == source
        assert Path(metadata["aws:asset:path"]) == ROOT / source
        assert (ROOT / source / "handler.py").is_file()


def test_functions_get_least_privilege_bucket_access(resources: dict[str, Any]) -> None:
    def s3_grants(handler: str) -> dict[str, set[str]]:
        role_id = _function(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
        grants: dict[str, set[str]] = {}
        for policy in _of_type(resources, "AWS::IAM::Policy").values():
            if {"Ref": role_id} not in policy["Properties"]["Roles"]:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = [a for a in _actions(statement) if a.startswith("s3:")]
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                for target in targets:
                    text = json.dumps(target)
                    prefix = next((p for p in ("/uploads/*", "/documents/*") if p in text), None)
                    if prefix:
                        grants.setdefault(prefix, set()).update(actions)
        return grants

    plan = s3_grants("handler.plan")
    assert "s3:GetObject*" in plan["/uploads/*"] and "s3:PutObject" in plan["/documents/*"]
    extract = s3_grants("handler.extract_batch")
    assert "s3:GetObject*" in extract["/uploads/*"] and "s3:PutObject" in extract["/documents/*"]
    write = s3_grants("handler.write")
    assert set(write) == {"/documents/*"} and "s3:PutObject" not in write["/documents/*"]
    record = s3_grants("handler.record_failure")
    assert set(record) == {"/uploads/*"} and "s3:PutObject" not in record["/uploads/*"]
    assert s3_grants("handler.handler") == {}


def test_skipped_bundling_runs_no_pip(synthesize: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bundler that fails if it is ever asked to bundle
    from stacks import functions

    def refuse(self: Any, output_dir: str, options: Any) -> bool:
        raise AssertionError(f"pip ran for {self.source} although bundling was skipped")

    monkeypatch.setattr(functions.LocalPythonBundler, "try_bundle", refuse)
    # WHEN the stack is synthesized with "aws:cdk:bundling-stacks": [] (what synthesize does)
    synthesize(tmp_path)
    # THEN nothing was bundled or staged into the assembly
    assert not list(tmp_path.glob("asset.*"))


def test_database_secret_reaches_only_the_database_functions(synthesize: Any, tmp_path: Path) -> None:
    # GIVEN a configured database secret
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pagemill/db-AbCdEf"
    resources = synthesize(tmp_path, database_secret_arn=arn).to_json()["Resources"]
    # THEN Plan, Write and RecordFailure get it and may read it; ExtractBatch and the trigger do not
    for handler in FUNCTIONS:
        function = _function(resources, handler)
        has_secret = function["Properties"]["Environment"]["Variables"].get("DATABASE_SECRET_ARN") == arn
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        may_read = any(
            "secretsmanager:GetSecretValue" in _actions(s) and arn in s["Resource"]
            for policy in _of_type(resources, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
        expected = handler in ("handler.plan", "handler.write", "handler.record_failure")
        assert (has_secret, may_read) == (expected, expected), handler


# --- the whole template ----------------------------------------------------------------------


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



# --- configuration ---------------------------------------------------------------------------


class _Context:
    def __init__(self, **values: Any) -> None:
        self.values = values

    def try_get_context(self, key: str) -> Any:
        return self.values.get(key)


def test_config_reads_context_with_defaults_and_cli_strings() -> None:
    from stacks.config import PipelineConfig

    assert PipelineConfig.from_context(_Context()) == PipelineConfig()
    # `cdk synth -c batch_pages=10` passes strings
    config = PipelineConfig.from_context(_Context(batch_pages="10", map_concurrency=5, markdown_mode="layout"))
    assert (config.batch_pages, config.map_concurrency, config.markdown_mode) == (10, 5, "layout")


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"batch_pages": 0}, "'batch_pages' must be at least 1"),
        ({"batch_pages": "ten"}, "'batch_pages' must be an integer"),
        ({"map_concurrency": 10_001}, "'map_concurrency' must be between 1 and 10000"),
        ({"markdown_mode": "fancy"}, "'markdown_mode' must be one of"),
        ({"log_retention_days": 31}, "'log_retention_days' must be one of"),
        ({"database_secret_arn": "pagemill/db"}, "'database_secret_arn' must be the ARN"),
        ({"execution_timeout_minutes": 0}, "'execution_timeout_minutes' must be between"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(context: dict[str, Any], message: str) -> None:
    from stacks.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        PipelineConfig.from_context(_Context(**context))
