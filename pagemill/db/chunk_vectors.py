"""Chunk vectors after Write: the per-model HNSW index, and re-embedding every chunk with
another model (``pagemill reembed``).

The index is an expression index on ``embedding::halfvec(dim)`` restricted to one model's rows:
halfvec halves its size and build time at the same recall (bench/RESULTS.md, HNSW at scale), and
the restriction keeps vectors of two models from ever being compared. It is built after bulk
loads, never before: rows go into a bare table about 30x faster than into an indexed one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from pagemill.db.connect import unavailable_on_failure
from pagemill.search.hybrid import chunk_index_name, chunk_vector

if TYPE_CHECKING:
    from pagemill.text_embed.embedder import TextEmbedder

log = logging.getLogger(__name__)

# An advisory lock so that two Writes of a fresh database do not both build the index.
_INDEX_LOCK = int.from_bytes(b"pm-chidx", "big")


@dataclass(frozen=True)
class ReembedCounts:
    chunks: int  # vectors written by this call
    model: str
    index_seconds: float


def index_exists(conn: Any, model: str) -> bool:
    # In a transaction of its own: a bare query would leave the function's reused connection in an
    # open transaction, and the next invocation's transaction() would only be a savepoint in it.
    with unavailable_on_failure("looking up the chunk vector index"), conn.transaction():
        return conn.execute("select to_regclass(%s) is not null", (chunk_index_name(model),)).fetchone()[0]


def build_index(conn: Any, model: str, dim: int, *, maintenance_work_mem: str = "1GB") -> None:
    """Create the model's HNSW index if it is missing (idle connection; commits)."""
    with unavailable_on_failure("building the chunk vector index"), conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_INDEX_LOCK,))
        # The graph must fit in maintenance_work_mem or the build spills and takes 2.4x as long.
        conn.execute("select set_config('maintenance_work_mem', %s, true)", (maintenance_work_mem,))
        conn.execute(sql.SQL(
            "create index if not exists {name} on chunks using hnsw ({expr} halfvec_cosine_ops)"
            " where embedding_model = {model}"
        ).format(name=sql.Identifier(chunk_index_name(model)), expr=chunk_vector(dim), model=sql.Literal(model)))


def drop_index(conn: Any, model: str) -> None:
    with unavailable_on_failure("dropping the chunk vector index"), conn.transaction():
        conn.execute(sql.SQL("drop index if exists {}").format(sql.Identifier(chunk_index_name(model))))


def models_stored(conn: Any) -> dict[str | None, int]:
    """Chunks per embedding model (None: chunks without a vector)."""
    with unavailable_on_failure("counting chunk vectors"), conn.transaction():
        rows = conn.execute("select embedding_model, count(*) from chunks group by embedding_model").fetchall()
    return {model: count for model, count in rows}


@dataclass(frozen=True)
class ReembedProgress:
    chunks: int  # vectors written by this call
    remaining: int  # chunks still without a vector of the model


def chunks_to_reembed(conn: Any, model: str) -> int:
    """Chunks without a vector of ``model`` (another model's, or none: an embedding outage's)."""
    # Each statement in a transaction of its own (here and below): a bare query would open one that
    # every later transaction() only nests in, and no batch would commit until the end.
    with unavailable_on_failure("counting chunks to re-embed"), conn.transaction():
        return conn.execute(
            "select count(*) from chunks where embedding_model is distinct from %s", (model,)
        ).fetchone()[0]


def reembed_batches(
    conn: Any,
    embedder: TextEmbedder,
    *,
    batch_size: int = 256,
    max_chunks: int | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReembedProgress:
    """Give chunks that have no vector of ``embedder.model`` one, batch by batch, until none is left,
    ``max_chunks`` are done or ``keep_going()`` says stop (checked before each batch). Each batch
    commits, so a stopped or interrupted run loses nothing and the next call goes on from there;
    chunks already embedded by the model are never written again. The model's index is dropped
    first (rows go into a bare table far faster than into an indexed one): ``build_reembedded_index``
    builds it once at the end. This is the one "re-embed a batch" of `pagemill reembed` locally and
    of ReembedBatch on AWS."""
    todo = chunks_to_reembed(conn, embedder.model)
    if todo:
        drop_index(conn, embedder.model)
    done = 0
    while done < todo and (max_chunks is None or done < max_chunks) and keep_going():
        size = batch_size if max_chunks is None else min(batch_size, max_chunks - done)
        with unavailable_on_failure("re-embedding chunks"), conn.transaction():
            # skip locked: two runs at once share the work instead of embedding the same chunks.
            rows = conn.execute(
                "select document_id, chunk_no, text from chunks where embedding_model is distinct from %s"
                " order by document_id, chunk_no limit %s for update skip locked",
                (embedder.model, size),
            ).fetchall()
            if not rows:
                break
            vectors = embedder.passages([text for _, _, text in rows])
            with conn.cursor() as cur:
                cur.executemany(
                    "update chunks set embedding = %s, embedding_model = %s where document_id = %s and chunk_no = %s",
                    [(vector, embedder.model, doc, no) for (doc, no, _), vector in zip(rows, vectors)],
                )
        done += len(rows)
        if on_progress is not None:
            on_progress(done, todo)
    # Counted again, not todo - done: another run may have embedded chunks meanwhile, or a Write of
    # the old configuration added some.
    remaining = chunks_to_reembed(conn, embedder.model) if todo else 0
    log.info("chunks re-embedded", extra={"model": embedder.model, "chunks": done, "remaining": remaining})
    return ReembedProgress(chunks=done, remaining=remaining)


def build_reembedded_index(conn: Any, model: str, dim: int) -> float:
    """After re-embedding: build ``model``'s index and drop those of models no chunk uses any more;
    returns the build's seconds."""
    began = time.monotonic()
    build_index(conn, model, dim)
    index_seconds = time.monotonic() - began
    with unavailable_on_failure("listing chunk vector indexes"), conn.transaction():
        stale = conn.execute(
            "select indexname from pg_indexes where tablename = 'chunks' and indexname like 'chunks_embedding_%%'"
            " and indexname <> %s", (chunk_index_name(model),)
        ).fetchall()
    for (name,) in stale:
        with unavailable_on_failure("dropping a stale chunk vector index"), conn.transaction():
            conn.execute(sql.SQL("drop index if exists {}").format(sql.Identifier(name)))
    log.info("chunk vector index built", extra={"model": model, "index_seconds": round(index_seconds, 2)})
    return index_seconds


def reembed(
    conn: Any,
    embedder: TextEmbedder,
    *,
    batch_size: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReembedCounts:
    """Re-embed every chunk that has no vector of ``embedder.model`` in this process, then build
    the model's index (`pagemill reembed`; on AWS the reembed state machine makes the same calls)."""
    progress = reembed_batches(conn, embedder, batch_size=batch_size, on_progress=on_progress)
    index_seconds = build_reembedded_index(conn, embedder.model, embedder.dim)
    return ReembedCounts(chunks=progress.chunks, model=embedder.model, index_seconds=round(index_seconds, 3))
