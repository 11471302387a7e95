"""The synthesized template: the state machine's failure handling, the bucket, the trigger and
the functions, asserted on the CloudFormation that `cdk deploy` would send."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pagemill
from pagemill.errors import input_error_names, transient_error_names
from tests.infrastructure.queries import Context, of_type, role_statements

ROOT = Path(__file__).resolve().parents[2]

# One worker for the module where xdist honours groups; the template fixture is shared either way.
pytestmark = pytest.mark.xdist_group("infrastructure")

INPUT_ERRORS = {"NotAPdf", "EmptyFile", "EncryptedPdf", "MalformedPdf", "NoPages", "PageLimitExceeded", "FileTooLarge"}
WORK_STATES = ("Plan", "ExtractPages", "CollectImages", "Enrich", "Write")
# The Lambda tasks and their functions' handlers.
LAMBDA_TASKS = {
    "Plan": "handler.plan",
    "ExtractBatch": "handler.extract_batch",
    "CollectImages": "handler.collect_images",
    "EmbedOnLambda": "handler.embed",
    "CaptionBatch": "handler.caption_batch",
    "UnderstandDocument": "handler.understand",
    "EmbedChunks": "handler.embed_chunks",
    "Write": "handler.write",
    "RecordFailure": "handler.record_failure",
}
GPU_RUN_TASK = "arn:aws:states:::ecs:runTask.waitForTaskToken"


def _states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those inside a Map's ItemProcessor and a Parallel's branches."""
    for name, state in states.items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"]["States"])
        for branch in state.get("Branches", []):
            yield from _states(branch["States"])


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _states(definition["States"]) if s["Type"] == "Task"}


def _pagemill_functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """pagemill's own functions (not CDK's custom-resource provider), by their source metadata."""
    return {
        k: v for k, v in of_type(resources, "AWS::Lambda::Function").items() if "pagemill:source" in v["Metadata"]
    }


def _function(resources: dict[str, Any], handler: str) -> dict[str, Any]:
    matches = [
        r for r in of_type(resources, "AWS::Lambda::Function").values() if r["Properties"]["Handler"] == handler
    ]
    assert len(matches) == 1, f"expected one function with handler {handler}, found {len(matches)}"
    return matches[0]


# --- the state machine ---------------------------------------------------------------------


def test_states_read_like_the_pipeline(definition: dict[str, Any]) -> None:
    # GIVEN the synthesized definition
    states = definition["States"]
    # THEN the happy path is Plan → AlreadyProcessed? → ExtractPages → CollectImages → Enrich → Write → Done
    assert definition["StartAt"] == "Plan"
    assert states["Plan"]["Next"] == "AlreadyProcessed?"
    choice = states["AlreadyProcessed?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [{"Variable": "$.plan.duplicate", "BooleanEquals": True, "Next": "AlreadyProcessed"}]
    assert choice["Default"] == "ExtractPages"
    assert states["AlreadyProcessed"]["Type"] == "Succeed"
    assert states["ExtractPages"]["Next"] == "CollectImages"
    assert states["CollectImages"]["Next"] == "Enrich"
    assert states["Enrich"]["Next"] == "Write"
    assert states["Write"]["Next"] == "Done"
    assert states["Done"]["Type"] == "Succeed"
    # AND a failure ends in DocumentFailed with the recorded error and reason
    assert states["RecordFailure"]["Next"] == "DocumentFailed"
    assert states["DocumentFailed"] == {"Type": "Fail", "ErrorPath": "$.recorded.error", "CausePath": "$.recorded.reason"}
    # AND the execution as a whole has a deadline
    assert definition["TimeoutSeconds"] == 120 * 60


def test_every_task_has_a_timeout_and_jittered_backoff(definition: dict[str, Any]) -> None:
    tasks = _tasks(definition)
    assert set(tasks) == {*LAMBDA_TASKS, "EmbedOnGpu"}
    for name, task in tasks.items():
        expected = GPU_RUN_TASK if name == "EmbedOnGpu" else "arn:aws:states:::lambda:invoke"
        assert task["Resource"] == expected, name
        assert task.get("TimeoutSeconds", 0) > 0, f"{name} has no TimeoutSeconds"
        if task["Resource"].endswith(".waitForTaskToken"):
            assert 0 < task.get("HeartbeatSeconds", 0) < task["TimeoutSeconds"], f"{name}: a callback needs heartbeats"
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
    for name, handler in LAMBDA_TASKS.items():
        task = _tasks(definition)[name]
        function_timeout = _function(resources, handler)["Properties"]["Timeout"]
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
    from stacks.state_machine import (
        CRASH_ERRORS,
        LIBRARY_TRANSIENT_ERRORS,
        TRANSIENT_ERRORS,
    )

    assert transient <= set(TRANSIENT_ERRORS)
    assert set(LIBRARY_TRANSIENT_ERRORS) == transient
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
        "embeddings_index_key.$": "$.enrich.embeddings.index_key",
        "captions.$": "$.enrich.captions",
        "understanding.$": "$.enrich.understanding",
        "chunk_vectors.$": "$.enrich.chunk_vectors",
        "execution_arn.$": "$$.Execution.Id",
        "started_at.$": "$$.Execution.StartTime",
    }
    assert states["Write"]["ResultPath"] == "$.written"
    assert states["CollectImages"]["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "manifest_key.$": "$.plan.manifest_key"
    }
    assert states["CollectImages"]["ResultSelector"] == {
        "image_count.$": "$.Payload.image_count",
        "images_key.$": "$.Payload.images_key",
        "embed_on.$": "$.Payload.embed_on",
        "caption_on.$": "$.Payload.caption_on",
        "caption_batches_key.$": "$.Payload.caption_batches_key",
        "captions_prefix.$": "$.Payload.captions_prefix",
        "understand_on.$": "$.Payload.understand_on",
    }
    assert states["CollectImages"]["ResultPath"] == "$.images"
    assert states["RecordFailure"]["Parameters"]["Payload"] == {"state.$": "$", "execution_arn.$": "$$.Execution.Id"}
    assert states["RecordFailure"]["ResultPath"] == "$.recorded"


