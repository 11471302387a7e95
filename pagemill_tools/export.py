"""Export a processed document from PostgreSQL (and its images from S3) to a folder a person can
open: page markdown, the images, the chunks and the document row (document.json: its status, the
warnings of a partial document, its timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pagemill.storage import get_bytes


def image_path(out_root: Path, document_id: str, image_no: int, page_no: int, ext: str) -> Path:
    return out_root / document_id / "images" / f"{image_no:04d}-p{page_no}.{ext}"


def export_document(conn: Any, s3: Any, bucket: str, document_id: str, out_root: Path) -> Path:
    out = out_root / document_id
    (out / "pages").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with conn.cursor() as cur:
        cur.execute(
            "select id, sha256, size_bytes, page_count, status, error_class, error, failed_state, "
            "execution_arn, warnings, timings, stats from documents where id = %s",
            (document_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no document {document_id} in the database")
        columns = [c.name for c in cur.description]
        (out / "document.json").write_text(json.dumps(dict(zip(columns, row)), indent=2, default=str))
        cur.execute("select page_no, markdown from pages where document_id = %s order by page_no", (document_id,))
        with open(out / "document.md", "w") as whole:
            for page_no, markdown in cur:
                (out / "pages" / f"{page_no:04d}.md").write_text(markdown)
                whole.write(f"<!-- page {page_no} -->\n{markdown}\n\n")
        cur.execute(
            "select chunk_no, first_page, last_page, text from chunks where document_id = %s order by chunk_no",
            (document_id,),
        )
        with open(out / "chunks.jsonl", "w") as chunks:
            for chunk_no, first, last, text in cur:
                chunks.write(json.dumps({"chunk_no": chunk_no, "first_page": first, "last_page": last, "text": text}) + "\n")
        cur.execute(
            "select image_no, page_no, page_nos, ext, s3_key from images where document_id = %s order by image_no",
            (document_id,),
        )
        for image_no, page_no, page_nos, ext, key in cur.fetchall():
            image_path(out_root, document_id, image_no, page_no, ext).write_bytes(get_bytes(s3, bucket, key))
    return out
