"""EmbedChunks and Write together: chunk vectors go through S3 into Write's COPY transaction;
an embedding service outage leaves the chunks without vectors and the document partial, with a
warning that says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pagemill import keys, storage
from pagemill.captions.breaker import CircuitBreaker, InMemoryBreakerStore
from pagemill.captions.client import RetryPolicy
from pagemill.db.chunk_vectors import index_exists
from pagemill.db.connect import connect
from pagemill.db.documents import register_document
from pagemill.payloads import ChunkVectorsBranch, DocumentInput, WriteInput
from pagemill.pipeline.context import StageContext
from pagemill.pipeline.embed_chunks import embed_chunks
from pagemill.pipeline.write import write
from pagemill.records import BatchResult, BatchSpec, ChunkRecord, PageRecord, SourceObject, dump, load
from pagemill.settings import Settings
from pagemill.text_embed.select import local_embedder
from pagemill.text_embed.titan import TitanEmbedder

BUCKET = "work"
DOC = "c" * 32
SOURCE = SourceObject("uploads", "uploads/doc.pdf")


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> Iterator[StageContext]:
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        ctx = StageContext(s3=s3, settings=Settings(), work_bucket=BUCKET)
        specs = [BatchSpec(DOC, SOURCE, 0, 1, 2), BatchSpec(DOC, SOURCE, 1, 3, 4)]
        storage.put_json(s3, BUCKET, keys.manifest_key(DOC), dump(specs))
        for spec in specs:
            pages = [PageRecord(p, f"page {p}", 6, 595.0, 842.0) for p in range(spec.first_page, spec.last_page + 1)]
            # Chunk numbers are per batch and stored out of order: Write renumbers them.
            chunks = [ChunkRecord(n, spec.first_page, spec.last_page, f"batch {spec.batch_no} chunk {n} about harvest")
                      for n in (1, 0)]
            result = BatchResult(DOC, spec.batch_no, spec.first_page, spec.last_page, 0.1, pages=pages, chunks=chunks)
            storage.put_json(s3, BUCKET, keys.batch_result_key(DOC, spec.first_page, spec.last_page), dump(result))
        yield ctx


@pytest.fixture
def conn(database_url: str) -> Iterator[Any]:
    with connect(database_url) as c:
        register_document(c, document_id=DOC, sha256=DOC * 2, size_bytes=1, source=SOURCE, execution_arn=None)
        yield c


def written(branch: dict[str, Any]) -> WriteInput:
    """Write's payload with EmbedChunks' outcome, as the state machine passes it on."""
    return WriteInput(DOC, keys.manifest_key(DOC), chunk_vectors=load(ChunkVectorsBranch, branch))


def test_chunk_vectors_are_written_with_their_chunks_in_order(ctx: StageContext, conn: Any) -> None:
    embedder = local_embedder("wordllama")
    result = embed_chunks(ctx, DocumentInput(DOC, keys.manifest_key(DOC)), embedder)
    # (its span is the handler's to add: pagemill.aws.handler)
    assert result == {"key": keys.chunk_vectors_key(DOC), "model": embedder.model, "chunks": 4, "error": None,
                      "span": None}
    write(ctx, conn, written(result))
    rows = conn.execute("select chunk_no, text, embedding, embedding_model from chunks order by chunk_no").fetchall()
    assert [(n, text) for n, text, _, _ in rows] == [
        (0, "batch 0 chunk 0 about harvest"), (1, "batch 0 chunk 1 about harvest"),
        (2, "batch 1 chunk 0 about harvest"), (3, "batch 1 chunk 1 about harvest"),
    ]
    # Each row holds the vector of its own text, made by the model it names.
    for _, text, vector, model in rows:
        assert model == embedder.model and np.allclose(np.asarray(vector.to_list()), embedder.query(text), atol=1e-6)
    assert index_exists(conn, embedder.model)
    status, stats = conn.execute("select status, stats from documents where id = %s", (DOC,)).fetchone()
    assert status == "succeeded" and stats["chunk_vectors"] == {"model": embedder.model, "error": None}


def test_an_embedding_outage_writes_the_document_without_vectors_and_says_why(ctx: StageContext, conn: Any) -> None:
    bedrock = boto3.client("bedrock-runtime", region_name="us-east-1")
    breaker = CircuitBreaker(InMemoryBreakerStore(), failure_threshold=2, window_seconds=60, cooldown_seconds=60)
    titan = TitanEmbedder(bedrock, breaker=breaker, concurrency=1, policy=RetryPolicy(2, 0, 0), sleep=lambda s: None)
    with Stubber(bedrock) as stub:
        for _ in range(2):
            stub.add_client_error("invoke_model", "ServiceUnavailableException", "down", 503)
        result = embed_chunks(ctx, DocumentInput(DOC, keys.manifest_key(DOC)), titan)
    assert result["key"] is None and result["error"].startswith("gave up after 2 attempts")
    write(ctx, conn, written(result))
    assert conn.execute("select count(*), count(embedding) from chunks").fetchone() == (4, 0)
    # THEN the document is partial, and its warning says what is missing and how to fill it
    status, stats, warnings = conn.execute(
        "select status, stats, warnings from documents where id = %s", (DOC,)).fetchone()
    assert stats["chunk_vectors"]["model"] == titan.model and "gave up" in stats["chunk_vectors"]["error"]
    assert status == "partial" and [w["code"] for w in warnings] == ["chunk_vectors_missing"]
    assert "gave up after 2 attempts" in warnings[0]["message"] and "pagemill reembed" in warnings[0]["message"]