def test_state_machine_is_standard_traced_and_logged(resources: dict[str, Any]) -> None:
    (machine,) = of_type(resources, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] in ("ALL", "ERROR")
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True


def test_state_machine_reads_only_manifests_from_the_bucket(resources: dict[str, Any]) -> None:
    (machine,) = of_type(resources, "AWS::StepFunctions::StateMachine").values()
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    s3_resources = [json.dumps(s["Resource"]) for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert s3_resources and all('"/documents/*"' in r for r in s3_resources), s3_resources
    assert any("states:StartExecution" in _actions(s) for s in statements)  # the map's child executions


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_enrich_is_a_parallel_that_routes_images_three_ways(definition: dict[str, Any]) -> None:
    enrich = definition["States"]["Enrich"]
    assert enrich["Type"] == "Parallel"
    # its first branch picks where the images are embedded (captions and understanding beside it)
    branch = enrich["Branches"][0]
    assert branch["StartAt"] == "HowToEmbed?"
    states = branch["States"]
    choice = states["HowToEmbed?"]
    assert choice["Type"] == "Choice"
    routes = {c["StringEquals"]: c["Next"] for c in choice["Choices"]}
    assert {c["Variable"] for c in choice["Choices"]} == {"$.images.embed_on"}
    assert routes == {"none": "NoImagesToEmbed", "lambda": "EmbedOnLambda", "gpu": "EmbedOnGpu"}
    # every route ends with {"index_key", "count"}; no images is an index_key of null
    assert states["NoImagesToEmbed"]["Type"] == "Pass"
    assert states["NoImagesToEmbed"]["Parameters"] == {"index_key.$": "States.StringToJson('null')", "count": 0}
    for name in ("EmbedOnLambda", "EmbedOnGpu"):
        assert set(states[name]["ResultSelector"]) == {"index_key.$", "count.$"}, name
        assert states[name]["End"] is True, name
    assert states["EmbedOnLambda"]["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "images_key.$": "$.images.images_key"
    }
    assert states["EmbedOnLambda"]["ResultSelector"] == {
        "index_key.$": "$.Payload.index_key", "count.$": "$.Payload.count"
    }
    # AND the Parallel's result has each branch's under $.enrich
    assert enrich["ResultSelector"] == {
        "embeddings.$": "$[0]", "captions.$": "$[1]", "understanding.$": "$[2]", "chunk_vectors.$": "$[3]"
    }
    assert enrich["ResultPath"] == "$.enrich"


def test_captions_branch_maps_batches_and_never_fails_the_document(definition: dict[str, Any]) -> None:
    branch = definition["States"]["Enrich"]["Branches"][1]
    assert branch["StartAt"] == "HowToCaption?"
    states = branch["States"]
    choice = states["HowToCaption?"]
    assert {c["Variable"] for c in choice["Choices"]} == {"$.images.caption_on"}
    assert {c["StringEquals"]: c["Next"] for c in choice["Choices"]} == {"none": "NoCaptions", "map": "CaptionImages"}
    # a Distributed Map over the batch list CollectImages wrote, as wide as configured
    caption_images = states["CaptionImages"]
    assert caption_images["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert caption_images["ItemReader"]["Parameters"]["Key.$"] == "$.images.caption_batches_key"
    assert caption_images["MaxConcurrency"] == 4
    assert caption_images["ItemProcessor"]["States"]["CaptionBatch"]["Parameters"]["Payload.$"] == "$"
    # a failed batch is tolerated, a failed map is caught: both become skips that Write records
    assert caption_images["ToleratedFailurePercentage"] == 100
    assert caption_images["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.captions_failed", "Next": "CaptionsFailed"}
    ]
    assert states["CaptionsFailed"]["Parameters"] == {
        "prefix.$": "$.images.captions_prefix", "error.$": "$.captions_failed.Error"
    }
    assert caption_images["Next"] == "CaptionsDone"
    assert states["NoCaptions"]["Parameters"] == {
        "prefix.$": "States.StringToJson('null')", "error.$": "States.StringToJson('null')"
    }


def test_understanding_branch_catches_into_a_skip(definition: dict[str, Any]) -> None:
    branch = definition["States"]["Enrich"]["Branches"][2]
    states = branch["States"]
    assert {c["StringEquals"]: c["Next"] for c in states["HowToUnderstand?"]["Choices"]} == {
        "none": "NoUnderstanding", "lambda": "UnderstandDocument"
    }
    understand = states["UnderstandDocument"]
    assert understand["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "manifest_key.$": "$.plan.manifest_key"
    }
    assert understand["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.understanding_failed", "Next": "UnderstandingFailed"}
    ]


