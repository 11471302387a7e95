"""The API's response bodies (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from pagemill.records import DocumentWarning


class Problem(BaseModel):
    """Every 4xx/5xx body: what went wrong, in a sentence, and its kind."""

    error: str = Field(description="The error's kind, e.g. NotAPdf, UnknownDocument, PageOutOfRange.")
    message: str = Field(description="What happened and what to do, for a person.")


class Batches(BaseModel):
    total: int | None = Field(description="Page batches planned; null until Plan has run.")
    completed: int
    active: int | None = Field(description="Batches being extracted now; null where it cannot be told.")
    failed: int


class Progress(BaseModel):
    pages_done: int | None
    page_count: int | None
    percent: float | None
    batches: Batches | None
    current_state: str | None = Field(description="The state machine's state it is in, e.g. ExtractPages.")
    estimated_seconds_remaining: float | None = Field(
        description="From the extraction rate so far; null before the first batch and after extraction.")


class Failure(BaseModel):
    error_class: str | None
    message: str | None
    failed_state: str | None
    what_to_do: str


class Links(BaseModel):
    self: str
    pages: str | None = None
    images: str | None = None
    audio: str | None = Field(default=None, description="The spoken summary, when there is one.")
    cancel: str | None = None
    redrive: str | None = None


class DocumentSummary(BaseModel):
    document_id: str
    file_name: str | None
    status: str
    page_count: int | None
    pages_done: int | None
    error_class: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    links: Links


class DocumentList(BaseModel):
    items: list[DocumentSummary]
    total: int
    limit: int
    offset: int
    counts: dict[str, int]


class Image(BaseModel):
    image_no: int
    page_no: int
    page_nos: list[int]
    width: int | None
    height: int | None
    caption: str | None
    caption_status: str | None
    caption_reason: str | None
    url: str
    thumbnail_url: str


class Product(BaseModel):
    name: str
    attributes: dict[str, Any]
    page_no: int | None


class Speech(BaseModel):
    status: str = Field(description="spoken, or failed (reason says why)")
    reason: str | None
    seconds: float | None
    voice: str | None


class DocumentDetail(BaseModel):
    document_id: str
    file_name: str | None
    status: str
    size_bytes: int | None
    page_count: int | None
    execution_arn: str | None
    progress: Progress | None = Field(description="While running; null once it ended.")
    failure: Failure | None
    warnings: list[DocumentWarning]
    timings: dict[str, Any]
    doc_type: str | None
    summary: str | None
    products: list[Product]
    images: list[Image]
    speech: Speech | None = Field(description="The spoken summary; null when there was nothing to speak.")
    created_at: datetime
    updated_at: datetime
    links: Links


class Accepted(BaseModel):
    document_id: str
    status: str = Field(description="running, or the stored outcome when the same content was processed before.")
    duplicate: bool
    execution_arn: str
    file_name: str
    links: Links


class PresignRequest(BaseModel):
    file_name: str = Field(min_length=1, max_length=255, description="The PDF's file name.")


class PresignedUpload(BaseModel):
    url: str
    fields: dict[str, str] = Field(description="Form fields to send with the file (field `file`, last).")
    key: str
    expires_in: int
    max_bytes: int


class Outcome(BaseModel):
    execution_arn: str
    document_id: str | None
    status: str
    note: str


class Stats(BaseModel):
    by_status: dict[str, int]
    pages_processed: int
    images_processed: int
    last_hour: dict[str, float] = Field(description="documents and pages finished in the last hour, pages/second.")
    failures_by_error_class: dict[str, int]
    oldest_running: dict[str, Any] | None


class SearchHit(BaseModel):
    document_id: str
    file_name: str | None = None
    kind: str = Field(description="chunk (a passage of text) or image")
    score: float = Field(description="reciprocal rank fusion of the keyword and vector lists")
    first_page: int | None = Field(None, description="chunk: the pages it spans")
    last_page: int | None = None
    text: str | None = Field(None, description="chunk: a snippet, matched terms between « and »")
    page_no: int | None = Field(None, description="image: the page it is on")
    caption: str | None = None
    image_no: int | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None
    document_url: str


class Health(BaseModel):
    status: str
    checks: dict[str, str]
