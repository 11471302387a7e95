"""EmbedChunks: every chunk of the document → a vector of the configured text model, to S3 for
Write, which stores them with the chunks in its one COPY transaction.

S3 contract: output <chunk_vectors_key>, float32 [chunks, dim] in np.save format, rows in
document chunk order (the order Write numbers chunks in: batches by page, chunks by number).
The state's result names the model, so Write records which model made the vectors.

An embedding service that gives no vectors (EmbeddingUnavailable: outage, throttling past the
retries, circuit open, budget spent) is not a failure of the document: the result carries the
reason instead of a key, and Write stores the chunks without vectors and says so with a
warning; `pagemill reembed` fills them in later."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from pagemill import keys, storage
from pagemill.errors import InternalError
from pagemill.payloads import ChunkVectorsBranch, DocumentInput
from pagemill.pipeline.context import StageContext, batch_results, load_manifest
from pagemill.records import dump
from pagemill.text_embed.embedder import EmbeddingUnavailable

if TYPE_CHECKING:
    from pagemill.text_embed.embedder import TextEmbedder

log = logging.getLogger(__name__)

# Chunks per embedder call: bounds memory for a long document, and a Titan failure costs one slice.
SLICE = 256


def embed_chunks(ctx: StageContext, payload: DocumentInput, embedder: TextEmbedder | None) -> dict[str, Any]:
    """The branch's outcome for Write (payloads.ChunkVectorsBranch; ``chunks``: vectors stored)."""
    if embedder is None:
        raise InternalError("EmbedChunks ran with chunk embeddings off (PAGEMILL_TEXT_EMBEDDER=off)")
    document_id = payload.document_id
    manifest = load_manifest(ctx, payload.manifest_key, payload.only_batch)
    texts = [
        chunk.text
        for result in batch_results(ctx, document_id, manifest)
        for chunk in sorted(result.chunks, key=lambda c: c.chunk_no)
    ]
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    try:
        for start in range(0, len(texts), SLICE):
            vectors[start:start + SLICE] = embedder.passages(texts[start:start + SLICE])
    except EmbeddingUnavailable as exc:
        log.warning("chunk embeddings unavailable", extra={"document_id": document_id, "model": embedder.model,
                                                           "reason": exc.reason, "chunks": len(texts)})
        return dump(ChunkVectorsBranch(model=embedder.model, error=exc.reason))
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    key = keys.chunk_vectors_key(document_id)
    storage.put_bytes(ctx.s3, ctx.work_bucket, key, buffer.getvalue(), "application/octet-stream")
    return dump(ChunkVectorsBranch(key=key, model=embedder.model, chunks=len(texts)))


def load_chunk_vectors(s3: Any, bucket: str, key: str) -> np.ndarray:
    return np.load(io.BytesIO(storage.get_bytes(s3, bucket, key)), allow_pickle=False)
