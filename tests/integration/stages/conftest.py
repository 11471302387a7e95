"""Each stage function on its own: moto S3 (and DynamoDB for the model stages), the embedded
PostgreSQL, generated PDFs. A stage's input is what the one before it wrote, made by running the
real earlier stages, and parsed from the JSON the state machine passes (pagemill.payloads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws

from pagemill.captions.breaker import CircuitBreaker, DynamoDbBreakerStore
from pagemill.captions.budget import DynamoDbTokenBudget
from pagemill.captions.client import build_client
from pagemill.clip.model import ClipModel
from pagemill.db.connect import connect
from pagemill.payloads import DocumentInput
from pagemill.pipeline.collect_images import collect_images
from pagemill.pipeline.context import ModelAccess, StageContext
from pagemill.pipeline.extract_batch import extract_batch
from pagemill.pipeline.plan import plan
from pagemill.records import BatchSpec, load
from pagemill.storage import SourceCache
from pagemill_tools.clip_testmodel import ensure_test_model
from pagemill_tools.sample import make_catalog
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.moto_aws import create_captions_table, fake_credentials
from tests.support.stages import (
    REGION,
    SETTINGS,
    TABLE,
    UPLOADS,
    WORK,
    Upload,
    manifest_items,
    plan_input,
    upload_pdf,
)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_credentials(monkeypatch, REGION)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        for bucket in (UPLOADS, WORK):
            client.create_bucket(Bucket=bucket)
        client.put_bucket_versioning(Bucket=UPLOADS, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def dynamodb(s3: Any) -> Any:
    return create_captions_table(TABLE, REGION)


@pytest.fixture
def ctx(s3: Any, tmp_path: Path) -> StageContext:
    return StageContext(s3=s3, settings=SETTINGS, work_bucket=WORK, scratch=tmp_path / "scratch")


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The connection a stage gets (as the handlers' db_connection makes it)."""
    with connect(database_url) as connection:
        yield connection


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Another session, for the assertions: it sees only what a stage committed."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def upload(s3: Any, tmp_path: Path) -> Upload:
    path = tmp_path / "catalog.pdf"
    truth = make_catalog(path, pages=6)
    return Upload(upload_pdf(s3, path, "uploads/catalog.pdf"), truth, path)


@pytest.fixture
def planned(ctx: StageContext, conn: psycopg.Connection[Any], upload: Upload) -> dict[str, Any]:
    """Plan's result (the state's $.plan)."""
    return plan(ctx, conn, plan_input(upload.source))


@pytest.fixture
def manifest(ctx: StageContext, planned: dict[str, Any]) -> list[BatchSpec]:
    return manifest_items(ctx, planned["manifest_key"])


@pytest.fixture
def extracted(ctx: StageContext, manifest: list[BatchSpec], tmp_path: Path) -> list[dict[str, Any]]:
    """Every ExtractBatch result of the document."""
    cache = SourceCache(tmp_path / "sources")
    return [extract_batch(ctx, spec, cache) for spec in manifest]


@pytest.fixture
def document(planned: dict[str, Any], extracted: list[dict[str, Any]]) -> DocumentInput:
    """CollectImages' and UnderstandDocument's input, once every batch is extracted."""
    return load(DocumentInput, {"document_id": planned["document_id"], "manifest_key": planned["manifest_key"]})


@pytest.fixture
def collected(ctx: StageContext, document: DocumentInput) -> dict[str, Any]:
    """CollectImages' result (the state's $.images)."""
    return collect_images(ctx, document)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipModel:
    """The generated CLIP test model (same shapes and interface as the real one)."""
    return ClipModel.load(ensure_test_model(tmp_path_factory.mktemp("clip")))


@pytest.fixture
def model(dynamodb: Any, fake_anthropic: FakeAnthropic, document: DocumentInput) -> ModelAccess:
    """The model as the handlers reach it: the real SDK against the fake Messages API, the
    DynamoDB breaker and this document's token budget."""
    s = SETTINGS
    store = DynamoDbBreakerStore(TABLE, f"{s.caption_provider}:{s.caption_model}", dynamodb)
    breaker = CircuitBreaker(store, failure_threshold=s.breaker_failure_threshold,
                             window_seconds=s.breaker_window_seconds, cooldown_seconds=s.breaker_cooldown_seconds)
    budget = DynamoDbTokenBudget(TABLE, document.document_id, s.caption_token_budget, dynamodb)
    client = build_client(s, api_key="sk-test", base_url=fake_anthropic.base_url)
    return ModelAccess(client, breaker, budget)
