"""An embedding service outage, end to end: EmbedChunks on Titan through moto's bedrock-runtime
(which answers every InvokeModel with an empty body: no vector) gives no vectors; the document is
still written, its chunks without vectors, and it ends partial with a warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemill_tools.engine.engine import EngineOptions, LocalEngine
from tests.e2e.conftest import run_catalog


@pytest.fixture(scope="module")
def engine(engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    options = EngineOptions(home=engine_home, database_url=module_database_url, workers=2,
                            function_env={"PAGEMILL_TEXT_EMBEDDER": "titan", "PAGEMILL_CAPTION_MAX_ATTEMPTS": "2",
                                          "PAGEMILL_CAPTION_RETRY_BASE_SECONDS": "0"})
    with LocalEngine(options) as running:
        yield running


def test_an_embedding_outage_leaves_the_document_partial_with_a_warning(
    engine: LocalEngine, db, tmp_path: Path
) -> None:
    run = run_catalog(engine, tmp_path, pages=3)
    # THEN the execution went through EmbedChunks and Write, never RecordFailure
    visited = engine.visited_states(run.execution_arn)
    assert run.status == "SUCCEEDED" and "EmbedChunks" in visited and "RecordFailure" not in visited
    total, embedded = db.execute(
        "select count(*), count(embedding) from chunks where document_id = %s", (run.document_id,)
    ).fetchone()
    assert total > 0 and embedded == 0
    status, stats, warnings = db.execute(
        "select status, stats, warnings from documents where id = %s", (run.document_id,)).fetchone()
    assert stats["chunk_vectors"]["model"] == "bedrock:amazon.titan-embed-text-v2:0:1024:norm"
    assert stats["chunk_vectors"]["error"].startswith("malformed answer")
    # AND the document is partial, never failed, with the warning that says how to fill it
    assert status == "partial" and [w["code"] for w in warnings] == ["chunk_vectors_missing"]
