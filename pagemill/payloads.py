"""What each state hands its Lambda (the ``Payload`` the state machine builds), typed. A handler
parses its event once with ``records.load(<Payload>, event)`` and the pipeline function takes
the typed object; keys the state machine adds that a stage does not read are ignored. ExtractBatch's
input is a manifest item, ``records.BatchSpec``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AliasPath, Field

from pagemill.records import BatchSpec, ImageRef, SourceObject, StateSpan


@dataclass(frozen=True)
class PlanInput:
    source: SourceObject
    execution_arn: str | None = None

    def log_keys(self) -> dict[str, Any]:
        return {"bucket": self.source.bucket, "key": self.source.key, "version_id": self.source.version_id}


@dataclass(frozen=True)
class DocumentInput:
    """CollectImages', UnderstandDocument's and EmbedChunks' input: the planned document."""

    document_id: str
    manifest_key: str
    only_batch: BatchSpec | None = None  # a document of one batch: the manifest's one item


@dataclass(frozen=True)
class SpeakSummaryInput:
    """SpeakSummary's input: the document and its understanding (the summary and its language)."""

    document_id: str
    understanding_key: str


@dataclass(frozen=True)
class SpeechBranch:
    """What SpeakSummary left: its audio (where, what, how long, who spoke it) as its result, or
    the error and cause its Catch recorded."""

    key: str | None = None
    format: str | None = None
    seconds: float | None = None
    voice: str | None = None
    engine: str | None = None
    language: str | None = None  # the summary's language the voice speaks (ISO 639-1)
    chars: int | None = None  # characters of the summary spoken
    cut: bool | None = None  # the summary was longer than the cap: it was cut at a sentence end
    error: str | None = None
    cause: str | None = None
    span: StateSpan | None = None  # SpeakSummary's, when it answered


@dataclass(frozen=True)
class EmbedInput:
    document_id: str
    images_key: str


@dataclass(frozen=True)
class CaptionBatchInput:
    """One item of the CaptionImages map (CollectImages writes them)."""

    document_id: str
    batch_no: int
    images: list[ImageRef]
    out_key: str

    @property
    def map_item(self) -> str:
        """Its item of the CaptionImages map (its span is kept in S3: pagemill.pipeline.timings)."""
        return f"{self.batch_no:05d}"


@dataclass(frozen=True)
class CaptionsBranch:
    """The caption branch's outcome: where the batches' results are, or the error that ended it."""

    prefix: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class UnderstandingBranch:
    """The understanding branch's outcome: its result's key, or the error that ended it."""

    key: str | None = None
    error: str | None = None
    span: StateSpan | None = None  # UnderstandDocument's, when it answered


@dataclass(frozen=True)
class ChunkVectorsBranch:
    """EmbedChunks' outcome: where the chunk vectors are and the model that made them, or why
    there are none (``error``: the embedding service gave none; the document is still written)."""

    key: str | None = None
    model: str | None = None
    chunks: int = 0  # vectors stored
    error: str | None = None
    span: StateSpan | None = None  # EmbedChunks', when it answered


@dataclass(frozen=True)
class WriteInput:
    document_id: str
    manifest_key: str
    only_batch: BatchSpec | None = None  # a document of one batch: the manifest's one item
    execution_arn: str | None = None
    started_at: str | None = None
    embeddings_index_key: str | None = None
    # None: the branch is not in this state machine's input at all (older executions).
    captions: CaptionsBranch | None = None
    understanding: UnderstandingBranch | None = None
    # None: nothing was to be spoken (no summary, speech off), or an older execution.
    speech: SpeechBranch | None = None
    # None: chunk embeddings are off in this state machine.
    chunk_vectors: ChunkVectorsBranch | None = None
    # The spans the earlier states' results carried, by where the state machine kept them (each
    # names its state; null: that state did not run); the branches' are in their outcomes
    # (pagemill.pipeline.timings).
    spans: dict[str, StateSpan | None] = field(default_factory=dict)

    def carried_spans(self) -> list[StateSpan | None]:
        branches = (self.understanding, self.speech, self.chunk_vectors)
        return [*self.spans.values(), *(branch.span for branch in branches if branch is not None)]


@dataclass(frozen=True)
class CatchInfo:
    """What a Catch puts at ``$.failed.<state>``."""

    error: Annotated[str, Field(alias="Error")] = "States.Runtime"
    cause: Annotated[str | None, Field(alias="Cause")] = None


@dataclass(frozen=True)
class PlannedDocument:
    document_id: str | None = None


@dataclass(frozen=True)
class FailedExecutionState:
    """The execution's whole state when a Catch sent it to RecordFailure."""

    source: SourceObject
    plan: PlannedDocument | None = None
    failed: dict[str, CatchInfo] | None = None


@dataclass(frozen=True)
class RecordFailureInput:
    state: FailedExecutionState
    execution_arn: str | None = None

    @property
    def document_id(self) -> str | None:
        return self.state.plan.document_id if self.state.plan else None

    def log_keys(self) -> dict[str, Any]:
        return {"key": self.state.source.key, "document_id": self.document_id}


@dataclass(frozen=True)
class ExecutionEnded:
    """EventBridge "Step Functions Execution Status Change" (Settle's rule: ABORTED, TIMED_OUT, FAILED;
    ``error`` and ``cause`` are set for a failed one)."""

    execution_arn: Annotated[str, Field(validation_alias=AliasPath("detail", "executionArn"))]
    status: Annotated[str, Field(validation_alias=AliasPath("detail", "status"))]
    error: Annotated[str | None, Field(validation_alias=AliasPath("detail", "error"))] = None
    cause: Annotated[str | None, Field(validation_alias=AliasPath("detail", "cause"))] = None

    def log_keys(self) -> dict[str, Any]:
        return {"execution_arn": self.execution_arn}


@dataclass(frozen=True)
class ObjectCreated:
    """EventBridge "Object Created" from the upload bucket (the trigger's rule)."""

    bucket: Annotated[str, Field(validation_alias=AliasPath("detail", "bucket", "name"))]
    key: Annotated[str, Field(validation_alias=AliasPath("detail", "object", "key"))]
    version_id: Annotated[str | None, Field(validation_alias=AliasPath("detail", "object", "version-id"))] = None

    @property
    def source(self) -> SourceObject:
        return SourceObject(self.bucket, self.key, self.version_id)

    def log_keys(self) -> dict[str, Any]:
        return {"key": self.key}


@dataclass(frozen=True)
class ReembedInput:
    """ReembedBatch's input (the reembed state machine's): how much one invocation may do."""

    # Chunks one invocation re-embeds at most (the handler also stops well before its timeout).
    max_chunks: int = 20_000
    # Chunks per transaction (each commits: a stopped run loses nothing).
    batch_size: int = 256

    def log_keys(self) -> dict[str, Any]:
        return {"max_chunks": self.max_chunks, "batch_size": self.batch_size}