def test_chunk_vectors_branch_never_fails_the_document_and_reaches_write(definition: dict[str, Any]) -> None:
    branch = definition["States"]["Enrich"]["Branches"][3]
    states = branch["States"]
    assert branch["StartAt"] == "EmbedChunks"
    embed_chunks = states["EmbedChunks"]
    assert embed_chunks["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "manifest_key.$": "$.plan.manifest_key"
    }
    assert set(embed_chunks["ResultSelector"]) == {"key.$", "model.$", "chunks.$", "error.$"}
    assert embed_chunks["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.chunk_vectors_failed", "Next": "ChunkVectorsFailed"}
    ]
    assert states["ChunkVectorsFailed"]["Parameters"]["error.$"] == "$.chunk_vectors_failed.Error"
    assert definition["States"]["Write"]["Parameters"]["Payload"]["chunk_vectors.$"] == "$.enrich.chunk_vectors"


def test_embed_chunks_may_invoke_only_the_titan_model(resources: dict[str, Any]) -> None:
    function = _function(resources, "handler.embed_chunks")
    variables = function["Properties"]["Environment"]["Variables"]
    assert (variables["PAGEMILL_TEXT_EMBEDDER"], variables["PAGEMILL_TITAN_DIMENSIONS"]) == ("titan", "1024")
    statements = role_statements(resources, function["Properties"]["Role"]["Fn::GetAtt"][0])
    bedrock = [s for s in statements if any(a.startswith("bedrock:") for a in _actions(s))]
    assert [_actions(s) for s in bedrock] == [["bedrock:InvokeModel"]]
    assert json.dumps(bedrock[0]["Resource"]).endswith(
        '"::foundation-model/amazon.titan-embed-text-v2:0"]]}'
    ), bedrock[0]["Resource"]
    assert _put_targets(resources, "handler.embed_chunks") == ["/documents/*/chunk-vectors.npy"]
    # No other function may call Bedrock with the default (anthropic) caption provider.
    for handler in FUNCTIONS:
        if handler != "handler.embed_chunks":
            role = _function(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
            assert not any(a.startswith("bedrock:") for s in role_statements(resources, role) for a in _actions(s))


def test_chunk_embeddings_off_leave_no_state_and_no_function(synthesize: Any, tmp_path: Path) -> None:
    from tests.infrastructure.conftest import definition_of

    template = synthesize(tmp_path, text_embedder="off").to_json()
    definition = definition_of(template)
    assert len(definition["States"]["Enrich"]["Branches"]) == 3
    assert "chunk_vectors.$" not in definition["States"]["Write"]["Parameters"]["Payload"]
    handlers = {f["Properties"]["Handler"] for f in of_type(template["Resources"], "AWS::Lambda::Function").values()}
    assert "handler.embed_chunks" not in handlers


def test_text_embedders_match_the_library() -> None:
    from pagemill.settings import TEXT_EMBEDDERS as LIBRARY
    from stacks.config import TEXT_EMBEDDERS

    assert set(TEXT_EMBEDDERS) <= set(LIBRARY)


def test_caption_functions_share_a_table_and_read_the_key_secret(resources: dict[str, Any]) -> None:
    (table_id, table), = of_type(resources, "AWS::DynamoDB::GlobalTable").items()
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # the stack's names are the library's (infrastructure does not import it)
    from pagemill.captions import breaker, budget
    from stacks import captions

    assert (captions.TABLE_KEY, captions.TTL_ATTRIBUTE) == (breaker.TABLE_KEY, budget.TTL_ATTRIBUTE)
    (secret_id,) = [k for k in of_type(resources, "AWS::SecretsManager::Secret") if k.startswith("Captions")]
    for handler in ("handler.caption_batch", "handler.understand"):
        env = _function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert env["PAGEMILL_CAPTIONS_TABLE"] == {"Ref": table_id}
        assert env["ANTHROPIC_SECRET_ARN"] == {"Ref": secret_id}
        assert env["PAGEMILL_CAPTION_MODEL"] == "claude-sonnet-4-5"
    collect = _function(resources, "handler.collect_images")["Properties"]["Environment"]["Variables"]
    assert collect["PAGEMILL_CAPTION_PROVIDER"] == "anthropic"
    assert collect["PAGEMILL_CAPTION_BATCH_SIZE"] == "5"


def test_caption_providers_match_the_library() -> None:
    from pagemill.settings import CAPTION_PROVIDERS as LIBRARY
    from stacks.config import CAPTION_PROVIDERS

    assert CAPTION_PROVIDERS == LIBRARY


def _embed_on_gpu(definition: dict[str, Any]) -> dict[str, Any]:
    return _tasks(definition)["EmbedOnGpu"]


def test_embed_on_gpu_runs_the_task_and_waits_for_its_token(definition: dict[str, Any]) -> None:
    task = _embed_on_gpu(definition)
    assert task["Resource"] == GPU_RUN_TASK
    assert task["TimeoutSeconds"] == 3600
    assert 60 <= task["HeartbeatSeconds"] < task["TimeoutSeconds"]
    params = task["Parameters"]
    assert params["Cluster"].startswith("<GpuCluster") and params["Cluster"].endswith(".Arn>")
    assert params["TaskDefinition"]
    # on the GPU capacity provider (which scales the group from zero), never a bare launch type
    (strategy,) = params["CapacityProviderStrategy"]
    assert strategy["CapacityProvider"].startswith("<GpuCapacityProvider")
    assert strategy["Weight"] == 1
    assert "LaunchType" not in params
    # the worker gets the task token and where to read and write, as container overrides
    (override,) = params["Overrides"]["ContainerOverrides"]
    assert override["Name"] == "clip"
    environment = {e["Name"]: e.get("Value.$", e.get("Value")) for e in override["Environment"]}
    assert environment == {
        "TASK_TOKEN": "$$.Task.Token",
        "IMAGES_BUCKET": environment["IMAGES_BUCKET"],
        "IMAGES_KEY": "$.images.images_key",
        "OUT_PREFIX": "States.Format('documents/{}/embeddings/', $.plan.document_id)",
    }
    assert environment["IMAGES_BUCKET"].startswith("<StorageBucket")
    assert task["ResultSelector"] == {"index_key.$": "$.index_key", "count.$": "$.count"}


def test_embed_on_gpu_retries_a_silent_or_interrupted_worker_but_not_its_defects(definition: dict[str, Any]) -> None:
    task = _embed_on_gpu(definition)
    retries = {e: r for r in task["Retry"] for e in r["ErrorEquals"]}
    # a missed heartbeat: States.HeartbeatTimeout on AWS, States.Timeout in moto
    for error in ("States.HeartbeatTimeout", "States.Timeout", "WorkerInterrupted", "ECS.AmazonECSException"):
        assert error in retries, error
        assert retries[error]["JitterStrategy"] == "FULL", error
        assert retries[error]["MaxDelaySeconds"] > 0, error
    assert retries["ECS.AmazonECSException"]["IntervalSeconds"] >= 30  # capacity takes a while to appear
    # the worker's permanent failures (its error class names) are not retried
    for error in ("ClipModelError", "WorkerMisconfigured", "States.TaskFailed", "States.ALL"):
        assert error not in retries, error
    # the worker beats several times within HeartbeatSeconds
    assert task["HeartbeatSeconds"] >= 3 * 20
    assert "Catch" not in task  # Enrich catches for the branch


def test_enrich_failures_are_recorded(definition: dict[str, Any]) -> None:
    assert definition["States"]["Enrich"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failed.Enrich", "Next": "RecordFailure"}
    ]
    for name, state in _states(definition["States"]["Enrich"]["Branches"][0]["States"]):
        assert "Catch" not in state, name


def test_state_machine_may_run_the_gpu_task_and_pass_only_its_roles(resources: dict[str, Any]) -> None:
    (machine,) = of_type(resources, "AWS::StepFunctions::StateMachine").values()
    statements = role_statements(resources, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    (task_definition_id,) = of_type(resources, "AWS::ECS::TaskDefinition")
    task_definition = resources[task_definition_id]["Properties"]
    run = [s for s in statements if "ecs:RunTask" in _actions(s)]
    assert run and all(json.dumps(s["Resource"]).count(task_definition_id) >= 1 for s in run), run
    (pass_role,) = [s for s in statements if "iam:PassRole" in _actions(s)]
    assert sorted(pass_role["Resource"], key=json.dumps) == sorted(
        [task_definition["TaskRoleArn"], task_definition["ExecutionRoleArn"]], key=json.dumps
    )


# --- storage and trigger -------------------------------------------------------------------


def test_bucket_is_private_encrypted_versioned_and_tls_only(resources: dict[str, Any]) -> None:
    (bucket,) = of_type(resources, "AWS::S3::Bucket").values()
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
    (policy,) = of_type(resources, "AWS::S3::BucketPolicy").values()
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )


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
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    assert resources[trigger_id]["Properties"]["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": machine_id}


# --- functions -----------------------------------------------------------------------------

FUNCTIONS = {
    # handler: (source folder, timeout s, memory MB)
    "handler.plan": ("lambdas/extract", 300, 2048),
    "handler.extract_batch": ("lambdas/extract", 300, 3008),
    "handler.write": ("lambdas/write", 300, 1024),
    "handler.record_failure": ("lambdas/write", 60, 512),
    "handler.settle": ("lambdas/write", 60, 512),
    "handler.collect_images": ("lambdas/embed", 120, 1024),
    "handler.embed": ("lambdas/embed", 900, 3008),
    "handler.caption_batch": ("lambdas/caption", 300, 1024),
    "handler.understand": ("lambdas/caption", 300, 1024),
    "handler.embed_chunks": ("lambdas/embed", 900, 1024),
    "handler.handler": ("lambdas/trigger", 30, 256),
    "handler.watch": ("lambdas/trigger", 60, 256),
    "handler.on_event": ("lambdas/migrate", 900, 512),
}
DATABASE_HANDLERS = ("handler.plan", "handler.write", "handler.record_failure", "handler.settle", "handler.on_event")
PIPELINE_HANDLERS = (
    "handler.plan", "handler.extract_batch", "handler.collect_images", "handler.embed", "handler.caption_batch",
    "handler.understand", "handler.embed_chunks", "handler.write", "handler.record_failure",
)


def test_functions_are_python312_x86_with_timeouts_and_tracing(resources: dict[str, Any]) -> None:
    assert len(_pagemill_functions(resources)) == len(FUNCTIONS)
    for handler, (source, timeout, memory) in FUNCTIONS.items():
        props = _function(resources, handler)["Properties"]
        assert props["Runtime"] == "python3.12", handler
        assert props["Architectures"] == ["x86_64"], handler
        assert (props["Timeout"], props["MemorySize"]) == (timeout, memory), handler
        assert props["TracingConfig"] == {"Mode": "Active"}, handler
        assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "pagemill", handler
        assert "LogGroup" in props["LoggingConfig"], handler
    assert _function(resources, "handler.extract_batch")["Properties"]["EphemeralStorage"] == {"Size": 2048}
    assert _function(resources, "handler.embed")["Properties"]["EphemeralStorage"] == {"Size": 4096}
    for group in of_type(resources, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 30


def test_pipeline_functions_get_their_settings(resources: dict[str, Any]) -> None:
    (bucket_id,) = of_type(resources, "AWS::S3::Bucket")
    for handler in PIPELINE_HANDLERS:
        variables = _function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables["PAGEMILL_WORK_BUCKET"] == {"Ref": bucket_id}
        assert variables["PAGEMILL_BATCH_PAGES"] == "25"
        assert variables["PAGEMILL_MAX_PAGES"] == "10000"
        assert variables["PAGEMILL_MAX_BYTES"] == "536870912"
        assert variables["PAGEMILL_MARKDOWN_MODE"] == "legacy"
        assert ("DATABASE_SECRET_ARN" in variables) == (handler in DATABASE_HANDLERS)  # the stack's database
    # AND the image stages know where documents go to be embedded, and Embed where its model is
    for handler in ("handler.collect_images", "handler.embed"):
        variables = _function(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables["PAGEMILL_GPU_MIN_IMAGES"] == "200", handler
    variables = _function(resources, "handler.embed")["Properties"]["Environment"]["Variables"]
    assert variables["PAGEMILL_CLIP_DIR"] == "/tmp/clip"
    assert "PAGEMILL_CLIP_S3_URI" not in variables  # none configured in cdk.json


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
        for policy in of_type(resources, "AWS::IAM::Policy").values():
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
    # CollectImages writes only the image and caption batch lists, Embed only embeddings, the
    # caption functions only their answers
    collect = s3_grants("handler.collect_images")
    assert set(collect) == {"/documents/*"} and "s3:GetObject*" in collect["/documents/*"]
    embed = s3_grants("handler.embed")
    assert set(embed) == {"/documents/*"} and "s3:GetObject*" in embed["/documents/*"]
    assert sorted(_put_targets(resources, "handler.collect_images")) == [
        "/documents/*/caption-batches.json", "/documents/*/images.json"
    ]
    assert _put_targets(resources, "handler.embed") == ["/documents/*/embeddings/*"]
    assert _put_targets(resources, "handler.caption_batch") == ["/documents/*/captions/*"]
    assert _put_targets(resources, "handler.understand") == ["/documents/*/understanding.json"]


def _object_suffixes(statement: dict[str, Any]) -> list[str]:
    """The object part of each bucket-ARN Fn::Join in a statement's Resource."""
    targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [t["Fn::Join"][1][-1] for t in targets if isinstance(t, dict) and "Fn::Join" in t]


def _put_targets(resources: dict[str, Any], handler: str) -> list[str]:
    role_id = _function(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
    return sorted(
        suffix
        for s in role_statements(resources, role_id)
        if "s3:PutObject" in _actions(s)
        for suffix in _object_suffixes(s)
    )


def test_skipped_bundling_runs_no_pip(synthesize: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bundler that fails if it is ever asked to bundle
    from stacks import functions

    def refuse(self: Any, output_dir: str, options: Any) -> bool:
        raise AssertionError(f"pip ran for {self.source} although bundling was skipped")

    monkeypatch.setattr(functions.LocalPythonBundler, "try_bundle", refuse)
    # WHEN the stack is synthesized with "aws:cdk:bundling-stacks": [] (what synthesize does)
    synthesize(tmp_path)
    # THEN no Lambda bundle was staged into the assembly: the staged assets are the GPU image's
    # build context, copied (not built) at synth, holding only what the Dockerfile copies, and
    # CDK's own prebuilt custom-resource provider code
    assets = json.loads((tmp_path / "Pagemill.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    staged = tmp_path / image["source"]["directory"]
    for other in set(tmp_path.glob("asset.*")) - {staged}:
        assert not (other / "pagemill").exists() and not (other / "handler.py").exists(), other
    assert image["source"]["dockerFile"] == "containers/clip-gpu/Dockerfile"
    assert image["source"]["platform"] == "linux/amd64"
    assert sorted(p.name for p in staged.iterdir()) == ["containers", "pagemill"]
    assert sorted(p.name for p in (staged / "containers").iterdir()) == ["clip-gpu"]
    assert (staged / "pagemill" / "clip" / "embed.py").is_file()
    assert not list(staged.rglob("__pycache__"))


def test_database_secret_reaches_only_the_database_functions(synthesize: Any, tmp_path: Path) -> None:
    # GIVEN a configured database secret
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pagemill/db-AbCdEf"
    resources = synthesize(tmp_path, database_secret_arn=arn).to_json()["Resources"]
    # THEN Plan, Write, RecordFailure, Settle and the migration get it and may read it; ExtractBatch and
    # the trigger do not
    for handler in FUNCTIONS:
        function = _function(resources, handler)
        has_secret = function["Properties"]["Environment"]["Variables"].get("DATABASE_SECRET_ARN") == arn
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        may_read = any(
            "secretsmanager:GetSecretValue" in _actions(s) and arn in s["Resource"]
            for policy in of_type(resources, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
        expected = handler in DATABASE_HANDLERS
        assert (has_secret, may_read) == (expected, expected), handler


def test_stopped_or_timed_out_executions_settle_their_documents(resources: dict[str, Any]) -> None:
    # They end without their Catch, so RecordFailure never runs: a rule hands them to Settle
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    (dlq_id,) = of_type(resources, "AWS::SQS::Queue")
    settle_id = next(i for i, f in of_type(resources, "AWS::Lambda::Function").items()
                     if f["Properties"]["Handler"] == "handler.settle")
    (rule,) = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
               if r["Properties"].get("Targets", [{}])[0].get("Arn") == {"Fn::GetAtt": [settle_id, "Arn"]}]
    assert rule["EventPattern"]["detail"] == {
        "stateMachineArn": [{"Ref": machine_id}], "status": ["ABORTED", "TIMED_OUT"],
    }
    target = rule["Targets"][0]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 8


# --- the GPU embedding service ----------------------------------------------------------------


def _the(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = of_type(resources, kind).values()
    return resource["Properties"]


def test_gpu_group_scales_from_zero_through_the_capacity_provider(resources: dict[str, Any]) -> None:
    group = _the(resources, "AWS::AutoScaling::AutoScalingGroup")
    assert (group["MinSize"], group["MaxSize"]) == ("0", "2")
    assert "DesiredCapacity" not in group  # managed scaling owns it
    assert group["NewInstancesProtectedFromScaleIn"] is True  # what managed termination protection needs
    provider = _the(resources, "AWS::ECS::CapacityProvider")["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedScaling"]["TargetCapacity"] == 100
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    # AND the cluster uses it, with Container Insights
    (provider_id,) = of_type(resources, "AWS::ECS::CapacityProvider")
    assert {"Ref": provider_id} in _the(resources, "AWS::ECS::ClusterCapacityProviderAssociations")["CapacityProviders"]
    assert {"Name": "containerInsights", "Value": "enabled"} in _the(resources, "AWS::ECS::Cluster")["ClusterSettings"]


def test_gpu_instances_are_gpu_amis_with_imdsv2_and_an_encrypted_root(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    data = _the(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert data["InstanceType"] == "g5.xlarge"
    image_parameter = template["Parameters"][data["ImageId"]["Ref"]]
    assert image_parameter["Default"].startswith("/aws/service/ecs/optimized-ami/")
    assert "/gpu/" in image_parameter["Default"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # containers cannot reach the instance role
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"] == {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 100, "VolumeType": "gp3"}


def test_gpu_network_is_public_subnets_without_nat_or_inbound_rules(resources: dict[str, Any]) -> None:
    assert not of_type(resources, "AWS::EC2::NatGateway")
    assert not of_type(resources, "AWS::EC2::EIP")
    subnets = of_type(resources, "AWS::EC2::Subnet")
    zone = _the(resources, "AWS::AutoScaling::AutoScalingGroup")["VPCZoneIdentifier"]
    assert len(zone) == 2
    assert all(subnets[s["Ref"]]["Properties"]["MapPublicIpOnLaunch"] is True for s in zone)
    launch = _the(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    (group_id,) = (g["Fn::GetAtt"][0] for g in launch["SecurityGroupIds"])
    assert "SecurityGroupIngress" not in resources[group_id]["Properties"]
    assert not [
        r for r in of_type(resources, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == group_id
    ]


def test_gpu_task_definition_asks_for_one_gpu(resources: dict[str, Any]) -> None:
    (resource,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    props = resource["Properties"]
    assert props["RequiresCompatibilities"] == ["EC2"]
    assert props["NetworkMode"] == "bridge"  # the instance's public address, no NAT
    (container,) = props["ContainerDefinitions"]
    assert container["Name"] == "clip"
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    assert container["MemoryReservation"] >= 8 * 1024
    assert container["StopTimeout"] == 30
    assert {"Name": "HEARTBEAT_SECONDS", "Value": "20"} in container["Environment"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    # AND the local engine can find the worker that this task definition runs
    assert resource["Metadata"]["pagemill:source"] == "containers/clip-gpu"
    assert (ROOT / "containers/clip-gpu/worker.py").is_file()


def test_gpu_task_role_is_least_privilege(resources: dict[str, Any]) -> None:
    (task_definition,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    role_id = task_definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = role_statements(resources, role_id)
    actions = [a for s in statements for a in _actions(s)]
    assert not [a for a in actions if "*" in a], actions
    s3 = {a: suffix for s in statements for a in _actions(s) if a.startswith("s3:") for suffix in _object_suffixes(s)}
    assert s3 == {"s3:GetObject": "/documents/*", "s3:PutObject": "/documents/*/embeddings/*"}
    # AND it answers task tokens of this state machine only
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    (token,) = [s for s in statements if any(a.startswith("states:") for a in _actions(s))]
    assert sorted(_actions(token)) == ["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"]
    assert token["Resource"] == {"Ref": machine_id}


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


def test_config_reads_context_with_defaults_and_cli_strings() -> None:
    from stacks.config import PipelineConfig

    assert PipelineConfig.from_context(Context()) == PipelineConfig()
    # `cdk synth -c batch_pages=10` passes strings
    config = PipelineConfig.from_context(Context(batch_pages="10", map_concurrency=5, markdown_mode="layout"))
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
        ({"gpu_instance_type": "g5"}, "'gpu_instance_type' must be an EC2 instance type"),
        ({"gpu_instance_type": "c5.xlarge"}, "'gpu_instance_type' must be an x86_64 instance type with an NVIDIA GPU"),
        ({"gpu_instance_type": "g5g.xlarge"}, "'gpu_instance_type' must be an x86_64 instance type with an NVIDIA GPU"),
        ({"gpu_max_instances": 0}, "'gpu_max_instances' must be between 1 and 100"),
        ({"gpu_min_images": 0}, "'gpu_min_images' must be at least 1"),
        ({"alarm_email": "oncall"}, "'alarm_email' must be an e-mail address"),
        ({"caption_provider": "openai"}, "'caption_provider' must be one of"),
        ({"caption_batch_size": 0}, "'caption_batch_size' must be between 1 and 50"),
        ({"gpu_heartbeat_seconds": 30}, "'gpu_heartbeat_seconds' must be between 60 and 3600"),
        ({"gpu_worker_heartbeat_seconds": 0}, "'gpu_worker_heartbeat_seconds' must be between 1 and 300"),
        # three missed beats of a worker that beats every minute
        ({"gpu_worker_heartbeat_seconds": 60, "gpu_heartbeat_seconds": 120},
         "'gpu_heartbeat_seconds' must be between 180 and 3600"),
        ({"clip_model_s3_uri": "my-models/clip/"}, "'clip_model_s3_uri' must be an S3 prefix ending in '/'"),
        ({"clip_model_s3_uri": "s3://my-models/clip"}, "'clip_model_s3_uri' must be an S3 prefix ending in '/'"),
        ({"gpu_image_uri": "pagemill-clip:v1"}, "'gpu_image_uri' must be an ECR image with a tag or digest"),
        ({"gpu_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-clip"}, "with a tag or digest"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(context: dict[str, Any], message: str) -> None:
    from stacks.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        PipelineConfig.from_context(Context(**context))


def test_config_accepts_gpu_settings() -> None:
    from stacks.config import PipelineConfig

    config = PipelineConfig.from_context(
        Context(gpu_instance_type="g4dn.2xlarge", gpu_max_instances="4", gpu_min_images="50",
                 clip_model_s3_uri="s3://my-models/clip-vit-b32/")
    )
    assert (config.gpu_instance_type, config.gpu_max_instances, config.gpu_min_images) == ("g4dn.2xlarge", 4, 50)
    assert config.clip_model_location == ("my-models", "clip-vit-b32/")
    assert PipelineConfig().clip_model_location is None


def test_gpu_settings_reach_the_stack(synthesize: Any, tmp_path: Path) -> None:
    # GIVEN the GPU service and the CPU model configured otherwise
    resources = synthesize(
        tmp_path, gpu_instance_type="g6.2xlarge", gpu_max_instances=5, gpu_min_images=50,
        gpu_heartbeat_seconds=300, clip_model_s3_uri="s3://my-models/clip/",
    ).to_json()["Resources"]
    # THEN the group, the routing threshold and the heartbeat follow
    assert _the(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]["InstanceType"] == "g6.2xlarge"
    assert _the(resources, "AWS::AutoScaling::AutoScalingGroup")["MaxSize"] == "5"
    from tests.infrastructure.conftest import definition_of

    (machine_id, machine), = of_type(resources, "AWS::StepFunctions::StateMachine").items()
    assert _embed_on_gpu(definition_of({"Resources": {machine_id: machine}}))["HeartbeatSeconds"] == 300
    embed = _function(resources, "handler.embed")
    variables = embed["Properties"]["Environment"]["Variables"]
    assert variables["PAGEMILL_GPU_MIN_IMAGES"] == "50"
    assert variables["PAGEMILL_CLIP_S3_URI"] == "s3://my-models/clip/"
    # AND Embed may list and read the model's prefix, and nothing else of that bucket
    statements = role_statements(resources, embed["Properties"]["Role"]["Fn::GetAtt"][0])
    model = [s for s in statements if "my-models" in json.dumps(s["Resource"])]
    assert {a: s["Resource"] for s in model for a in _actions(s)} == {
        "s3:ListBucket": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::my-models"]]},
        "s3:GetObject": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::my-models/clip/*"]]},
    }
    (listing,) = [s for s in model if "s3:ListBucket" in _actions(s)]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["clip/*"]}}


def test_a_pushed_gpu_image_deploys_without_docker(synthesize: Any, tmp_path: Path) -> None:
    # GIVEN the worker's image was built elsewhere and pushed to ECR
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-clip@sha256:" + "ab" * 32
    resources = synthesize(tmp_path, gpu_image_uri=uri).to_json()["Resources"]
    # THEN the task runs that image, pulled by the execution role from that repository only
    (container,) = _the(resources, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    assert "pagemill-clip@sha256:" + "ab" * 32 in json.dumps(container["Image"])
    arn = ":ecr:eu-west-1:123456789012:repository/pagemill-clip"
    repository = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, arn]]}
    pulls = [s for p in of_type(resources, "AWS::IAM::Policy").values()
             for s in p["Properties"]["PolicyDocument"]["Statement"] if "ecr:BatchGetImage" in _actions(s)]
    assert [s["Resource"] for s in pulls] == [repository]
    # AND nothing is left for Docker to build (the default configuration has the worker's image here)
    (assets,) = tmp_path.rglob("Pagemill.assets.json")
    assert json.loads(assets.read_text()).get("dockerImages", {}) == {}


# --- monitoring ----------------------------------------------------------------------------


def _alarms_on(resources: dict[str, Any], namespace: str, metric: str) -> list[dict[str, Any]]:
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
        assert len(_alarms_on(resources, "AWS/States", metric)) == 1, metric
    for metric in ("ServiceIntegrationsFailed", "ServiceIntegrationsTimedOut"):
        (gpu,) = _alarms_on(resources, "AWS/States", metric)
        assert gpu["Dimensions"] == [
            {"Name": "ServiceIntegrationResourceArn", "Value": "arn:aws:states:::ecs:runTask.waitForTaskToken"}
        ]
    # every function's errors, throttles and duration near its timeout
    functions = _pagemill_functions(resources)
    for metric in ("Errors", "Throttles", "Duration"):
        watched = {a["Dimensions"][0]["Value"]["Ref"] for a in _alarms_on(resources, "AWS/Lambda", metric)}
        assert watched == set(functions), metric
    for alarm in _alarms_on(resources, "AWS/Lambda", "Duration"):
        function = functions[alarm["Dimensions"][0]["Value"]["Ref"]]
        assert alarm["Threshold"] == function["Properties"]["Timeout"] * 1000 * 0.8
    # the trigger's dead-letter queue, as soon as it holds anything
    (dlq,) = _alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Threshold"] == 1


def test_failed_documents_are_published(resources: dict[str, Any]) -> None:
    (topic_id,) = of_type(resources, "AWS::SNS::Topic")
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    rules = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
             if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
             and r["Properties"]["Targets"][0]["Arn"] == {"Ref": topic_id}]
    assert len(rules) == 1
    pattern = rules[0]["EventPattern"]
    assert pattern["detail"] == {"stateMachineArn": [{"Ref": machine_id}], "status": ["FAILED", "TIMED_OUT", "ABORTED"]}
    assert rules[0]["Targets"][0]["Arn"] == {"Ref": topic_id}


def test_alarm_email_subscribes_to_the_topic(tmp_path: Path, synthesize: Callable[..., Any]) -> None:
    resources = synthesize(tmp_path, alarm_email="oncall@example.com").to_json()["Resources"]
    (subscription,) = of_type(resources, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "oncall@example.com"


def test_executions_running_too_long_raise_the_stuck_alarm(resources: dict[str, Any]) -> None:
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    functions = of_type(resources, "AWS::Lambda::Function")
    (watch_id,) = [i for i, f in functions.items() if f["Properties"]["Handler"] == "handler.watch"]
    assert functions[watch_id]["Properties"]["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": machine_id}
    # it may list the executions of this state machine, and runs every five minutes
    role_id = functions[watch_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [s for p in of_type(resources, "AWS::IAM::Policy").values()
                  if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert {"Action": "states:ListExecutions", "Effect": "Allow", "Resource": {"Ref": machine_id}} in statements
    (schedule,) = [r["Properties"] for r in of_type(resources, "AWS::Events::Rule").values()
                   if "ScheduleExpression" in r["Properties"]]
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Targets"][0]["Arn"] == {"Fn::GetAtt": [watch_id, "Arn"]}
    # the alarm: the oldest running execution past stuck_after_minutes (cdk.json: 30)
    (stuck,) = _alarms_on(resources, "Pagemill", "OldestRunningExecutionSeconds")
    assert stuck["Threshold"] == 30 * 60
    assert stuck["Statistic"] == "Maximum"
    assert stuck["Dimensions"] == [{"Name": "service", "Value": "pagemill"}]


def test_dashboard_shows_throughput_failures_by_class_and_every_state(resources: dict[str, Any]) -> None:
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    for metric in ("DocumentsSucceeded", "DocumentsFailed", "PagesExtracted", "ImagesExtracted", "ImagesEmbedded",
                   "RunningExecutions", "OldestRunningExecutionSeconds"):
        assert f'"{metric}"' in text, metric
    assert "DocumentsFailedByClass" in text and "ErrorClass" in text and "SEARCH(" in text
    # every function behind a state has its durations on the dashboard, and so has the GPU task
    for function_id in _pagemill_functions(resources):
        assert json.dumps({"Ref": function_id}) in text, function_id
    assert "ecs:runTask.waitForTaskToken" in text
