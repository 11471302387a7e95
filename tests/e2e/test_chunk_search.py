"""Chunk embeddings end to end: the local engine runs EmbedChunks in Enrich (the offline model),
Write stores a vector with every chunk, and a phrase from the document finds its chunk."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemill.search.hybrid import search
from pagemill.text_embed.select import local_embedder
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.sample import make_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("search") / "catalog.pdf"
    make_catalog(path, pages=6)
    return path


def test_every_chunk_is_embedded_in_enrich_and_found_by_its_words(engine: LocalEngine, db, catalog: Path) -> None:
    # GIVEN a catalog run through the local pipeline
    run = engine.submit(catalog)
    engine.wait([run])
    assert run.status == "SUCCEEDED"
    assert "EmbedChunks" in engine.visited_states(run.execution_arn)
    # THEN every chunk has a vector of the offline model, and the document says no vector is missing
    embedder = local_embedder("wordllama")
    total, embedded, models = db.execute(
        "select count(*), count(embedding), array_agg(distinct embedding_model) from chunks where document_id = %s",
        (run.document_id,),
    ).fetchone()
    assert total > 0 and embedded == total and models == [embedder.model]
    stats = db.execute("select stats from documents where id = %s", (run.document_id,)).fetchone()[0]
    assert stats["chunk_vectors"] == {"model": embedder.model, "error": None}
    # AND a phrase of a chunk finds that chunk first, by keyword and hybrid
    chunk_no, text = db.execute(
        "select chunk_no, text from chunks where document_id = %s order by length(text) desc limit 1",
        (run.document_id,),
    ).fetchone()
    phrase = " ".join(text.split()[5:12])
    for mode in ("keyword", "hybrid"):
        hits = search(db, phrase, mode=mode, limit=3, embedder=embedder)
        assert (hits[0].kind, hits[0].document_id, hits[0].chunk_no) == ("chunk", run.document_id, chunk_no), mode
