"""`pagemill reembed` on AWS's path: the reembed bundle's handlers (lambdas/reembed) called as the
reembed state machine calls them (ReembedBatch until nothing remains, then BuildChunkIndex), against
a real PostgreSQL and Titan on a local Bedrock stand-in; and `pagemill reembed --aws` starting and
following the stack's execution in moto (whose interpreter runs a stand-in of the state machine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from pagemill import metrics
from pagemill.aws import clients as edge
from pagemill.aws.handler import metrics as lambda_metrics
from pagemill.db.chunk_vectors import build_index, index_exists, models_stored
from pagemill.db.connect import connect
from pagemill.db.documents import register_document
from pagemill.db.write import ChunkVectors, write_document
from pagemill.errors import StackNotFound
from pagemill.operate import executions
from pagemill.operate import reembed as on_aws
from pagemill.records import BatchResult, ChunkRecord, PageRecord, SourceObject
from pagemill.text_embed.select import local_embedder
from tests.support.bedrock_standin import DIMENSIONS, BedrockStandIn, bedrock_standin
from tests.support.lambda_context import LambdaContext, load_handler
from tests.support.moto_aws import fake_credentials

ROOT = Path(__file__).resolve().parents[2]
TITAN_MODEL = f"bedrock:amazon.titan-embed-text-v2:0:{DIMENSIONS}:norm"
TEXTS = {
    "a" * 32: ["The orchard harvest began in late September.", "The central bank raised interest rates.",
               "Engineers replaced the corroded steel cables."],
    "b" * 32: ["The striker scored twice in the second half.", "The orchestra rehearsed the symphony for weeks."],
}
TOTAL = sum(len(texts) for texts in TEXTS.values())


def _context(remaining_ms: int = 900_000) -> LambdaContext:
    return LambdaContext("ReembedBatchFunction", 1024, remaining_ms)


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    return load_handler(ROOT / "lambdas" / "reembed" / "handler.py", "pagemill_reembed_handler")


@pytest.fixture
def titan_configured(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockStandIn]:
    """Chunks embedded by the offline model (one of them left without a vector by an outage), and
    ReembedBatch's environment as the stack sets it after text_embedder became titan."""
    old = local_embedder("wordllama")
    with connect(database_url) as conn:
        for document_id, texts in TEXTS.items():
            register_document(conn, document_id=document_id, sha256=document_id * 2, size_bytes=1,
                              source=SourceObject("uploads", f"uploads/{document_id}.pdf"), execution_arn=None)
            pages = [PageRecord(n, t, len(t), 595.0, 842.0) for n, t in enumerate(texts, start=1)]
            chunks = [ChunkRecord(n - 1, n, n, t) for n, t in enumerate(texts, start=1)]
            write_document(conn, document_id=document_id, batches=[BatchResult(document_id, 0, 1, len(texts), 0.1,
                                                                               pages=pages, chunks=chunks, images=[])],
                           timings={}, stats={}, chunk_vectors=ChunkVectors(old.model, list(old.passages(texts))))
        conn.execute("update chunks set embedding = null, embedding_model = null where document_id = %s and chunk_no = 1",
                     ("b" * 32,))
        conn.commit()
        build_index(conn, old.model, old.dim)
    fake_credentials(monkeypatch)
    with bedrock_standin() as bedrock:
        for name, value in {"DATABASE_URL": database_url, "PAGEMILL_TEXT_EMBEDDER": "titan",
                            "PAGEMILL_TITAN_DIMENSIONS": str(DIMENSIONS), "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url,
                            "POWERTOOLS_SERVICE_NAME": metrics.SERVICE}.items():
            monkeypatch.setenv(name, value)
        # The stack sets POWERTOOLS_METRICS_NAMESPACE; Powertools read it when this process first
        # imported the handlers' module.
        monkeypatch.setattr(lambda_metrics.provider, "namespace", metrics.NAMESPACE)
        for cached in (edge.client, edge._reembed_embedder):
            cached.cache_clear()
        monkeypatch.setattr(edge, "_connection", None)
        yield bedrock
        if edge._connection is not None:
            edge._connection.close()
        for cached in (edge.client, edge._reembed_embedder):
            cached.cache_clear()


