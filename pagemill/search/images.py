"""Nearest images to a text or an image query, by cosine distance between CLIP embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Hit:
    document_id: str
    image_no: int
    page_no: int
    score: float  # cosine similarity, 1 = same direction
    caption: str | None
    s3_key: str


def nearest_images(conn: Any, query: np.ndarray, *, limit: int, model_name: str | None = None) -> list[Hit]:
    """``query`` is one L2-normalized vector; ``<=>`` is pgvector's cosine distance, served by the
    HNSW index on images.embedding."""
    rows = conn.execute(
        "select document_id, image_no, page_no, 1 - (embedding <=> %s) as score, caption, s3_key"
        " from images where embedding is not null order by embedding <=> %s limit %s",
        (query, query, limit),
    ).fetchall()
    return [Hit(d, n, p, round(float(s), 6), c, k) for d, n, p, s, c, k in rows]
