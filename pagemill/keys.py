"""Where things live in the bucket. One module so the handlers, the runner, the exporter and
progress reporting agree on every key."""

from __future__ import annotations

UPLOADS_PREFIX = "uploads/"
DOCUMENTS_PREFIX = "documents/"


def document_prefix(document_id: str) -> str:
    return f"{DOCUMENTS_PREFIX}{document_id}/"


def manifest_key(document_id: str) -> str:
    return f"{document_prefix(document_id)}manifest.json"


def batches_prefix(document_id: str) -> str:
    return f"{document_prefix(document_id)}batches/"


def batch_result_key(document_id: str, first_page: int, last_page: int) -> str:
    # The page range is in the key so progress can be counted from a listing alone.
    return f"{batches_prefix(document_id)}p{first_page:06d}-{last_page:06d}.json"


def pages_in_batch_key(key: str) -> int:
    """Inverse of batch_result_key for progress: number of pages a result object covers."""
    stem = key.rsplit("/", 1)[-1].removeprefix("p").removesuffix(".json")
    first, last = stem.split("-")
    return int(last) - int(first) + 1


def image_key(document_id: str, sha256: str, ext: str) -> str:
    return f"{document_prefix(document_id)}images/{sha256}.{ext}"


def image_list_key(document_id: str) -> str:
    """The document's distinct images, the input of the Enrich stage."""
    return f"{document_prefix(document_id)}images.json"


def embeddings_prefix(document_id: str) -> str:
    return f"{document_prefix(document_id)}embeddings/"


def caption_batches_key(document_id: str) -> str:
    """The CaptionImages map's items: the document's images in small batches."""
    return f"{document_prefix(document_id)}caption-batches.json"


def captions_prefix(document_id: str) -> str:
    return f"{document_prefix(document_id)}captions/"


def caption_batch_key(document_id: str, batch_no: int) -> str:
    return f"{captions_prefix(document_id)}b{batch_no:05d}.json"


def understanding_key(document_id: str) -> str:
    return f"{document_prefix(document_id)}understanding.json"


def chunk_vectors_key(document_id: str) -> str:
    """EmbedChunks' output: every chunk's text vector, in document chunk order (np.save format)."""
    return f"{document_prefix(document_id)}chunk-vectors.npy"


def timings_prefix(document_id: str) -> str:
    return f"{document_prefix(document_id)}timings/"


def timing_key(document_id: str, state: str, item: str | None = None) -> str:
    """When one run of ``state`` (one map ``item`` of it) started and ended: pagemill.pipeline.timings."""
    return f"{timings_prefix(document_id)}{state}{f'-{item}' if item is not None else ''}.json"


def speech_prefix(document_id: str) -> str:
    """The document's audio (SpeakSummary may write only here)."""
    return f"{document_prefix(document_id)}speech/"


def summary_audio_key(document_id: str, ext: str) -> str:
    return f"{speech_prefix(document_id)}summary.{ext}"
