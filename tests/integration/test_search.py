"""Hybrid search against a real PostgreSQL: full text, chunk vectors from the offline embedder,
image captions and CLIP vectors, filters, fusion arithmetic, and re-embedding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from pagemill.db.chunk_vectors import build_index, index_exists, models_stored, reembed
from pagemill.db.connect import connect
from pagemill.db.documents import register_document
from pagemill.db.write import ChunkVectors, write_document
from pagemill.records import BatchResult, ChunkRecord, ImageOccurrence, PageRecord, SourceObject
from pagemill.search.fusion import rrf_scores
from pagemill.search.hybrid import RANK_POOL, SearchFilters, SearchUnavailable, search
from pagemill.text_embed.select import local_embedder

# One topic a page; each sentence shares no word stem with its question in QUESTIONS.
TOPICS = [
    "The orchard harvest began in late September. Pickers filled wooden crates with ripe apples and pears, "
    "and the cider press ran day and night.",
    "The central bank raised interest rates by half a percentage point to curb inflation, and mortgage costs "
    "climbed for borrowers.",
    "Engineers replaced the corroded steel cables of the suspension bridge over the river during a "
    "three-month closure.",
    "The striker scored twice in the second half, and the home team won the championship final in front of a "
    "sold-out stadium.",
    "Patients with a persistent cough and high fever should see a physician, who may prescribe antibiotics "
    "for a bacterial infection.",
    "The orchestra rehearsed the symphony for weeks before the premiere; the violinists and the conductor "
    "received a standing ovation.",
]
QUESTIONS = {
    0: "fruit gathering season on the farm",
    1: "monetary policy tightening to fight rising prices",
    4: "doctor visit for illness",
}
# Long enough for its language to be recognised (English: stemmed, stop words dropped).
MANUAL_TEXT = (
    "The suspension bridge manual: inspect the steel cables every spring and after every storm. Look for "
    "broken wires, rust at the anchors and loose clamps, and write down what you find in the log that is "
    "kept in the office at the north tower, so that the next crew can see what was done and when it was done."
)
REPORT = "a" * 32
MANUAL = "b" * 32


def _document(conn: psycopg.Connection[Any], document_id: str, topics: list[str], *, vectors: bool,
              images: list[ImageOccurrence] | None = None) -> None:
    register_document(conn, document_id=document_id, sha256=document_id * 2, size_bytes=1,
                      source=SourceObject("uploads", f"uploads/{document_id}.pdf"), execution_arn=None)
    pages = [PageRecord(n, text, len(text), 595.0, 842.0) for n, text in enumerate(topics, start=1)]
    chunks = [ChunkRecord(n - 1, n, n, text) for n, text in enumerate(topics, start=1)]
    embedder = local_embedder("wordllama")
    chunk_vectors = ChunkVectors(embedder.model, list(embedder.passages(topics))) if vectors else None
    batch = BatchResult(document_id, 0, 1, len(topics), 0.1, pages=pages, chunks=chunks, images=images or [])
    clip = {image.sha256: _unit(int(image.sha256, 16)) for image in images or []}
    write_document(conn, document_id=document_id, batches=[batch], timings={}, stats={},
                   embeddings=clip or None, chunk_vectors=chunk_vectors)


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return v / np.linalg.norm(v)


def _image(n: int, page_no: int) -> ImageOccurrence:
    return ImageOccurrence(f"{n:02x}", page_no, (0, 0, 10, 10), 100, 100, "png", f"images/{n}.png", 10)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(database_url) as c:
        _document(c, REPORT, TOPICS, vectors=True, images=[_image(1, 2), _image(2, 5)])
        _document(c, MANUAL, [MANUAL_TEXT], vectors=True)
        c.execute("update images set caption = 'a chart of interest rates over ten years' where image_no = 0")
        c.execute("update images set caption = 'a stethoscope on a hospital bed' where image_no = 1")
        c.execute("update documents set doc_type = 'manual' where id = %s", (MANUAL,))
        c.commit()
        build_index(c, local_embedder("wordllama").model, local_embedder("wordllama").dim)
        yield c


def chunk_hits(hits: list[Any]) -> list[tuple[str, int]]:
    return [(h.document_id, h.chunk_no) for h in hits if h.kind == "chunk"]


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_an_exact_phrase_ranks_its_chunk_first(conn: Any, mode: str) -> None:
    # GIVEN six chunks on six topics  WHEN searching a phrase of one of them
    hits = search(conn, "corroded steel cables of the suspension bridge", mode=mode, limit=5,
                  embedder=local_embedder("wordllama"))
    # THEN that chunk is the first hit, with its pages and the matched words marked
    assert hits[0].kind == "chunk" and (hits[0].document_id, hits[0].chunk_no) == (REPORT, 2)
    assert (hits[0].first_page, hits[0].last_page) == (3, 3)
    assert "«corroded»" in hits[0].text and "«cables»" in hits[0].text
    assert hits[0].keyword_rank == 1


@pytest.mark.parametrize("topic", sorted(QUESTIONS))
def test_a_question_in_other_words_finds_its_chunk_by_vector_only(conn: Any, topic: int) -> None:
    question = QUESTIONS[topic]
    # GIVEN a question sharing no word with its chunk: full text does not find it
    assert (REPORT, topic) not in chunk_hits(search(conn, question, mode="keyword", limit=10))
    # WHEN searching by vector with the offline model  THEN the chunk comes first
    hits = search(conn, question, mode="vector", limit=3, embedder=local_embedder("wordllama"))
    assert chunk_hits(hits)[0] == (REPORT, topic)
    # and hybrid keeps it first
    hits = search(conn, question, mode="hybrid", limit=3, embedder=local_embedder("wordllama"))
    assert chunk_hits(hits)[0] == (REPORT, topic)


def test_filters_by_document_pages_and_type(conn: Any) -> None:
    embedder = local_embedder("wordllama")
    both = search(conn, "steel cables suspension bridge", mode="hybrid", limit=10, embedder=embedder)
    assert {REPORT, MANUAL} <= {h.document_id for h in both if h.kind == "chunk"}
    only_manual = search(conn, "steel cables suspension bridge", limit=10, embedder=embedder,
                         filters=SearchFilters(document_id=MANUAL))
    assert {h.document_id for h in only_manual} == {MANUAL}
    by_type = search(conn, "steel cables suspension bridge", limit=10, embedder=embedder,
                     filters=SearchFilters(doc_type="manual"))
    assert {h.document_id for h in by_type} == {MANUAL}
    pages = search(conn, "rates", mode="vector", limit=20, embedder=embedder,
                   filters=SearchFilters(document_id=REPORT, first_page=2, last_page=4))
    assert pages and all(2 <= (h.first_page if h.kind == "chunk" else h.page_no) <= 4 for h in pages)
    assert len([h for h in pages if h.kind == "chunk"]) == 3


def test_images_by_caption_words_and_clip_vector(conn: Any) -> None:
    # Caption words: the English configuration stems "rate" to match "rates".
    hits = search(conn, "interest rate chart", mode="keyword", limit=10)
    images = [h for h in hits if h.kind == "image"]
    assert [(h.document_id, h.image_no, h.page_no) for h in images] == [(REPORT, 0, 2)]
    assert images[0].caption == "a chart of interest rates over ten years" and images[0].s3_key == "images/1.png"
    # A CLIP text vector next to image 2's vector ranks it first among images.
    hits = search(conn, "anything", mode="vector", limit=10, image_query=_unit(2))
    assert [(h.kind, h.image_no) for h in hits][0] == ("image", 1)


def test_fused_scores_are_reciprocal_rank_sums(conn: Any) -> None:
    hits = search(conn, "bank interest rates for borrowers", mode="hybrid", limit=20,
                  embedder=local_embedder("wordllama"), image_query=_unit(1))
    for hit in hits:
        ranks = [r for r in (hit.keyword_rank, hit.vector_rank) if r is not None]
        assert hit.score == pytest.approx(sum(1 / (60 + r) for r in ranks), abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_rrf_arithmetic() -> None:
    scores = rrf_scores([["a", "b", "c"], ["c", "a"]], k=60)
    assert scores == pytest.approx({"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61})


def test_vector_mode_without_an_embedder_is_refused(conn: Any) -> None:
    with pytest.raises(SearchUnavailable, match="embedder"):
        search(conn, "bridge", mode="vector")
    with pytest.raises(SearchUnavailable, match="mode"):
        search(conn, "bridge", mode="fuzzy")


def test_reembedding_replaces_every_vector_once(conn: Any) -> None:
    old, new = local_embedder("wordllama"), local_embedder("e5")
    total = conn.execute("select count(*) from chunks").fetchone()[0]
    conn.execute("create temp table writes (n int)")
    conn.execute("create function pg_temp.count_write() returns trigger language plpgsql as"
                 " $$ begin insert into writes values (1); return new; end $$")
    conn.execute("create trigger count_write after update of embedding on chunks"
                 " for each row execute function pg_temp.count_write()")
    conn.commit()
    # WHEN the model changes and reembed runs (twice)
    first = reembed(conn, new, batch_size=3)
    second = reembed(conn, new, batch_size=3)
    # THEN every chunk got exactly one new vector, the second run wrote none
    assert (first.chunks, second.chunks) == (total, 0)
    assert conn.execute("select count(*) from writes").fetchone()[0] == total
    assert models_stored(conn) == {new.model: total}
    assert conn.execute("select count(*) from chunks where vector_dims(embedding) <> %s", (new.dim,)).fetchone()[0] == 0
    # and the new model's index replaced the old one; queries with the old model find nothing
    assert index_exists(conn, new.model) and not index_exists(conn, old.model)
    assert chunk_hits(search(conn, QUESTIONS[1], mode="vector", limit=3, embedder=old)) == []
    assert chunk_hits(search(conn, QUESTIONS[1], mode="vector", limit=3, embedder=new))[0] == (REPORT, 1)


def test_the_search_command_prints_hits_of_both_kinds_and_says_the_clip_model_is_a_test_model(
    conn: Any, database_url: str, tmp_path: Any
) -> None:
    import json

    from typer.testing import CliRunner

    from pagemill_tools.cli import app

    runner = CliRunner(env={"PAGEMILL_HOME": str(tmp_path), "PAGEMILL_CLIP_DIR": None})
    result = runner.invoke(app, ["search", "interest rates", "--json", "--limit", "5", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert {h["kind"] for h in hits} == {"chunk", "image"}
    chunk = next(h for h in hits if h["kind"] == "chunk")
    assert chunk["document_id"] == REPORT and (chunk["first_page"], chunk["last_page"]) == (2, 2)
    assert "«interest»" in chunk["text"]
    image = next(h for h in hits if h["kind"] == "image")
    assert image["page_no"] == 2 and image["caption"] and image["out"].endswith(".png")
    assert "test CLIP model" in result.stderr
    refused = runner.invoke(app, ["search", "x", "--mode", "fuzzy", "--database-url", database_url])
    assert refused.exit_code == 2 and "search mode must be one of" in refused.output
    # reembed with the configured model: every chunk already has its vector, nothing is written
    again = runner.invoke(app, ["reembed", "--database-url", database_url])
    assert again.exit_code == 0 and again.stdout.startswith("0 chunks re-embedded with wordllama-l2-supercat-256")


def _committee_chunks(conn: Any) -> None:
    """More chunks holding "committee" and "budget" than a keyword list ranks."""
    conn.execute(
        "insert into chunks (document_id, chunk_no, first_page, last_page, text, ts_config)"
        " select %s, 100 + n, 1, 1, 'the committee reviewed the annual budget report', 'english'"
        " from generate_series(0, %s) n",
        (MANUAL, RANK_POOL + 200),
    )


def test_among_more_chunks_than_it_ranks_a_question_ranks_those_holding_its_rarest_words(conn: Any) -> None:
    """Past RANK_POOL chunks holding some word of the question (and none holding all), the chunks
    ranked are those holding its rarest words, not the first RANK_POOL the table holds."""
    _committee_chunks(conn)
    conn.execute(
        "insert into chunks (document_id, chunk_no, first_page, last_page, text, ts_config)"
        " values (%s, 99999, 7, 7, 'the committee reviewed the walrus enclosure budget', 'english')", (MANUAL,))
    conn.execute("insert into text_search_configs values ('english') on conflict do nothing")
    conn.execute("analyze chunks")  # what autovacuum does to a table that grew this much
    conn.commit()
    # GIVEN 1,200 chunks holding "committee" and "budget", the last one also "walrus"
    # WHEN asking for all three and a word no chunk holds
    hits = search(conn, "committee budget walrus ferry", mode="keyword", limit=3)
    # THEN the chunk with the rare word is ranked, and first
    assert chunk_hits(hits)[0] == (MANUAL, 99999)


def test_a_chunk_holding_every_word_is_found_through_its_rarest_words_and_ranked_first(conn: Any) -> None:
    """Chunks holding every word are looked for among those holding the rarest words (the index
    reads only their posting lists); the other words are checked on the chunks found."""
    _committee_chunks(conn)
    conn.execute(
        "insert into chunks (document_id, chunk_no, first_page, last_page, text, ts_config) values"
        " (%s, 99998, 8, 8, 'the ferry committee approved the walrus budget', 'english'),"
        " (%s, 99999, 7, 7, 'the committee reviewed the walrus enclosure budget', 'english')", (MANUAL, MANUAL))
    conn.execute("insert into text_search_configs values ('english') on conflict do nothing")
    conn.execute("analyze chunks")
    conn.commit()
    # GIVEN 450 chunks holding "committee" and "budget", one of them also "walrus" and one also
    # "walrus" and "ferry"
    # WHEN asking for all four
    hits = search(conn, "committee budget walrus ferry", mode="keyword", limit=3)
    # THEN the one holding all four is first, the one missing "ferry" second
    assert chunk_hits(hits)[:2] == [(MANUAL, 99998), (MANUAL, 99999)]
    # AND a word the question excludes is not required: "-ferry" ranks the walrus chunk without it first
    hits = search(conn, "committee budget walrus -ferry", mode="keyword", limit=3)
    assert chunk_hits(hits)[0] == (MANUAL, 99999)
