"""The reembed state machine (stacks/reembed.py) in the stack as cdk.json configures it (Titan):
ReembedBatch loops until no chunk remains, then BuildChunkIndex; timeouts and retries like every
task; its functions in the database's VPC, ReembedBatch alone allowed to invoke the Titan model; the
stack says where it is. Without chunk embeddings there is none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.conftest import synth
from tests.infrastructure.queries import (
    actions_of,
    as_list,
    function_with,
    handler_of,
    of_type,
    role_statements,
)

pytestmark = pytest.mark.xdist_group("infrastructure")


def _reembed_machine(resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (item,) = [(k, v) for k, v in of_type(resources, "AWS::StepFunctions::StateMachine").items()
               if v.get("Metadata", {}).get("pagemill:state-machine") == "reembed"]
    return item


def _definition(machine: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    separator, parts = machine["Properties"]["DefinitionString"]["Fn::Join"]
    ids = {json.dumps({"Fn::GetAtt": [k, "Arn"]}): k for k in of_type(resources, "AWS::Lambda::Function")}
    return json.loads(separator.join(p if isinstance(p, str) else ids.get(json.dumps(p), "<token>") for p in parts))


def test_reembed_batches_until_none_remain_then_builds_the_index_once(resources: dict[str, Any]) -> None:
    _, machine = _reembed_machine(resources)
    definition = _definition(machine, resources)
    states = definition["States"]
    assert definition["StartAt"] == "ReembedBatch"
    assert set(states) == {"ReembedBatch", "AllReembedded?", "BuildChunkIndex", "Reembedded"}
    batch, choice, index = states["ReembedBatch"], states["AllReembedded?"], states["BuildChunkIndex"]
    # ReembedBatch is told how much one invocation may do, and says what remains
    assert batch["Parameters"]["Payload"] == {"max_chunks": 20_000, "batch_size": 256}
    assert batch["ResultPath"] == "$.batch" and batch["Next"] == "AllReembedded?"
    assert choice["Choices"] == [{"Variable": "$.batch.remaining", "NumericGreaterThan": 0, "Next": "ReembedBatch"}]
    assert choice["Default"] == "BuildChunkIndex" and index["Next"] == "Reembedded"
    # each task invokes its handler, with a timeout beyond its function's and the pipeline's retries
    functions = of_type(resources, "AWS::Lambda::Function")
    for name, handler in (("ReembedBatch", "handler.reembed_batch"), ("BuildChunkIndex", "handler.build_index")):
        state = states[name]
        function = functions[state["Parameters"]["FunctionName"]]["Properties"]
        assert function["Handler"] == handler
        assert state["TimeoutSeconds"] == function["Timeout"] + 30
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert {"Lambda.ServiceException", "DatabaseUnavailable", "Sandbox.Timedout"} <= retried, name
    # an embedding outage is waited out minutes apart, a few times
    (outage,) = [r for r in batch["Retry"] if r["ErrorEquals"] == ["EmbeddingUnavailable"]]
    assert outage["IntervalSeconds"] >= 60 and outage["MaxAttempts"] == 3
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True} and props["LoggingConfiguration"]["Level"] == "ERROR"


def test_reembed_functions_reach_the_database_and_only_reembed_batch_may_invoke_titan(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    batch, index = function_with(resources, "handler.reembed_batch"), function_with(resources, "handler.build_index")
    for function in (batch, index):
        props = function["Properties"]
        assert "VpcConfig" in props and "DATABASE_SECRET_ARN" in props["Environment"]["Variables"]
        assert props["Environment"]["Variables"]["PAGEMILL_TEXT_EMBEDDER"] == "titan"
        assert function["Metadata"]["pagemill:source"] == "lambdas/reembed"

    def bedrock(function: dict[str, Any]) -> list[dict[str, Any]]:
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        return [s for s in role_statements(resources, role) if any(a.startswith("bedrock:") for a in actions_of(s))]

    (invoke,) = bedrock(batch)
    assert actions_of(invoke) == ["bedrock:InvokeModel"]
    (arn,) = as_list(invoke["Resource"])
    assert json.dumps(arn).endswith('"::foundation-model/amazon.titan-embed-text-v2:0"]]}')
    assert not bedrock(index)
    # and neither touches the bucket
    for function in (batch, index):
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        assert not [a for s in role_statements(resources, role) for a in actions_of(s) if a.startswith("s3:")]
    # the state machine may invoke these two functions and nothing else
    machine_id, machine = _reembed_machine(resources)
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    invoked = {json.dumps(r) for s in role_statements(resources, role) if "lambda:InvokeFunction" in actions_of(s)
               for r in as_list(s["Resource"])}
    targets = {k for k in of_type(resources, "AWS::Lambda::Function") if any(k in r for r in invoked)}
    batch_id = next(k for k, f in of_type(resources, "AWS::Lambda::Function").items() if f is batch)
    index_id = next(k for k, f in of_type(resources, "AWS::Lambda::Function").items() if f is index)
    assert targets == {batch_id, index_id}
    # and the stack says where it is, for `pagemill reembed --aws`
    assert template["Outputs"]["ReembedStateMachineArn"]["Value"] == {"Ref": machine_id}


def test_without_chunk_embeddings_there_is_nothing_to_reembed(tmp_path: Path) -> None:
    template = synth(tmp_path, text_embedder="off").to_json()
    resources = template["Resources"]
    assert len(of_type(resources, "AWS::StepFunctions::StateMachine")) == 1
    handlers = {handler_of(f) for f in of_type(resources, "AWS::Lambda::Function").values()}
    assert not handlers & {"handler.reembed_batch", "handler.build_index"}
    assert "ReembedStateMachineArn" not in template["Outputs"]
    # and no Bedrock endpoint in the VPC
    services = [json.dumps(e["Properties"]["ServiceName"]) for e in of_type(resources, "AWS::EC2::VPCEndpoint").values()]
    assert not [s for s in services if "bedrock" in s]
