"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

An item's score is the sum over the ranked lists it appears in of 1 / (k + rank), rank counted
from 1. Only ranks matter, so lists whose own scores are not comparable (ts_rank_cd, cosine
distance, CLIP similarity) fuse without calibration; k = 60 damps the weight of the very top
ranks, the value the paper found robust. The database computes the same sum in one query
(pagemill.search.hybrid); this is the reference the tests hold it to.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

RRF_K = 60


def rrf_scores(rankings: Iterable[Sequence[Hashable]], k: int = RRF_K) -> dict[Hashable, float]:
    """Fused score per item of any of ``rankings`` (each best first)."""
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def fuse(rankings: Iterable[Sequence[Hashable]], k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Items by fused score, best first; ties keep the order of first appearance."""
    return sorted(rrf_scores(rankings, k).items(), key=lambda pair: -pair[1])
