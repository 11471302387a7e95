"""What the HTTP API and the console read: documents by status with their file names, a page's
markdown, a document's images and products, and the figures of GET /stats."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pagemill.db.connect import unavailable_on_failure

# A document's file name: the key it was last uploaded under, without the folder.
_FILE_NAME = """(select regexp_replace(s.key, '^.*/', '') from sources s where s.document_id = d.id
                 order by s.first_seen desc limit 1) as file_name"""


def list_documents(
    conn: psycopg.Connection[Any], *, status: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of documents, most recently changed first, and how many there are in all."""
    with unavailable_on_failure("listing documents"), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select d.*, {_FILE_NAME} from documents d where %(status)s::text is null or d.status = %(status)s"
            " order by d.updated_at desc, d.id limit %(limit)s offset %(offset)s",
            {"status": status, "limit": limit, "offset": offset},
        ).fetchall()
        total = cur.execute(
            "select count(*) as n from documents where %(status)s::text is null or status = %(status)s",
            {"status": status},
        ).fetchone()
    assert total is not None
    return rows, total["n"]


def get_document(conn: psycopg.Connection[Any], document_id: str) -> dict[str, Any] | None:
    return _one(conn, f"reading document {document_id}",
                f"select d.*, {_FILE_NAME} from documents d where d.id = %s", (document_id,))


def file_names(conn: psycopg.Connection[Any], document_ids: list[str]) -> dict[str, str | None]:
    with unavailable_on_failure("reading file names"), conn.transaction():
        return dict(conn.execute(
            f"select d.id, {_FILE_NAME} from documents d where d.id = any(%s)", (document_ids,)).fetchall())


def page_markdown(conn: psycopg.Connection[Any], document_id: str, page_no: int) -> str | None:
    with unavailable_on_failure(f"reading page {page_no} of document {document_id}"), conn.transaction():
        row = conn.execute(
            "select markdown from pages where document_id = %s and page_no = %s", (document_id, page_no)
        ).fetchone()
    return row[0] if row else None


def images(conn: psycopg.Connection[Any], document_id: str) -> list[dict[str, Any]]:
    return _all(conn, f"reading the images of document {document_id}",
                "select image_no, page_no, page_nos, width, height, ext, s3_key, caption, caption_status,"
                " caption_reason, tags from images where document_id = %s order by image_no", (document_id,))


def image(conn: psycopg.Connection[Any], document_id: str, image_no: int) -> dict[str, Any] | None:
    return _one(conn, f"reading image {image_no} of document {document_id}",
                "select image_no, ext, s3_key from images where document_id = %s and image_no = %s",
                (document_id, image_no))


def products(conn: psycopg.Connection[Any], document_id: str) -> list[dict[str, Any]]:
    return _all(conn, f"reading the products of document {document_id}",
                "select name, attributes, page_no from products where document_id = %s order by product_no",
                (document_id,))


def stats(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Counts by status; pages and images stored; what finished in the last hour; failures by
    error class; the running document that started longest ago."""
    with unavailable_on_failure("reading statistics"), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        by_status = {r["status"]: r["n"] for r in cur.execute(
            "select status, count(*) as n from documents group by status").fetchall()}
        stored = cur.execute(
            "select (select count(*) from pages) as pages, (select count(*) from images) as images"
        ).fetchone()
        last_hour = cur.execute(
            "select count(*) as documents, coalesce(sum(page_count), 0) as pages from documents"
            " where status <> 'running' and status <> 'failed' and status <> 'cancelled'"
            " and updated_at > now() - interval '1 hour'"
        ).fetchone()
        failures = {r["error_class"] or "unknown": r["n"] for r in cur.execute(
            "select error_class, count(*) as n from documents where status = 'failed'"
            " group by error_class order by count(*) desc").fetchall()}
        oldest = cur.execute(
            f"select d.id, d.created_at, d.updated_at, {_FILE_NAME} from documents d where d.status = 'running'"
            " order by d.created_at limit 1"
        ).fetchone()
    return {"by_status": by_status, "stored": stored, "last_hour": last_hour, "failures": failures,
            "oldest_running": oldest}


def _all(conn: psycopg.Connection[Any], what: str, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    with unavailable_on_failure(what), conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _one(conn: psycopg.Connection[Any], what: str, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    rows = _all(conn, what, query, params)
    return rows[0] if rows else None
