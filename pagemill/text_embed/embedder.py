"""The interface every text embedder offers, and the error an unavailable one raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pagemill.errors import PagemillError


class EmbeddingUnavailable(PagemillError):
    """The embedding service gave no vectors (outage, throttled past its retries, circuit open,
    budget spent): the document is written without chunk vectors and marked partial, and
    ``pagemill reembed`` fills them in later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TextEmbedder(Protocol):
    # Stored with every vector: two embedders with the same name make comparable vectors.
    model: str
    dim: int

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim], unit rows (cosine distance is what the index compares)."""

    def query(self, text: str) -> np.ndarray:
        """float32 [dim], a unit vector comparable with ``passages``' rows."""


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (an all-zero row stays zero: text without a known token)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
