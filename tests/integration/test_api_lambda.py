"""The API Lambda (lambdas/api): API Gateway HTTP API events (payload 2.0, as the IAM-authorized
route sends them) through Mangum into the same application, against S3 and Step Functions in moto
and a real PostgreSQL: an upload lands under uploads/ and starts the execution the S3 trigger
would (same name), a document reads back, bad input is a 4xx; on Titan a search embeds its query
with Bedrock (a local stand-in) and answers by keyword when Bedrock is down."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import pymupdf
import pytest
from moto import mock_aws

from pagemill.aws import clients as edge
from pagemill.aws.trigger import execution_name
from pagemill.records import SourceObject
from tests.support.bedrock_standin import DIMENSIONS, BedrockStandIn, bedrock_standin
from tests.support.lambda_context import LambdaContext, load_handler

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
BUCKET = "work"
CALLER = "arn:aws:iam::123456789012:user/alice"


def _context() -> LambdaContext:
    return LambdaContext("ApiFunction", 2048, 29_000)


@pytest.fixture
def deployed(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The function's environment as the stack sets it, over moto; a fresh edge (no cached clients)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        machine = sfn.create_state_machine(
            name="Documents", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Plan", "States": {"Plan": {"Type": "Pass", "End": True}}}),
        )["stateMachineArn"]
        for name, value in {"AWS_DEFAULT_REGION": REGION, "PAGEMILL_WORK_BUCKET": BUCKET,
                            "STATE_MACHINE_ARN": machine, "DATABASE_URL": database_url,
                            "POWERTOOLS_SERVICE_NAME": "pagemill"}.items():
            monkeypatch.setenv(name, value)
        for cached in (edge.client, edge.api_backend):
            cached.cache_clear()
        monkeypatch.setattr(edge, "_connection", None)
        yield {"s3": s3, "sfn": sfn, "machine": machine}
        if edge._connection is not None:
            edge._connection.close()
        for cached in (edge.client, edge.api_backend):
            cached.cache_clear()


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    return load_handler(ROOT / "lambdas" / "api" / "handler.py", "pagemill_api_handler")


def _event(method: str, path: str, *, query: str = "", body: bytes | None = None,
           content_type: str | None = None) -> dict[str, Any]:
    headers = {"host": "abc.execute-api.us-east-1.amazonaws.com"}
    if content_type:
        headers["content-type"] = content_type
    if body is not None:
        headers["content-length"] = str(len(body))
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                     "userAgent": "test"},
            "authorizer": {"iam": {"userArn": CALLER, "accountId": "123456789012"}},
            "requestId": "r1", "routeKey": "$default", "stage": "$default", "time": "02/Dec/2026:14:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": base64.b64encode(body).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
    }


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "pagemill-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _call(handler: ModuleType, event: dict[str, Any]) -> tuple[int, Any]:
    response = handler.api(event, _context())
    body = base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    kind = response["headers"].get("content-type", "")
    return response["statusCode"], json.loads(body) if kind.startswith("application/json") else body


def _pdf(tmp_path: Path) -> bytes:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "lambda upload")
    path = tmp_path / "one.pdf"
    doc.save(path)
    return path.read_bytes()


def test_upload_through_api_gateway_starts_the_triggers_execution(
    handler: ModuleType, deployed: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN a PDF posted as API Gateway delivers it (base64 body)
    body, content_type = _multipart("Spring Catalog.pdf", _pdf(tmp_path))
    # WHEN the function handles it
    status, accepted = _call(handler, _event("POST", "/documents", body=body, content_type=content_type))
    # THEN it is accepted, stored under uploads/, and the execution is the one the trigger names
    assert status == 202, accepted
    head = deployed["s3"].head_object(Bucket=BUCKET, Key="uploads/Spring Catalog.pdf")
    source = SourceObject(bucket=BUCKET, key="uploads/Spring Catalog.pdf", version_id=head["VersionId"])
    assert accepted["execution_arn"].endswith(":" + execution_name(source))
    executions = deployed["sfn"].list_executions(stateMachineArn=deployed["machine"])["executions"]
    assert [e["executionArn"] for e in executions] == [accepted["execution_arn"]]
    # AND the document reads back, registered for that execution
    status, detail = _call(handler, _event("GET", f"/documents/{accepted['document_id']}"))
    assert status == 200 and detail["status"] == "running" and detail["execution_arn"] == accepted["execution_arn"]
    assert detail["file_name"] == "Spring Catalog.pdf"


def test_bad_input_through_api_gateway_is_a_4xx(handler: ModuleType, deployed: dict[str, Any]) -> None:
    body, content_type = _multipart("notes.pdf", b"plain text")
    status, problem = _call(handler, _event("POST", "/documents", body=body, content_type=content_type))
    assert status == 415 and "not a PDF" in problem["message"]
    status, problem = _call(handler, _event("GET", "/documents/" + "f" * 32))
    assert status == 404 and problem["error"] == "UnknownDocument"
    assert not deployed["s3"].list_objects_v2(Bucket=BUCKET).get("Contents")


def test_presigned_upload_on_aws_is_limited_to_uploads(handler: ModuleType, deployed: dict[str, Any]) -> None:
    event = _event("POST", "/uploads", body=json.dumps({"file_name": "../big one.pdf"}).encode(),
                   content_type="application/json")
    status, presigned = _call(handler, event)
    assert status == 200, presigned
    assert presigned["key"] == "uploads/big one.pdf" and presigned["fields"]["key"] == "uploads/big one.pdf"
    assert presigned["max_bytes"] > 4 * 1024 * 1024


def test_openapi_and_health(handler: ModuleType, deployed: dict[str, Any]) -> None:
    status, spec = _call(handler, _event("GET", "/openapi.json"))
    assert status == 200 and "/documents" in spec["paths"]
    status, health = _call(handler, _event("GET", "/health"))
    assert status == 200 and health["status"] == "ok", health


def test_an_upload_is_read_in_chunks_never_whole(deployed: dict[str, Any], tmp_path: Path) -> None:
    """The body spooled to disk is hashed and sent to S3 a chunk at a time (a 20 MiB file here)."""
    import io

    from pagemill.api import service

    reads: list[int] = []

    class Spy(io.BufferedReader):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(-1 if size is None else size)
            return super().read(size)

    path = tmp_path / "big.pdf"
    with open(path, "wb") as f:
        f.write(b"%PDF-1.7\n" + bytes(20 * 2**20))
    backend = replace(edge.api_backend(), max_upload_bytes=64 * 2**20)
    with Spy(io.FileIO(path, "rb")) as body, backend.connection() as conn:
        accepted = service.accept_upload(backend, conn, body, "big.pdf")
    assert reads and -1 not in reads and max(reads) <= 2**20
    stored = deployed["s3"].head_object(Bucket=BUCKET, Key="uploads/big.pdf")
    assert stored["ContentLength"] == path.stat().st_size and accepted.status == "running"


# --- search with the chunk vectors' model on Titan (Bedrock's runtime: tests/support/bedrock_standin) ---

TOPICS = [
    "The orchard harvest began in late September. Pickers filled wooden crates with ripe apples and pears.",
    ("The central bank raised interest rates by half a percentage point to curb inflation, and mortgage costs "
     "climbed for borrowers."),
    "Engineers replaced the corroded steel cables of the suspension bridge over the river during a closure.",
]
# Shares no word with its chunk (TOPICS[1]): only the chunk vectors find it.
QUESTION = "monetary policy tightening to fight rising prices"
REPORT = "c" * 32


@pytest.fixture
def on_titan(deployed: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedrockStandIn]:
    """The API configured as cdk.json deploys it (Titan), Bedrock's runtime a local stand-in, and one
    document whose chunks EmbedChunks embedded with that model."""
    from pagemill.db.documents import register_document
    from pagemill.db.write import ChunkVectors, write_document
    from pagemill.records import BatchResult, ChunkRecord, PageRecord
    from pagemill.settings import Settings
    from pagemill_tools.clip_testmodel import ensure_test_model

    with bedrock_standin() as bedrock:
        for name, value in {"PAGEMILL_TEXT_EMBEDDER": "titan", "PAGEMILL_TITAN_DIMENSIONS": str(DIMENSIONS),
                            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url,
                            "PAGEMILL_CLIP_DIR": str(ensure_test_model(tmp_path_factory.mktemp("clip")))}.items():
            monkeypatch.setenv(name, value)
        titan = edge.query_embedder(Settings.from_env())
        pages = [PageRecord(n, text, len(text), 595.0, 842.0) for n, text in enumerate(TOPICS, start=1)]
        chunks = [ChunkRecord(n - 1, n, n, text) for n, text in enumerate(TOPICS, start=1)]
        with edge.api_backend().connection() as conn:
            register_document(conn, document_id=REPORT, sha256=REPORT * 2, size_bytes=1,
                              source=SourceObject(BUCKET, f"uploads/{REPORT}.pdf"), execution_arn=None)
            write_document(conn, document_id=REPORT, batches=[BatchResult(REPORT, 0, 1, 3, 0.1, pages=pages,
                                                                          chunks=chunks, images=[])],
                           timings={}, stats={}, chunk_vectors=ChunkVectors(titan.model, list(titan.passages(TOPICS))))
        bedrock.requests.clear()
        yield bedrock


def test_search_on_titan_embeds_the_query_and_finds_a_chunk_by_meaning(
    handler: ModuleType, on_titan: BedrockStandIn
) -> None:
    # WHEN a question in other words than its chunk is searched through API Gateway
    status, hits = _call(handler, _event("GET", "/search", query=urlencode({"q": QUESTION, "limit": 3})))
    # THEN the query was embedded once, by the configured Titan model and dimensions
    assert status == 200, hits
    assert on_titan.texts() == [QUESTION]
    assert on_titan.requests[0]["model"] == "amazon.titan-embed-text-v2:0"
    assert on_titan.requests[0]["body"]["dimensions"] == DIMENSIONS
    # AND the chunk it means is the first hit, found by its vector
    chunks = [h for h in hits if h["kind"] == "chunk"]
    assert (chunks[0]["document_id"], chunks[0]["first_page"]) == (REPORT, 2)


def test_search_on_titan_answers_by_keyword_when_bedrock_is_down(
    handler: ModuleType, on_titan: BedrockStandIn
) -> None:
    # GIVEN Bedrock answering every request with an outage
    on_titan.failing = "ServiceUnavailableException"
    # WHEN searching  THEN the query was tried twice (the API's short retries), then chunks come by keyword
    status, hits = _call(handler, _event("GET", "/search", query=urlencode({"q": "interest rates", "limit": 3})))
    assert status == 200, hits
    assert on_titan.texts() == ["interest rates"] * edge.QUERY_RETRY_ATTEMPTS
    chunks = [h for h in hits if h["kind"] == "chunk"]
    assert (chunks[0]["document_id"], chunks[0]["first_page"]) == (REPORT, 2) and "«interest»" in chunks[0]["text"]
    # AND a question only the vectors could answer finds no chunk (nothing by keyword)
    status, hits = _call(handler, _event("GET", "/search", query=urlencode({"q": QUESTION})))
    assert status == 200 and not [h for h in hits if h["kind"] == "chunk"]
