"""ReembedBatch and BuildChunkIndex, the reembed state machine's tasks (`pagemill reembed --aws`):
thin handlers over pagemill.db.chunk_vectors, the same calls `pagemill reembed` makes locally."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pagemill import metrics as m
from pagemill.aws.clients import db_connection, reembed_embedder
from pagemill.aws.handler import lambda_handler
from pagemill.db.chunk_vectors import build_reembedded_index, reembed_batches
from pagemill.payloads import ReembedInput

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# No batch starts with less than this left of the invocation: a batch of 256 on Titan takes seconds,
# a throttled one with its retries a minute or two. What is left goes to the next invocation.
STOP_BEFORE_TIMEOUT_MS = 180_000


@lambda_handler(ReembedInput, counts={m.CHUNKS_EMBEDDED: "embedded"})
def reembed_batch(payload: ReembedInput, context: LambdaContext) -> dict[str, Any]:
    embedder = reembed_embedder()
    progress = reembed_batches(
        db_connection(), embedder, batch_size=payload.batch_size, max_chunks=payload.max_chunks,
        keep_going=lambda: context.get_remaining_time_in_millis() > STOP_BEFORE_TIMEOUT_MS,
    )
    return {"model": embedder.model, "embedded": progress.chunks, "remaining": progress.remaining}


@lambda_handler()
def build_index(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    embedder = reembed_embedder()
    seconds = build_reembedded_index(db_connection(), embedder.model, embedder.dim)
    return {"model": embedder.model, "index_seconds": round(seconds, 1)}
