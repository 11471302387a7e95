"""DocumentStateMachine, with the functions and the GPU service it runs, in an otherwise empty
stack: the states, their failure handling and payloads, the GPU task, and the role."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

import pagemill
from pagemill.errors import input_error_names, transient_error_names
from tests.infrastructure.conftest import (
    ROOT,
    construct_template,
    definition_of,
    part_fixture,
    state_machine_part,
)
from tests.infrastructure.queries import (
    actions_of,
    function_with,
    handler_of,
    object_suffixes,
    of_type,
    role_statements,
    states_of,
    tasks_of,
    the_one,
)

INPUT_ERRORS = {"NotAPdf", "EmptyFile", "EncryptedPdf", "MalformedPdf", "NoPages", "PageLimitExceeded", "FileTooLarge"}
WORK_STATES = ("Plan", "ExtractOnlyBatch", "ExtractPages", "CollectImages", "Enrich", "Write")
# The Lambda tasks and their functions' handlers.
LAMBDA_TASKS = {
    "Plan": "handler.plan",
    "ExtractBatch": "handler.extract_batch",
    "ExtractOnlyBatch": "handler.extract_batch",
    "CollectImages": "handler.collect_images",
    "EmbedOnLambda": "handler.embed",
    "CaptionBatch": "handler.caption_batch",
    "UnderstandDocument": "handler.understand",
    "SpeakSummary": "handler.speak_summary",
    "EmbedChunks": "handler.embed_chunks",
    "Write": "handler.write",
    "RecordFailure": "handler.record_failure",
}
GPU_RUN_TASK = "arn:aws:states:::ecs:runTask.waitForTaskToken"


template = part_fixture(state_machine_part)


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    """The ASL, captured from the state machine resource, its tokens shown as placeholders."""
    from aws_cdk.assertions import Capture, Template

    body = Capture()
    Template.from_json(template).has_resource_properties("AWS::StepFunctions::StateMachine", {"DefinitionString": body})
    machine = {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"DefinitionString": body.as_object()}}
    return definition_of({"Resources": {"Machine": machine}})


def test_the_definition_is_the_pipeline_in_console_order(definition: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match, Template

    rendered = {"Resources": {"Machine": {"Type": "AWS::StepFunctions::StateMachine",
                                          "Properties": {"DefinitionString": json.dumps(definition)}}}}
    Template.from_json(rendered).has_resource_properties("AWS::StepFunctions::StateMachine", {
        "DefinitionString": Match.serialized_json(Match.object_like({
            "StartAt": "Plan",
            "States": Match.object_like({
                name: Match.object_like({"Type": kind}) for name, kind in (
                    ("Plan", "Task"), ("HowToExtract?", "Choice"), ("ExtractOnlyBatch", "Task"), ("ExtractPages", "Map"),
                    ("CollectImages", "Task"), ("Enrich", "Parallel"), ("Write", "Task"), ("Done", "Succeed"),
                    ("RecordFailure", "Task"), ("DocumentFailed", "Fail"),
                )
            }),
        })),
    })


def test_states_read_like_the_pipeline(definition: dict[str, Any]) -> None:
    # GIVEN the synthesized definition
    states = definition["States"]
    # THEN the happy path is Plan → HowToExtract? → ExtractOnlyBatch or ExtractPages → CollectImages →
    # Enrich → Write → Done
    assert definition["StartAt"] == "Plan"
    assert states["Plan"]["Next"] == "HowToExtract?"
    choice = states["HowToExtract?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.plan.duplicate", "BooleanEquals": True, "Next": "AlreadyProcessed"},
        {"Variable": "$.plan.batch_count", "NumericEquals": 1, "Next": "ExtractOnlyBatch"},
    ]
    assert choice["Default"] == "ExtractPages"
    assert states["AlreadyProcessed"]["Type"] == "Succeed"
    assert states["ExtractPages"]["Next"] == "CollectImages"
    assert states["ExtractOnlyBatch"]["Next"] == states["CollectImages"]["Next"] == "Enrich"
    assert states["Enrich"]["Next"] == "Write"
    assert states["Write"]["Next"] == "Done"
    assert states["Done"]["Type"] == "Succeed"
    # AND a failure ends in DocumentFailed with the recorded error and reason
    assert states["RecordFailure"]["Next"] == "DocumentFailed"
    assert states["DocumentFailed"] == {"Type": "Fail", "ErrorPath": "$.recorded.error", "CausePath": "$.recorded.reason"}
    # AND the execution as a whole has a deadline
    assert definition["TimeoutSeconds"] == 120 * 60


def test_every_task_has_a_timeout_and_jittered_backoff(definition: dict[str, Any]) -> None:
    tasks = tasks_of(definition)
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
        task = tasks_of(definition)[name]
        function_timeout = function_with(resources, handler)["Properties"]["Timeout"]
        assert function_timeout < task["TimeoutSeconds"] <= function_timeout + 60, name


def test_retries_never_name_input_errors(definition: dict[str, Any]) -> None:
    for name, task in tasks_of(definition).items():
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
    for name, task in tasks_of(definition).items():
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


def test_a_document_of_one_batch_is_extracted_without_a_map_run(definition: dict[str, Any]) -> None:
    # An account holds at most 1,000 open Map Runs (a hard Step Functions quota): a Map Run per
    # small document would cap how many documents extract at once, on top of its start-up.
    only = definition["States"]["ExtractOnlyBatch"]
    in_map = definition["States"]["ExtractPages"]["ItemProcessor"]["States"]["ExtractBatch"]
    # THEN it is the same function with the same timeout and retries, given Plan's one batch
    assert only["Parameters"]["Payload.$"] == "$.plan.only_batch"
    assert only["Parameters"]["FunctionName"] == in_map["Parameters"]["FunctionName"]
    for field in ("TimeoutSeconds", "Retry"):
        assert only[field] == in_map[field], field
    # AND its batch's result stays in S3, as the map's; the invocation collects the document's images
    # itself and answers as CollectImages does after the map, into the same place (no CollectImages
    # state, invocation and read of the batch for a document of one batch)
    collect = definition["States"]["CollectImages"]
    assert (only["ResultSelector"], only["ResultPath"]) == (collect["ResultSelector"], collect["ResultPath"])
    assert only["Next"] == collect["Next"] == "Enrich"


def test_payloads_pass_keys_not_data(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["Plan"]["Parameters"]["Payload"] == {"source.$": "$.source", "execution_arn.$": "$$.Execution.Id"}
    assert states["Plan"]["ResultPath"] == "$.plan"
    # only_batch: a document of one batch gets its manifest item (the source's keys and a page range)
    assert set(states["Plan"]["ResultSelector"]) == {
        "document_id.$", "page_count.$", "batch_count.$", "manifest_key.$", "duplicate.$", "only_batch.$", "span.$"
    }
    assert states["Write"]["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id",
        "manifest_key.$": "$.plan.manifest_key",
        "only_batch.$": "$.plan.only_batch",
        "embeddings_index_key.$": "$.enrich.embeddings.index_key",
        "captions.$": "$.enrich.captions",
        "understanding.$": "$.enrich.understanding",
        "speech.$": "$.enrich.understanding.speech",
        "chunk_vectors.$": "$.enrich.chunk_vectors",
        "execution_arn.$": "$$.Execution.Id",
        "started_at.$": "$$.Execution.StartTime",
        # the earlier states' spans, from their results (the branches' are in their outcomes)
        "spans": {"plan.$": "$.plan.span", "images.$": "$.images.span", "embeddings.$": "$.enrich.embeddings.span"},
    }
    assert states["Write"]["ResultPath"] == "$.written"
    # the outcome (succeeded or partial) and the warnings' codes stay in the state, for status --aws
    # and the DocumentPartial rule
    assert states["Write"]["ResultSelector"] == {
        "pages.$": "$.Payload.pages", "chunks.$": "$.Payload.chunks", "images.$": "$.Payload.images",
        "status.$": "$.Payload.status", "warnings.$": "$.Payload.warnings",
    }
    assert states["CollectImages"]["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "manifest_key.$": "$.plan.manifest_key",
        "only_batch.$": "$.plan.only_batch",
    }
    assert states["CollectImages"]["ResultSelector"] == {
        "image_count.$": "$.Payload.image_count",
        "images_key.$": "$.Payload.images_key",
        "embed_on.$": "$.Payload.embed_on",
        "caption_on.$": "$.Payload.caption_on",
        "caption_batches_key.$": "$.Payload.caption_batches_key",
        "captions_prefix.$": "$.Payload.captions_prefix",
        "understand_on.$": "$.Payload.understand_on",
        "span.$": "$.Payload.span",
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
    s3_resources = [json.dumps(s["Resource"]) for s in statements if any(a.startswith("s3:") for a in actions_of(s))]
    assert s3_resources and all('"/documents/*"' in r for r in s3_resources), s3_resources
    assert any("states:StartExecution" in actions_of(s) for s in statements)  # the map's child executions


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
    # every route ends with {"index_key", "count", "span"}; no images is an index_key and a span of null
    assert states["NoImagesToEmbed"]["Type"] == "Pass"
    assert states["NoImagesToEmbed"]["Parameters"] == {
        "index_key.$": "States.StringToJson('null')", "count": 0, "span.$": "States.StringToJson('null')"
    }
    for name in ("EmbedOnLambda", "EmbedOnGpu"):
        assert set(states[name]["ResultSelector"]) == {"index_key.$", "count.$", "span.$"}, name
        assert states[name]["End"] is True, name
    assert states["EmbedOnLambda"]["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "images_key.$": "$.images.images_key"
    }
    assert states["EmbedOnLambda"]["ResultSelector"] == {
        "index_key.$": "$.Payload.index_key", "count.$": "$.Payload.count", "span.$": "$.Payload.span"
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
        "document_id.$": "$.plan.document_id", "manifest_key.$": "$.plan.manifest_key",
        "only_batch.$": "$.plan.only_batch",
    }
    assert understand["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.understanding_failed", "Next": "UnderstandingFailed"}
    ]


def embed_on_gpu(definition: dict[str, Any]) -> dict[str, Any]:
    return tasks_of(definition)["EmbedOnGpu"]


def test_chunk_vectors_branch_never_fails_the_document_and_reaches_write(definition: dict[str, Any]) -> None:
    branch = definition["States"]["Enrich"]["Branches"][3]
    states = branch["States"]
    assert branch["StartAt"] == "EmbedChunks"
    embed_chunks = states["EmbedChunks"]
    assert embed_chunks["Parameters"]["Payload"] == {
        "document_id.$": "$.plan.document_id", "manifest_key.$": "$.plan.manifest_key",
        "only_batch.$": "$.plan.only_batch",
    }
    assert set(embed_chunks["ResultSelector"]) == {"key.$", "model.$", "chunks.$", "error.$", "span.$"}
    # an embedding service that gives no vectors answers with an error; a crash is caught: never fails
    assert embed_chunks["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.chunk_vectors_failed", "Next": "ChunkVectorsFailed"}
    ]
    assert states["ChunkVectorsFailed"]["Parameters"]["error.$"] == "$.chunk_vectors_failed.Error"
    assert states["ChunkVectorsFailed"]["Parameters"]["span.$"] == "States.StringToJson('null')"


def test_chunk_embeddings_off_leave_no_state(tmp_path: Path) -> None:
    template = construct_template(tmp_path, state_machine_part, text_embedder="off").to_json()
    definition = definition_of(template)
    assert len(definition["States"]["Enrich"]["Branches"]) == 3
    assert "chunk_vectors.$" not in definition["States"]["Write"]["Parameters"]["Payload"]
    handlers = {handler_of(f) for f in of_type(template["Resources"], "AWS::Lambda::Function").values()}
    assert "handler.embed_chunks" not in handlers


def test_embed_on_gpu_runs_the_task_and_waits_for_its_token(definition: dict[str, Any]) -> None:
    task = embed_on_gpu(definition)
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
    # the worker's answer carries the Embed state's span, as a Lambda stage's result does
    assert task["ResultSelector"] == {"index_key.$": "$.index_key", "count.$": "$.count", "span.$": "$.span"}


def test_embed_on_gpu_retries_a_silent_or_interrupted_worker_but_not_its_defects(definition: dict[str, Any]) -> None:
    task = embed_on_gpu(definition)
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
    for name, state in states_of(definition["States"]["Enrich"]["Branches"][0]["States"]):
        assert "Catch" not in state, name


def test_state_machine_may_run_the_gpu_task_and_pass_only_its_roles(resources: dict[str, Any]) -> None:
    (machine,) = of_type(resources, "AWS::StepFunctions::StateMachine").values()
    statements = role_statements(resources, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    (task_definition_id,) = of_type(resources, "AWS::ECS::TaskDefinition")
    task_definition = resources[task_definition_id]["Properties"]
    run = [s for s in statements if "ecs:RunTask" in actions_of(s)]
    assert run and all(json.dumps(s["Resource"]).count(task_definition_id) >= 1 for s in run), run
    (pass_role,) = [s for s in statements if "iam:PassRole" in actions_of(s)]
    assert sorted(pass_role["Resource"], key=json.dumps) == sorted(
        [task_definition["TaskRoleArn"], task_definition["ExecutionRoleArn"]], key=json.dumps
    )


def test_gpu_task_role_is_least_privilege(resources: dict[str, Any]) -> None:
    (task_definition,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    role_id = task_definition["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = role_statements(resources, role_id)
    actions = [a for s in statements for a in actions_of(s)]
    assert not [a for a in actions if "*" in a], actions
    s3 = sorted((a, suffix) for s in statements for a in actions_of(s) if a.startswith("s3:")
                for suffix in object_suffixes(s))
    assert s3 == [("s3:GetObject", "/documents/*"), ("s3:PutObject", "/documents/*/embeddings/*")]
    # AND it answers task tokens of this state machine only
    (machine_id,) = of_type(resources, "AWS::StepFunctions::StateMachine")
    (token,) = [s for s in statements if any(a.startswith("states:") for a in actions_of(s))]
    assert sorted(actions_of(token)) == ["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"]
    assert token["Resource"] == {"Ref": machine_id}


def test_gpu_settings_reach_the_stack(tmp_path: Path) -> None:
    # GIVEN the GPU service and the CPU model configured otherwise
    resources = construct_template(
        tmp_path, state_machine_part, gpu_instance_type="g6.2xlarge", gpu_max_instances=5, gpu_min_images=50,
        gpu_heartbeat_seconds=300, clip_model_s3_uri="s3://my-models/clip/",
    ).to_json()["Resources"]
    # THEN the group, the routing threshold and the heartbeat follow
    assert the_one(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]["InstanceType"] == "g6.2xlarge"
    assert the_one(resources, "AWS::AutoScaling::AutoScalingGroup")["MaxSize"] == "5"
    from tests.infrastructure.conftest import definition_of

    (machine_id, machine), = of_type(resources, "AWS::StepFunctions::StateMachine").items()
    assert embed_on_gpu(definition_of({"Resources": {machine_id: machine}}))["HeartbeatSeconds"] == 300
    embed = function_with(resources, "handler.embed")
    variables = embed["Properties"]["Environment"]["Variables"]
    assert variables["PAGEMILL_GPU_MIN_IMAGES"] == "50"
    assert variables["PAGEMILL_CLIP_S3_URI"] == "s3://my-models/clip/"
    # AND Embed may list and read the model's prefix, and nothing else of that bucket
    statements = role_statements(resources, embed["Properties"]["Role"]["Fn::GetAtt"][0])
    model = [s for s in statements if "my-models" in json.dumps(s["Resource"])]
    assert {a: s["Resource"] for s in model for a in actions_of(s)} == {
        "s3:ListBucket": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::my-models"]]},
        "s3:GetObject": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::my-models/clip/*"]]},
    }
    (listing,) = [s for s in model if "s3:ListBucket" in actions_of(s)]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["clip/*"]}}


def test_skipped_bundling_runs_no_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bundler that fails if it is ever asked to bundle
    from stacks import bundling

    def refuse(self: Any, output_dir: str, options: Any) -> bool:
        raise AssertionError(f"pip ran for {self.source} although bundling was skipped")

    monkeypatch.setattr(bundling.LocalPythonBundler, "try_bundle", refuse)
    # WHEN the functions and the GPU service are synthesized with "aws:cdk:bundling-stacks": []
    construct_template(tmp_path, state_machine_part)
    # THEN no Lambda bundle was staged into the assembly: the staged assets are the GPU image's and
    # ExtractBatch's build contexts, copied (not built) at synth, holding only what their
    # Dockerfiles copy (ExtractBatch's: test_functions), and CDK's own prebuilt custom-resource
    # provider code
    assets = json.loads((tmp_path / "Pagemill.assets.json").read_text())
    images = {i["source"]["dockerFile"]: i for i in assets["dockerImages"].values()}
    assert set(images) == {"containers/clip-gpu/Dockerfile", "containers/extract/Dockerfile"}
    contexts = {tmp_path / i["source"]["directory"] for i in images.values()}
    for other in set(tmp_path.glob("asset.*")) - contexts:
        assert not (other / "pagemill").exists() and not (other / "handler.py").exists(), other
    image = images["containers/clip-gpu/Dockerfile"]
    staged = tmp_path / image["source"]["directory"]
    assert image["source"]["platform"] == "linux/amd64"
    assert sorted(p.name for p in staged.iterdir()) == ["containers", "pagemill"]
    assert sorted(p.name for p in (staged / "containers").iterdir()) == ["clip-gpu"]
    assert (staged / "pagemill" / "clip" / "embed.py").is_file()
    assert not list(staged.rglob("__pycache__"))
