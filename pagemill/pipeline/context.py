"""What every stage shares: its context (S3 client, settings, work bucket), the model access of
the two model stages, the document's manifest and its batches' results."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagemill import keys, storage
from pagemill.errors import InternalError
from pagemill.records import BatchResult, BatchSpec, load, load_list
from pagemill.settings import Settings

if TYPE_CHECKING:
    from pagemill.captions.breaker import CircuitBreaker
    from pagemill.captions.budget import TokenBudget


def document_id_for(sha256: str) -> str:
    """Document identity is the content: the same bytes under any key are one document."""
    return sha256[:32]


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read in blocks (the local engine and `pagemill status` identify
    a PDF on disk by it)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class StageContext:
    """What every stage needs from the edge: clients, settings, where to put work."""

    s3: Any
    settings: Settings
    work_bucket: str
    scratch: Path = Path(tempfile.gettempdir()) / "pagemill"


@dataclass(frozen=True)
class ModelAccess:
    """What CaptionBatch and UnderstandDocument need to call the model: the SDK client, the
    breaker every document shares, this document's token budget, and the seconds left to call."""

    client: Any
    breaker: CircuitBreaker
    budget: TokenBudget | None
    time_left: Callable[[], float] | None = None


def load_manifest(ctx: StageContext, key: str, only_batch: BatchSpec | None = None) -> list[BatchSpec]:
    """The document's page batches, in page order. A document of one batch has it in the payload
    (Plan's ``only_batch``): not read again from S3, a round trip fewer for each stage."""
    if only_batch is not None:
        return [only_batch]
    specs = load_list(BatchSpec, storage.get_json(ctx.s3, ctx.work_bucket, key))
    return sorted(specs, key=lambda spec: spec.first_page)


def batch_results(ctx: StageContext, document_id: str, manifest: list[BatchSpec]) -> Iterator[BatchResult]:
    """ExtractBatch's results in page order, one in memory at a time. A missing one is a defect
    (ExtractPages succeeded only if every batch wrote its result)."""
    for spec in manifest:
        key = keys.batch_result_key(document_id, spec.first_page, spec.last_page)
        try:
            yield load(BatchResult, storage.get_json(ctx.s3, ctx.work_bucket, key))
        except storage.SourceMissing as exc:
            raise InternalError(
                f"the result of pages {spec.first_page}-{spec.last_page} is missing from s3://{ctx.work_bucket}/{key}"
            ) from exc
