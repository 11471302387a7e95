"""Write: the document's rows, embeddings, captions and understanding in one transaction, and
its outcome: ``succeeded``, or ``partial`` with the warnings that say what is missing.

Where Write finds warnings (pagemill.records.DocumentWarning: code, message, pages, images):
- ExtractBatch's results (``BatchResult.warnings``): content lost in a damaged or repaired file,
  pages whose extraction raised, images that could not be decoded (pagemill.pdf.damage), text OCR
  could not recover;
- the captions and understanding the model did not make because its API failed or a budget ran
  out (made here from the caption branch's results; no API key is a choice, not a loss);
- the summary not spoken: SpeakSummary failed after its retries, its Catch put the error in the
  understanding branch's result and Write is told through its payload (``WriteInput.speech``);
- the chunk vectors the embedding service did not give (``WriteInput.chunk_vectors.error``).
A new branch tells Write what it could not make the same way, through its outcome in Write's
payload (no S3 request per document for a branch that lost nothing).
Warnings of one code are merged (pages and images joined). Any warning makes the document
``partial``; ``pagemill redrive`` runs it again and Write replaces its rows, so what can be made
now is filled without duplicating anything.

Timings: documents.timings["states"] holds the seconds of each state (pagemill.pipeline.timings),
beside the write's own figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pagemill import keys, storage
from pagemill.captions.caption import load_results, skipped, summarize
from pagemill.clip.embed import load_embeddings
from pagemill.db import documents
from pagemill.db.chunk_vectors import build_index, index_exists
from pagemill.db.connect import unavailable_on_failure
from pagemill.db.speech import store_speech
from pagemill.db.understanding import (
    store_caption_results,
    store_token_usage,
    store_understanding,
)
from pagemill.db.write import ChunkVectors, write_document
from pagemill.payloads import (
    CaptionsBranch,
    ChunkVectorsBranch,
    SpeechBranch,
    UnderstandingBranch,
    WriteInput,
)
from pagemill.pipeline import warnings as partial
from pagemill.pipeline.context import (
    StageContext,
    batch_results,
    load_manifest,
)
from pagemill.pipeline.embed_chunks import load_chunk_vectors
from pagemill.pipeline.record_failure import explain_failure
from pagemill.pipeline.timings import state_seconds
from pagemill.records import (
    SKIPPED,
    BatchResult,
    CaptionResult,
    DocumentWarning,
    ImageRef,
    Understanding,
    load,
    load_list,
)
from pagemill.speech.outcome import FAILED, SPOKEN, SpeechOutcome

log = logging.getLogger(__name__)

CAPTION_BATCH_FAILED = "caption batch failed"


def write(ctx: StageContext, conn: Any, payload: WriteInput) -> dict[str, Any]:
    """The document's rows, its embeddings, and what the model said about it (the outcomes of
    the caption and understanding branches, and the summary spoken), in one transaction; returns
    the counts, the outcome ("succeeded" or "partial") and the warnings' codes."""
    began = time.monotonic()
    document_id, execution_arn = payload.document_id, payload.execution_arn
    since = _epoch(payload.started_at)
    manifest = load_manifest(ctx, payload.manifest_key, payload.only_batch)
    stats: dict[str, Any] = {"batches": len(manifest), "skipped_images": {}}
    extract_seconds = 0.0
    found: list[DocumentWarning] = []

    def batches() -> Iterator[BatchResult]:
        # One batch in memory at a time: write_document streams rows into COPY.
        nonlocal extract_seconds
        for result in batch_results(ctx, document_id, manifest):
            extract_seconds += result.seconds
            found.extend(result.warnings)
            for skip in result.skipped_images:
                stats["skipped_images"][skip.reason] = stats["skipped_images"].get(skip.reason, 0) + 1
            yield result

    timings: dict[str, Any] = {}
    # Everything else S3 holds is read before the transaction: its locks (the document's row, the
    # execution's) are held for the database work only.
    index_key = payload.embeddings_index_key
    embeddings = load_embeddings(ctx.s3, ctx.work_bucket, index_key) if index_key else None
    vectors = _chunk_vectors(ctx, payload.chunk_vectors, stats)
    caption_results, answer = _load_model_output(
        ctx, document_id, payload.captions or CaptionsBranch(), payload.understanding or UnderstandingBranch()
    )
    found.extend(partial.caption_warnings(document_id, caption_results or []))
    found.extend(partial.understanding_warnings(document_id, answer))
    spoken = speech_outcome(payload.speech)
    found.extend(spoken.warnings(document_id) if spoken else [])
    found.extend(partial.chunk_vector_warnings(payload.chunk_vectors))
    # A document of several batches, or with captions, had map items: their spans are in S3.
    map_items = len(manifest) > 1 or bool(payload.captions and payload.captions.prefix)
    states = state_seconds(ctx, document_id, payload.carried_spans(), map_items=map_items, since=since)
    with unavailable_on_failure(f"writing document {document_id}"), conn.transaction():
        # A cancelled execution's Write still runs if it was in flight when the execution was
        # stopped; it must not turn the cancelled document into a succeeded one.
        if execution_arn:
            documents.ensure_not_cancelled(conn, execution_arn)
        counts = write_document(
            conn, document_id=document_id, batches=batches(), timings=timings, stats=stats, embeddings=embeddings,
            chunk_vectors=vectors,
        )
        _store_model_output(conn, document_id, caption_results, answer)
        store_speech(conn, document_id, spoken)
        warnings = partial.merged(found)
        status = documents.set_outcome(conn, document_id, warnings)
        # In the same transaction as the outcome: a reader never sees a finished document without
        # its timings (Write's own seconds are counted up to the commit).
        seconds = round(time.monotonic() - began, 3)
        timings.update({"extract_seconds_sum": round(extract_seconds, 3), "write_seconds": seconds,
                        "states": {**states, "Write": seconds}})
        if since is not None:
            timings["pipeline_seconds"] = round(time.time() - since, 3)
        documents.set_timings(conn, document_id, timings)
    if vectors is not None and len(vectors.vectors) and not index_exists(conn, vectors.model):
        # The first document of a model: its index starts small and grows with each Write.
        # `pagemill reembed` (a bulk load) drops it and builds it once over all rows instead.
        build_index(conn, vectors.model, len(vectors.vectors[0]))
    if warnings:
        log.warning("document partial", extra={"document_id": document_id, "warnings": [w.code for w in warnings]})
    return {"pages": counts.pages, "chunks": counts.chunks, "images": counts.images, "status": status,
            "warnings": [w.code for w in warnings]}


