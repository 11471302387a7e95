"""The Embed stage: every image of a document → a CLIP vector, written to S3 for the Write stage.
Run by the CPU Lambda (small batches) and the GPU worker (large batches) alike.

S3 contract:
  input   <images_key>                JSON [{"sha256": str, "s3_key": str}, ...] (same bucket)
  output  <out_prefix>embeddings.npy  float32 [M, 512], np.save format, unit rows
          <out_prefix>embeddings.json {"model": str, "dim": 512, "embeddings_key": str,
                                        "sha256": [M hashes, row order of the .npy],
                                        "skipped": [{"sha256": str, "reason": str}, ...]}
The index is written last: when it exists, the array it names is complete.

Downloads, decoding and preprocessing run on a small thread pool (boto3 and Pillow release the
GIL while they wait and decode) while the calling thread runs inference, with a bounded number
of images in flight so memory stays at about two batches whatever the document's size."""

from __future__ import annotations

import io
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING, Any

import numpy as np

from pagemill import storage
from pagemill.clip.errors import ImageRejected
from pagemill.errors import InternalError
from pagemill.records import ImageRef

if TYPE_CHECKING:
    from pagemill.clip.model import ClipModel

log = logging.getLogger(__name__)

EMBEDDINGS_NAME = "embeddings.npy"
INDEX_NAME = "embeddings.json"
_MAX_WORKERS = 8  # boto3's default connection pool holds 10


def embed_images(
    s3: Any,
    *,
    bucket: str,
    images_key: str,
    out_prefix: str,
    model: ClipModel,
    batch_size: int,
    max_image_pixels: int,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Embed the images listed at ``images_key``; returns {"embeddings_key", "index_key", "count",
    "skipped"} (counts). ``on_progress(done, total)`` runs after each batch; an exception it
    raises stops the work (the GPU worker stops this way when Step Functions gives up)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.monotonic()
    refs = read_image_list(s3, bucket, images_key)
    workers = workers or min(_MAX_WORKERS, (os.cpu_count() or 1) + 2)
    hashes: list[str] = []
    vectors: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    pending: list[tuple[str, np.ndarray]] = []
    done = 0

    def flush() -> None:
        if pending:
            vectors.append(model.embed_images(np.stack([pixels for _, pixels in pending])))
            hashes.extend(sha for sha, _ in pending)
            pending.clear()
        if on_progress:
            on_progress(done, len(refs))

    with closing(_prepared(s3, bucket, refs, max_image_pixels, workers, window=max(batch_size, workers))) as prepared:
        for ref, outcome in prepared:
            done += 1
            if isinstance(outcome, ImageRejected):
                log.info("image skipped", extra={"sha256": ref.sha256, "s3_key": ref.s3_key, "reason": outcome.reason})
                skipped.append({"sha256": ref.sha256, "reason": outcome.reason})
            else:
                pending.append((ref.sha256, outcome))
            if len(pending) == batch_size:
                flush()
    flush()

    matrix = np.concatenate(vectors) if vectors else np.zeros((0, model.dim), dtype=np.float32)
    embeddings_key, index_key = out_prefix + EMBEDDINGS_NAME, out_prefix + INDEX_NAME
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    storage.put_bytes(s3, bucket, embeddings_key, buffer.getvalue(), "application/octet-stream")
    storage.put_json(s3, bucket, index_key, {
        "model": model.name, "dim": model.dim, "embeddings_key": embeddings_key, "sha256": hashes,
        "skipped": skipped,
    })
    log.info("images embedded", extra={
        "images_key": images_key, "count": len(hashes), "skipped": len(skipped), "batch_size": batch_size,
        "provider": model.provider, "seconds": round(time.monotonic() - started, 3),
    })
    return {"embeddings_key": embeddings_key, "index_key": index_key, "count": len(hashes), "skipped": len(skipped)}


def read_image_list(s3: Any, bucket: str, key: str) -> list[ImageRef]:
    """The stage's input list; an image listed twice is embedded once."""
    items = storage.get_json(s3, bucket, key)
    if not isinstance(items, list):
        raise InternalError(f"s3://{bucket}/{key} is not a JSON list of images")
    refs: dict[str, ImageRef] = {}
    for item in items:
        try:
            ref = ImageRef(sha256=str(item["sha256"]), s3_key=str(item["s3_key"]))
        except (TypeError, KeyError) as exc:
            raise InternalError(f"s3://{bucket}/{key}: image entry without sha256/s3_key: {item!r}") from exc
        refs.setdefault(ref.sha256, ref)
    return list(refs.values())


def load_embeddings(s3: Any, bucket: str, index_key: str) -> dict[str, np.ndarray]:
    """sha256 → unit vector float32 [512], for every image the Embed stage embedded."""
    index = storage.get_json(s3, bucket, index_key)
    data = storage.get_bytes(s3, bucket, index["embeddings_key"])
    matrix = np.load(io.BytesIO(data), allow_pickle=False)
    if matrix.dtype != np.float32 or matrix.shape != (len(index["sha256"]), index["dim"]):
        raise InternalError(
            f"{index['embeddings_key']} holds {matrix.dtype} {matrix.shape}, "
            f"the index lists {len(index['sha256'])} x {index['dim']} float32"
        )
    return dict(zip(index["sha256"], matrix, strict=True))


def _prepared(
    s3: Any, bucket: str, refs: list[ImageRef], max_pixels: int, workers: int, window: int,
) -> Iterator[tuple[ImageRef, np.ndarray | ImageRejected]]:
    """(ref, pixels or the reason it was rejected), in input order, at most ``window`` ahead.
    Closing the generator cancels what has not started and waits for what has."""
    # Imported here, not at the top: the Write stage imports load_embeddings and needs no Pillow.
    from pagemill.clip.preprocess import preprocess_bytes

    def prepare(ref: ImageRef) -> np.ndarray | ImageRejected:
        data = storage.get_bytes(s3, bucket, ref.s3_key)  # storage errors fail the job: not the image's fault
        try:
            return preprocess_bytes(data, max_pixels=max_pixels)
        except ImageRejected as rejected:
            return rejected

    queue = iter(refs)
    in_flight: deque[tuple[ImageRef, Future[np.ndarray | ImageRejected]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip-prepare") as pool:
        try:
            for ref in queue:
                in_flight.append((ref, pool.submit(prepare, ref)))
                if len(in_flight) >= window:
                    break
            while in_flight:
                ref, future = in_flight.popleft()
                following = next(queue, None)
                if following is not None:
                    in_flight.append((following, pool.submit(prepare, following)))
                yield ref, future.result()
        finally:
            for _, future in in_flight:
                future.cancel()
