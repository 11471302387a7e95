"""Shared by the captions end-to-end modules: a fake Messages API that answers like Claude would
for pagemill's two tools, and a local engine pointed at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

from pagemill.captions.caption import TOOL_NAME as CAPTION_TOOL
from pagemill_tools.engine.engine import EngineOptions, LocalEngine
from pagemill_tools.engine.template import REGION
from pagemill_tools.sample import CatalogTruth, make_catalog
from tests.support.fake_anthropic import FakeAnthropic

CAPTION = {"caption": "A wooden chair on a white background.", "tags": ["chair", "wood"]}
UNDERSTANDING = {
    "document_type": "product_catalog",
    "summary": "A furniture catalog.",
    "products": [
        {"name": "Oak chair", "attributes": {"sku": "OC-1", "price": "120 EUR"}, "page": 2},
        {"name": "Pine table", "attributes": {"sku": "PT-9"}, "page": 3},
    ],
}
THRESHOLD = 5  # PAGEMILL_BREAKER_FAILURE_THRESHOLD below


def answer(request: dict[str, Any]) -> dict[str, Any]:
    return CAPTION if request["tool_choice"]["name"] == CAPTION_TOOL else UNDERSTANDING


def engine_for(fake: FakeAnthropic, home: Path, database_url: str, **env: str) -> LocalEngine:
    return LocalEngine(EngineOptions(
        home=home, database_url=database_url, workers=2,
        function_env={
            "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.base_url,
            # Quick retries, a breaker that stays open for the rest of the test once it opens.
            "PAGEMILL_CAPTION_RETRY_BASE_SECONDS": "0.05", "PAGEMILL_CAPTION_RETRY_MAX_SECONDS": "0.2",
            "PAGEMILL_BREAKER_FAILURE_THRESHOLD": str(THRESHOLD), "PAGEMILL_BREAKER_COOLDOWN_SECONDS": "600",
            **env,
        },
    ))


def clear_tables(engine: LocalEngine) -> None:
    """The breaker and the budgets start afresh (the tables live in the engine's moto)."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for table, key in engine.deployment.tables.items():
        for item in dynamodb.scan(TableName=table)["Items"]:
            dynamodb.delete_item(TableName=table, Key={key: item[key]})


def run_catalog(engine: LocalEngine, tmp_path: Path, pages: int, seed: int) -> tuple[Any, CatalogTruth]:
    path = tmp_path / f"catalog-{pages}-{seed}.pdf"
    truth = make_catalog(path, pages=pages, seed=seed)
    document = engine.submit(path)
    engine.wait([document])
    return document, truth


def image_rows(db: Any, document_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "select caption, tags, caption_status, caption_reason from images where document_id = %s",
        (document_id,),
    ).fetchall()