def _chunk_vectors(ctx: StageContext, branch: ChunkVectorsBranch | None, stats: dict[str, Any]) -> ChunkVectors | None:
    """EmbedChunks' vectors, or None (embeddings off, or the service gave none: a warning says
    so, and `pagemill reembed` fills them in)."""
    if branch is None:
        return None
    stats["chunk_vectors"] = {"model": branch.model, "error": branch.error}
    if not branch.key or not branch.model:
        return None
    return ChunkVectors(branch.model, load_chunk_vectors(ctx.s3, ctx.work_bucket, branch.key))


def _epoch(started_at: str | None) -> float | None:
    """The execution's start ($$.Execution.StartTime, ISO 8601) as epoch seconds."""
    if not started_at:
        return None
    return datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp()


def _load_model_output(
    ctx: StageContext, document_id: str, captions: CaptionsBranch, understanding: UnderstandingBranch
) -> tuple[list[CaptionResult] | None, Understanding | None]:
    """The caption of every image (one skipped with the reason where its batch gave none) and the
    document's understanding; None for a branch that did not run."""
    results = None
    if captions.prefix:
        by_image = load_results(ctx.s3, ctx.work_bucket, captions.prefix)
        # An image without a result: its batch failed after its retries, or the map did.
        reason = f"caption step failed ({captions.error})" if captions.error else CAPTION_BATCH_FAILED
        images = load_list(ImageRef, storage.get_json(ctx.s3, ctx.work_bucket, keys.image_list_key(document_id)))
        for image in images:
            by_image.setdefault(image.sha256, skipped(image.sha256, reason))
        results = list(by_image.values())
    if understanding.key:
        answer = load(Understanding, storage.get_json(ctx.s3, ctx.work_bucket, understanding.key))
    elif understanding.error:
        answer = Understanding(None, None, status=SKIPPED, reason=f"understanding step failed ({understanding.error})")
    else:
        answer = None
    return results, answer


def speech_outcome(speech: SpeechBranch | None) -> SpeechOutcome | None:
    """What SpeakSummary left: its audio, the reason it failed (its Catch's Error and Cause), or
    None when nothing was to be spoken."""
    if speech is None:
        return None
    if speech.error:
        return SpeechOutcome(FAILED, reason=explain_failure("SpeakSummary", speech.error, speech.cause))
    return SpeechOutcome(SPOKEN, audio=speech)


def _store_model_output(
    conn: Any, document_id: str, results: list[CaptionResult] | None, answer: Understanding | None
) -> None:
    input_tokens = output_tokens = 0
    caption_summary = None
    if results is not None:
        store_caption_results(conn, document_id, results)
        caption_summary = summarize(results)
        input_tokens += caption_summary["input_tokens"]
        output_tokens += caption_summary["output_tokens"]
    if answer is not None:
        store_understanding(conn, document_id, answer)
        input_tokens += answer.input_tokens
        output_tokens += answer.output_tokens
    if caption_summary is not None or answer is not None:
        store_token_usage(
            conn, document_id, input_tokens=input_tokens, output_tokens=output_tokens, caption_summary=caption_summary
        )
