"""Typed records passed between stages and kept in S3 (batch results, caption results, the
understanding). One mechanism reads and writes all of them and the state payloads
(pagemill.payloads): ``load(Type, data)`` validates JSON-shaped data into the type and ``dump``
turns a record back into JSON-shaped data (pydantic, over plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from pagemill.errors import InternalError

T = TypeVar("T")

CAPTIONED = "captioned"
UNDERSTOOD = "understood"
SKIPPED = "skipped"


@cache
def _adapter(cls: Any) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def load(cls: type[T], data: Any) -> T:
    """``data`` (parsed JSON: a state payload, an S3 object) as a ``cls``; a shape that does not
    fit is a defect of whoever wrote it, reported with every field that is wrong."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise InternalError(f"not a valid {cls.__name__}: {exc}") from exc


def load_list(cls: type[T], data: Any) -> list[T]:
    return load(list[cls], data)  # type: ignore[valid-type]


def dump(record: Any) -> Any:
    """A record (or a list of them) as JSON-shaped data, field names as the JSON has them."""
    return _adapter(type(record)).dump_python(record, mode="json", by_alias=True)


@dataclass(frozen=True)
class SourceObject:
    """An uploaded object version: what an execution is about."""

    bucket: str
    key: str
    version_id: str | None = None


@dataclass(frozen=True)
class BatchSpec:
    """One item of the batch manifest (and ExtractBatch's input): pages first_page..last_page
    (1-based, inclusive)."""

    document_id: str
    source: SourceObject
    batch_no: int
    first_page: int
    last_page: int
    # Pages of this batch without a usable text layer beyond the document's OCR cap: not read
    # with OCR, each gets a warning.
    ocr_skip: tuple[int, ...] = ()
    # The document's batches (0: not known, a manifest written before the field).
    batch_count: int = 0

    @property
    def only(self) -> bool:
        """The document's only batch: ExtractOnlyBatch, no map (its images are collected with it)."""
        return self.batch_count == 1

    @property
    def map_item(self) -> str | None:
        """The ExtractPages map item this batch is, or None for a document's only batch (whose
        result carries its span: pagemill.pipeline.timings)."""
        return None if self.only else f"{self.batch_no:05d}"

    @property
    def page_count(self) -> int:
        return self.last_page - self.first_page + 1

    def log_keys(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "batch": self.batch_no, "pages": f"{self.first_page}-{self.last_page}"}


@dataclass(frozen=True)
class StateSpan:
    """When one invocation of a state (one map item of it) started and ended, epoch seconds."""

    state: str
    started: float
    ended: float


@dataclass
class PageRecord:
    page_no: int  # 1-based
    markdown: str
    char_count: int
    width: float
    height: float
    image_count: int = 0
    # How the markdown was obtained: "text_layer" (pymupdf4llm), "ignore_graphics" or
    # "text_blocks" (fallbacks when that lost words of the text layer), "ocr" (no usable text layer).
    text_source: str = "text_layer"
    ocr_confidence: float | None = None  # OCR pages: mean recognition score of their lines, 0..1


@dataclass
class ChunkRecord:
    chunk_no: int  # 0-based within its batch; renumbered document-wide at Write
    first_page: int
    last_page: int
    text: str


@dataclass
class ImageOccurrence:
    """One place an image is drawn. Write merges occurrences by ``sha256`` into one image row."""

    sha256: str
    page_no: int
    bbox: tuple[float, float, float, float]
    width: int
    height: int
    ext: str
    s3_key: str
    size_bytes: int


@dataclass
class SkippedImage:
    page_no: int
    width: int
    height: int
    reason: str  # "tiny" | "too_many_pixels" | "unreadable"


@dataclass
class DocumentWarning:
    """Something the user expects that is missing from a finished document (the ``partial``
    outcome): a stable code, one line a person understands, and what it affects."""

    code: str  # e.g. "content_lost", "page_failed", "image_unreadable", "captions_missing"
    message: str
    pages: list[int] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # sha256 of the images affected


@dataclass
class BatchResult:
    """ExtractBatch's result object in S3."""

    document_id: str
    batch_no: int
    first_page: int
    last_page: int
    seconds: float
    pages: list[PageRecord] = field(default_factory=list)
    chunks: list[ChunkRecord] = field(default_factory=list)
    images: list[ImageOccurrence] = field(default_factory=list)
    skipped_images: list[SkippedImage] = field(default_factory=list)
    warnings: list[DocumentWarning] = field(default_factory=list)


@dataclass(frozen=True)
class ImageRef:
    """One distinct image of a document (CollectImages' list, a caption batch's items)."""

    sha256: str
    s3_key: str


@dataclass(frozen=True)
class CaptionResult:
    sha256: str
    status: str  # CAPTIONED | SKIPPED
    caption: str | None
    tags: list[str] = field(default_factory=list)
    reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Product:
    name: str
    attributes: dict[str, str]
    page: int | None  # None when the model named a page that was not shown to it


@dataclass(frozen=True)
class Understanding:
    """What the model said the document is (UnderstandDocument's result object in S3)."""

    doc_type: str | None
    summary: str | None
    products: list[Product] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    status: str = SKIPPED  # UNDERSTOOD | SKIPPED
    reason: str | None = None
    pages_read: int = 0  # pages (whole or cut) included in the request
    truncated: bool = False  # the markdown was cut to fit the budget
    language: str | None = None  # the summary's (ISO 639-1), as the model said; None: not said
