"""The warnings of a ``partial`` document that Write makes from the branches' outcomes (the
contract is in pagemill.pipeline.write's docstring)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from pagemill.captions.client import NO_API_KEY
from pagemill.payloads import ChunkVectorsBranch
from pagemill.records import CAPTIONED, SKIPPED, CaptionResult, DocumentWarning, Understanding

CAPTIONS_MISSING = "captions_missing"
CHUNK_VECTORS_MISSING = "chunk_vectors_missing"
UNDERSTANDING_MISSING = "understanding_missing"
# Skip reasons that are someone's choice, not a loss: a note, never partial.
_CHOSEN = {NO_API_KEY}


def caption_warnings(document_id: str, results: Sequence[CaptionResult]) -> list[DocumentWarning]:
    """Images without a caption because the model API failed or a budget ran out."""
    missing = [r for r in results if r.status != CAPTIONED and r.reason not in _CHOSEN]
    if not missing:
        return []
    reasons = Counter(r.reason or "unknown" for r in missing)
    why = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
    return [DocumentWarning(
        CAPTIONS_MISSING,
        f"{len(missing)} of {len(results)} images were not captioned: {why}; "
        f"`pagemill redrive {document_id}` fills them",
        images=[r.sha256 for r in missing],
    )]


def understanding_warnings(document_id: str, answer: Understanding | None) -> list[DocumentWarning]:
    if answer is None or answer.status != SKIPPED or answer.reason in _CHOSEN:
        return []
    return [DocumentWarning(
        UNDERSTANDING_MISSING,
        f"the document was not read by the model (type, summary, products): {answer.reason}; "
        f"`pagemill redrive {document_id}` fills it",
    )]


def chunk_vector_warnings(branch: ChunkVectorsBranch | None) -> list[DocumentWarning]:
    """Chunks written without search vectors because EmbedChunks got none (outage, throttling,
    circuit open, budget spent, or the step failed)."""
    if branch is None or not branch.error:
        return []
    return [DocumentWarning(
        CHUNK_VECTORS_MISSING,
        f"chunks have no search vectors ({branch.model or 'text embedder'}): {branch.error}; "
        "`pagemill reembed` fills them",
    )]


def merged(warnings: Iterable[DocumentWarning]) -> list[DocumentWarning]:
    """One warning per code (batches report per batch): pages and images joined, first message kept."""
    by_code: dict[str, DocumentWarning] = {}
    for w in warnings:
        if w.code not in by_code:
            by_code[w.code] = DocumentWarning(w.code, w.message, list(w.pages), list(w.images))
            continue
        into = by_code[w.code]
        into.pages = sorted(set(into.pages) | set(w.pages))
        into.images = list(dict.fromkeys([*into.images, *w.images]))
    return list(by_code.values())
