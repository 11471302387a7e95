"""The Write stage's database part: one transaction that replaces a document's pages, chunks and
images with binary COPY and marks it succeeded.

Binary COPY because it is the fast path by a wide margin (see bench/bench_db_write.py) and sends
vectors as packed floats instead of formatted text. Rows stream from the batches as they arrive:
one batch is in memory at a time, plus one entry per distinct image for the merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pagemill.db.connect import unavailable_on_failure
from pagemill.errors import InternalError
from pagemill.pdf.language import SIMPLE, text_search_config
from pagemill.records import BatchResult, ImageOccurrence

_PAGES = (
    "COPY pages (document_id, page_no, markdown, char_count, width, height, image_count, text_source, ocr_confidence)"
    " FROM STDIN (FORMAT BINARY)"
)
_PAGE_TYPES = ["text", "int4", "text", "int4", "float4", "float4", "int4", "text", "float4"]
_CHUNK_COLUMNS = "document_id, chunk_no, first_page, last_page, text, ts_config"
# regconfig travels as its oid: binary COPY has no name form of it.
_CHUNK_TYPES = ["text", "int4", "int4", "int4", "text", "oid"]
_IMAGE_COLUMNS = (
    "document_id, image_no, page_no, page_nos, bbox, width, height, sha256, ext, s3_key, size_bytes"
)
_IMAGE_TYPES = ["text", "int4", "int4", "int4[]", "float4[]", "int4", "int4", "text", "text", "text", "int4"]


@dataclass(frozen=True)
class WriteCounts:
    pages: int
    chunks: int
    images: int


@dataclass(frozen=True)
class ChunkVectors:
    """Every chunk's vector, in document-wide chunk order, and the model that made them."""

    model: str
    vectors: Sequence[Sequence[float]]


@dataclass
class _Image:
    """A distinct image: its first occurrence, and every page it is drawn on."""

    first: ImageOccurrence
    page_nos: set[int] = field(default_factory=set)


def write_document(
    conn: psycopg.Connection[Any],
    *,
    document_id: str,
    batches: Iterable[BatchResult],
    timings: dict[str, Any],
    stats: dict[str, Any],
    embeddings: Mapping[str, Sequence[float]] | None = None,
    chunk_vectors: ChunkVectors | None = None,
) -> WriteCounts:
    """Replace the document's rows with those of ``batches`` and mark it succeeded, atomically.

    ``batches`` are written in page order: a sequence is sorted by first page; an iterator (one
    batch loaded at a time) must already come in that order. ``embeddings`` are keyed by image
    sha256; images without one get NULL. ``chunk_vectors``, when given, has one vector per chunk.
    The text search configuration of the chunks follows the language of the first batch that has
    text. Running it again with the same
    input leaves the same rows: it is safe to retry. (Captions are set afterwards, in the same
    transaction, by pagemill.db.understanding.store_caption_results.)
    """
    with unavailable_on_failure(f"writing document {document_id}"), conn.transaction():
        # The row lock serializes two executions writing the same content at once.
        if conn.execute("select 1 from documents where id = %s for update", (document_id,)).fetchone() is None:
            raise InternalError(f"document {document_id} is not registered: Write ran without Plan")
        for table in ("pages", "chunks", "images"):
            conn.execute(f"delete from {table} where document_id = %s", (document_id,))
        pages = chunks = 0
        images: dict[str, _Image] = {}
        ts_config, ts_config_oid = SIMPLE, 0
        with conn.cursor() as cur:
            for batch in _in_page_order(batches, document_id):
                if chunks == 0 and batch.chunks:
                    ts_config = text_search_config("\n".join(c.text for c in batch.chunks))
                    ts_config_oid = cur.execute("select %s::regconfig::oid", (ts_config,)).fetchone()[0]
                pages += _copy_pages(cur, document_id, batch)
                chunks += _copy_chunks(cur, document_id, batch, first_chunk_no=chunks, ts_config=ts_config_oid,
                                       vectors=chunk_vectors)
                _merge_images(images, batch)
            if images:
                _copy_images(cur, document_id, images, embeddings or {})
        if chunk_vectors is not None and len(chunk_vectors.vectors) != chunks:
            raise InternalError(f"{len(chunk_vectors.vectors)} chunk vectors for {chunks} chunks of {document_id}")
        conn.execute(
            """
            update documents set status = 'succeeded', page_count = %s, timings = %s, stats = %s, ts_config = %s,
                error_class = null, error = null, cause = null, failed_state = null, updated_at = now()
            where id = %s
            """,
            (pages, Jsonb(timings), Jsonb(stats), ts_config, document_id),
        )
        if chunks:
            conn.execute("insert into text_search_configs values (%s) on conflict do nothing", (ts_config,))
    return WriteCounts(pages=pages, chunks=chunks, images=len(images))


