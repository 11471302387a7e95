"""One typed settings object, read from the environment once at the edge (handler start,
CLI start) and passed down. Library code never reads ``os.environ`` itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

_PREFIX = "PAGEMILL_"


@dataclass(frozen=True)
class Settings:
    # Page batching: a batch holds at most batch_pages pages and at most batch_cost cost
    # units, where a page costs 1 plus image_page_cost per image drawn on it, so batches of
    # image-heavy pages are smaller.
    batch_pages: int = 25
    batch_cost: float = 25.0
    image_page_cost: float = 0.5
    # Input limits: larger inputs fail with a clear reason instead of exhausting a worker.
    max_bytes: int = 512 * 1024 * 1024
    max_pages: int = 10_000
    # Images: smaller than min_image_side on either side are decoration (rules, bullets);
    # more than max_image_pixels are refused without decoding (decompression bombs).
    min_image_side: int = 32
    max_image_pixels: int = 40_000_000
    # Chunks: greedy packing of paragraphs up to chunk_chars characters.
    chunk_chars: int = 1500
    # "legacy": pymupdf4llm without the layout model (about 3x faster, tables detected);
    # "layout": pymupdf4llm's ONNX layout model.
    markdown_mode: str = "legacy"
    # Embeddings: documents with at least gpu_min_images distinct images go to the GPU
    # container; fewer are embedded in a CPU Lambda (no GPU start-up wait).
    gpu_min_images: int = 200
    embed_batch_size: int = 16
    # The CLIP model folder (model.json, image_encoder.onnx, text_encoder.onnx, tokenizer.json);
    # on Lambda it is filled from clip_s3_uri at the first cold start.
    clip_dir: str = ""
    clip_s3_uri: str = ""
    database_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "DATABASE_URL" if f.name == "database_url" else _PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            kind = type(f.default) if f.default is not None else str
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.batch_pages < 1:
            raise ValueError("PAGEMILL_BATCH_PAGES must be at least 1")
        if self.markdown_mode not in ("legacy", "layout"):
            raise ValueError("PAGEMILL_MARKDOWN_MODE must be 'legacy' or 'layout'")
        if self.chunk_chars < 200:
            raise ValueError("PAGEMILL_CHUNK_CHARS must be at least 200")
