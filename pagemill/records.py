"""Typed records passed between stages. Everything here round-trips through JSON (S3 objects,
state payloads), so each type has ``to_dict``/``from_dict`` and nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceObject:
    """An uploaded object version: what an execution is about."""

    bucket: str
    key: str
    version_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceObject:
        return cls(bucket=d["bucket"], key=d["key"], version_id=d.get("version_id"))


@dataclass(frozen=True)
class BatchSpec:
    """One item of the batch manifest: pages first_page..last_page (1-based, inclusive)."""

    document_id: str
    source: SourceObject
    batch_no: int
    first_page: int
    last_page: int

    @property
    def page_count(self) -> int:
        return self.last_page - self.first_page + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "source": self.source.to_dict(),
            "batch_no": self.batch_no,
            "first_page": self.first_page,
            "last_page": self.last_page,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchSpec:
        return cls(
            document_id=d["document_id"],
            source=SourceObject.from_dict(d["source"]),
            batch_no=int(d["batch_no"]),
            first_page=int(d["first_page"]),
            last_page=int(d["last_page"]),
        )


@dataclass
class PageRecord:
    page_no: int  # 1-based
    markdown: str
    char_count: int
    width: float
    height: float
    image_count: int = 0


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocumentWarning:
        return cls(code=d["code"], message=d["message"], pages=list(d.get("pages", [])),
                   images=list(d.get("images", [])))


@dataclass
class BatchResult:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchResult:
        return cls(
            document_id=d["document_id"],
            batch_no=d["batch_no"],
            first_page=d["first_page"],
            last_page=d["last_page"],
            seconds=d["seconds"],
            pages=[PageRecord(**p) for p in d["pages"]],
            chunks=[ChunkRecord(**c) for c in d["chunks"]],
            images=[ImageOccurrence(**{**i, "bbox": tuple(i["bbox"])}) for i in d["images"]],
            skipped_images=[SkippedImage(**s) for s in d.get("skipped_images", [])],
            warnings=[DocumentWarning.from_dict(w) for w in d.get("warnings", [])],
        )
