"""What the model said about a document, into PostgreSQL: its type, summary and products, the
tokens it billed, and the caption outcome of its images. Each function runs in its own
transaction block (inside a caller's transaction it becomes a savepoint) and is idempotent:
running it again with the same input leaves the same rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from pagemill.db.connect import unavailable_on_failure
from pagemill.errors import InternalError

if TYPE_CHECKING:
    from pagemill.records import CaptionResult, Understanding


def store_understanding(conn: psycopg.Connection[Any], document_id: str, understanding: Understanding) -> int:
    """Set the document's type, summary and understanding status, and replace its products;
    returns the number of products stored."""
    with unavailable_on_failure(f"storing the understanding of document {document_id}"), conn.transaction():
        updated = conn.execute(
            """
            update documents set doc_type = %s, summary = %s, understanding_status = %s,
                understanding_reason = %s, updated_at = now()
            where id = %s
            """,
            (understanding.doc_type, understanding.summary, understanding.status, understanding.reason, document_id),
        ).rowcount
        if updated != 1:
            raise InternalError(f"document {document_id} is not registered")
        conn.execute("delete from products where document_id = %s", (document_id,))
        rows = [
            (document_id, n, p.name, Jsonb(p.attributes), p.page)
            for n, p in enumerate(understanding.products)
        ]
        if rows:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into products (document_id, product_no, name, attributes, page_no)"
                    " values (%s, %s, %s, %s, %s)",
                    rows,
                )
    return len(rows)


def store_token_usage(
    conn: psycopg.Connection[Any],
    document_id: str,
    *,
    input_tokens: int,
    output_tokens: int,
    caption_summary: Mapping[str, Any] | None = None,
) -> None:
    """Set (not add: a retried stage must not count twice) the tokens the document cost, and
    its caption summary when given."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    with unavailable_on_failure(f"storing the token usage of document {document_id}"), conn.transaction():
        updated = conn.execute(
            """
            update documents set input_tokens = %s, output_tokens = %s,
                caption_summary = coalesce(%s, caption_summary), updated_at = now()
            where id = %s
            """,
            (input_tokens, output_tokens, Jsonb(dict(caption_summary)) if caption_summary is not None else None,
             document_id),
        ).rowcount
        if updated != 1:
            raise InternalError(f"document {document_id} is not registered")


def store_caption_results(
    conn: psycopg.Connection[Any], document_id: str, results: Iterable[CaptionResult]
) -> int:
    """Set caption, tags, status and reason on the document's image rows (matched by sha256),
    e.g. right after write_document in the same transaction; returns the rows updated. Results
    for images without a row are ignored."""
    items = list(results)
    if not items:
        return 0
    with unavailable_on_failure(f"storing the captions of document {document_id}"), conn.transaction():
        return conn.execute(
            """
            update images set caption = given.caption, tags = coalesce(string_to_array(given.tags, chr(31)), '{}'),
                caption_status = given.status, caption_reason = given.reason
            from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
                as given (sha256, caption, status, reason, tags)
            where images.document_id = %s and images.sha256 = given.sha256
            """,
            (
                [r.sha256 for r in items], [r.caption for r in items], [r.status for r in items],
                [r.reason for r in items],
                # One text per image (arrays of unequal length cannot be unnested side by side):
                # tags joined by the unit separator, which never appears in a tag.
                [chr(31).join(r.tags) if r.tags else None for r in items],
                document_id,
            ),
        ).rowcount