def test_the_reembed_loop_replaces_every_vector_once_and_builds_the_index_once(
    handler: ModuleType, titan_configured: BedrockStandIn, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table writes (n int)")
        conn.execute("create function count_write() returns trigger language plpgsql as"
                     " $$ begin insert into writes values (1); return new; end $$")
        conn.execute("create trigger count_write after update of embedding on chunks"
                     " for each row execute function count_write()")
        # WHEN the state machine's loop runs: ReembedBatch until nothing remains, then BuildChunkIndex
        results = [handler.reembed_batch({"max_chunks": 2, "batch_size": 1}, _context())]
        while results[-1]["remaining"] > 0:
            results.append(handler.reembed_batch({"max_chunks": 2, "batch_size": 1}, _context()))
        built = handler.build_index({}, _context())
        # THEN each invocation did at most its share, and together they embedded every chunk once
        assert [r["embedded"] for r in results] == [2, 2, 1]
        assert [r["remaining"] for r in results] == [3, 1, 0]
        assert {r["model"] for r in results} == {built["model"]} == {TITAN_MODEL}
        assert conn.execute("select count(*) from writes").fetchone()[0] == TOTAL
        assert sorted(titan_configured.texts()) == sorted(t for texts in TEXTS.values() for t in texts)
        assert models_stored(conn) == {TITAN_MODEL: TOTAL}
        # AND the new model's index replaced the old one's
        assert index_exists(conn, TITAN_MODEL) and not index_exists(conn, local_embedder("wordllama").model)
        # AND a second run writes nothing
        again = handler.reembed_batch({}, _context())
        assert (again["embedded"], again["remaining"]) == (0, 0)
        assert conn.execute("select count(*) from writes").fetchone()[0] == TOTAL


def test_reembed_batch_starts_no_batch_near_its_timeout(handler: ModuleType, titan_configured: BedrockStandIn) -> None:
    result = handler.reembed_batch({}, _context(remaining_ms=handler.STOP_BEFORE_TIMEOUT_MS - 1))
    assert (result["embedded"], result["remaining"]) == (0, TOTAL)
    assert titan_configured.requests == []


def test_an_outage_keeps_the_batches_done_and_raises_for_the_state_machine_to_retry(
    handler: ModuleType, titan_configured: BedrockStandIn, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pagemill.text_embed.embedder import EmbeddingUnavailable

    monkeypatch.setenv("PAGEMILL_CAPTION_MAX_ATTEMPTS", "1")
    edge._reembed_embedder.cache_clear()
    first = handler.reembed_batch({"max_chunks": 2, "batch_size": 1}, _context())
    titan_configured.failing = "ServiceUnavailableException"
    with pytest.raises(EmbeddingUnavailable):
        handler.reembed_batch({"max_chunks": 2, "batch_size": 1}, _context())
    with psycopg.connect(database_url) as conn:
        assert models_stored(conn).get(TITAN_MODEL) == first["embedded"] == 2


# --- `pagemill reembed --aws` -----------------------------------------------------------------

REGION = "eu-west-1"
BATCH = {"model": TITAN_MODEL, "embedded": 5, "remaining": 0}
# The reembed state machine's states, as moto's interpreter can run them: what each task leaves.
FINISHING = {
    "ReembedBatch": {"Type": "Pass", "Result": BATCH, "ResultPath": "$.batch", "Next": "BuildChunkIndex"},
    "BuildChunkIndex": {"Type": "Pass", "Result": {"model": TITAN_MODEL, "index_seconds": 2.5},
                        "ResultPath": "$.index", "End": True},
}
WAITING = {"ReembedBatch": {"Type": "Wait", "Seconds": 120, "End": True}}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_credentials(monkeypatch, REGION)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn, cfn = boto3.client("stepfunctions", region_name=REGION), boto3.client("cloudformation", region_name=REGION)

        def deploy(states: dict[str, Any] | None) -> executions.Stack:
            outputs = {"BucketName": {"Value": "work"}, "StateMachineArn": {"Value": "arn:documents"}}
            if states is not None:
                outputs["ReembedStateMachineArn"] = {"Value": sfn.create_state_machine(
                    name="Reembed", roleArn="arn:aws:iam::123456789012:role/sfn",
                    definition=json.dumps({"StartAt": "ReembedBatch", "States": states}))["stateMachineArn"]}
            cfn.create_stack(StackName="Pagemill", TemplateBody=json.dumps({
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}))
            return executions.find_stack(cfn, "Pagemill")

        yield sfn, deploy
        for machine in sfn.list_state_machines()["stateMachines"]:
            for e in sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")["executions"]:
                sfn.stop_execution(executionArn=e["executionArn"])


def test_reembed_aws_starts_the_stacks_execution_and_reports_what_it_did(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pagemill_tools import cli

    sfn, deploy = stack
    deploy(FINISHING)
    monkeypatch.setattr(cli, "REEMBED_POLL_SECONDS", 0.05)
    result = CliRunner().invoke(cli.app, ["reembed", "--aws", "--region", REGION])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"5 chunks re-embedded with {TITAN_MODEL}; index built in 2.5 s")
    (execution,) = sfn.list_executions(stateMachineArn=sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"])[
        "executions"]
    assert execution["name"].startswith("reembed-") and execution["status"] == "SUCCEEDED"


def test_a_running_reembed_is_followed_not_doubled(stack: Any) -> None:
    sfn, deploy = stack
    deployed = deploy(WAITING)
    first, started = on_aws.start(sfn, deployed)
    again, started_again = on_aws.start(sfn, deployed)
    assert (started, started_again) == (True, False) and again == first
    run = on_aws.progress(sfn, first)
    assert (run.status, run.embedded, run.remaining, run.finished) == ("RUNNING", 0, None, False)


def test_a_stack_without_chunk_embeddings_says_so(stack: Any) -> None:
    sfn, deploy = stack
    with pytest.raises(StackNotFound, match="no ReembedStateMachineArn output: its text_embedder is off"):
        on_aws.start(sfn, deploy(None))