def _in_page_order(batches: Iterable[BatchResult], document_id: str) -> Iterator[BatchResult]:
    if isinstance(batches, Sequence):
        batches = sorted(batches, key=attrgetter("first_page"))
    last_page = 0
    for batch in batches:
        if batch.document_id != document_id:
            raise InternalError(f"batch {batch.batch_no} belongs to document {batch.document_id}, not {document_id}")
        if batch.first_page <= last_page:
            raise InternalError(
                f"batch {batch.batch_no} starts at page {batch.first_page}, at or before page {last_page} "
                "already written: batches must come in page order without overlap"
            )
        last_page = batch.last_page
        yield batch


def _copy_pages(cur: psycopg.Cursor[Any], document_id: str, batch: BatchResult) -> int:
    if not batch.pages:
        return 0
    with cur.copy(_PAGES) as copy:
        copy.set_types(_PAGE_TYPES)
        for p in batch.pages:
            copy.write_row((document_id, p.page_no, p.markdown, p.char_count, p.width, p.height, p.image_count,
                            p.text_source, p.ocr_confidence))
    return len(batch.pages)


def _copy_chunks(
    cur: psycopg.Cursor[Any], document_id: str, batch: BatchResult, *, first_chunk_no: int, ts_config: int,
    vectors: ChunkVectors | None,
) -> int:
    """Chunks are numbered per batch by Extract; here they get document-wide numbers."""
    if not batch.chunks:
        return 0
    columns, types = _CHUNK_COLUMNS, _CHUNK_TYPES
    if vectors is not None:
        columns, types = f"{columns}, embedding, embedding_model", [*types, "vector", "text"]
        if len(vectors.vectors) < first_chunk_no + len(batch.chunks):
            raise InternalError(f"fewer chunk vectors ({len(vectors.vectors)}) than chunks of {document_id}")
    with cur.copy(f"COPY chunks ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for n, c in enumerate(sorted(batch.chunks, key=attrgetter("chunk_no")), start=first_chunk_no):
            row: tuple[Any, ...] = (document_id, n, c.first_page, c.last_page, c.text, ts_config)
            if vectors is not None:
                row = (*row, vectors.vectors[n], vectors.model)
            copy.write_row(row)
    return len(batch.chunks)


def _merge_images(images: dict[str, _Image], batch: BatchResult) -> None:
    # Sorted by page so the first occurrence (and so image_no) follows the page order.
    for occurrence in sorted(batch.images, key=attrgetter("page_no")):
        merged = images.get(occurrence.sha256)
        if merged is None:
            merged = images[occurrence.sha256] = _Image(first=occurrence)
        merged.page_nos.add(occurrence.page_no)


def _copy_images(
    cur: psycopg.Cursor[Any],
    document_id: str,
    images: dict[str, _Image],
    embeddings: Mapping[str, Sequence[float]],
) -> None:
    # Without embeddings the column is left out (NULL), so no vector type is needed then.
    columns, types = _IMAGE_COLUMNS, _IMAGE_TYPES
    if embeddings:
        columns, types = f"{columns}, embedding", [*types, "vector"]
    with cur.copy(f"COPY images ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for image_no, (sha256, merged) in enumerate(images.items()):
            first = merged.first
            row: tuple[Any, ...] = (
                document_id, image_no, first.page_no, sorted(merged.page_nos), list(first.bbox), first.width,
                first.height, sha256, first.ext, first.s3_key, first.size_bytes,
            )
            if embeddings:
                row = (*row, embeddings.get(sha256))
            copy.write_row(row)
