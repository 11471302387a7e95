"""Captions: each extracted image → one factual sentence and up to five tags, from Claude vision.

The answer is structured output through tool use: the request offers one tool,
``record_caption``, with a JSON schema and forces it (``tool_choice``), and the caption is read
from the tool_use block's input, never scraped from text. Images are re-encoded to what the API
takes first (JPEG/PNG/GIF/WEBP, long side at most 1568 px, at most 5 MB base64).

Model API trouble never fails a document: each image ends "captioned" or "skipped" with the
reason (see pagemill.captions.client for retries, the shared breaker and the token budget).

S3 contract of a caption batch (``caption_batch``):
  input   the images: [{"sha256": str, "s3_key": str}, ...] (same bucket)
  output  <out_key>  {"results": [CaptionResult.to_dict(), ...]}
"""

from __future__ import annotations

import base64
import io
import logging
import math
import random as _random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pagemill import storage
from pagemill.captions.client import MALFORMED_ANSWER, RetryPolicy, call_tool
from pagemill.errors import SourceMissing
from pagemill.records import CAPTIONED, SKIPPED, CaptionResult, ImageRef, dump, load

if TYPE_CHECKING:
    from PIL import Image

    from pagemill.captions.breaker import CircuitBreaker
    from pagemill.captions.budget import TokenBudget

log = logging.getLogger(__name__)

UNREADABLE_IMAGE = "unreadable image"
IMAGE_MISSING = "image missing from storage"

TOOL_NAME = "record_caption"
MAX_TAGS = 5
MAX_CAPTION_CHARS = 400
MAX_OUTPUT_TOKENS = 300
# The API's limits for an image block.
MAX_LONG_SIDE = 1568
MAX_BASE64_BYTES = 5 * 1024 * 1024
_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
# Modes each format may be sent in as is; anything else is converted.
_SENDABLE_MODES = {
    "JPEG": {"RGB", "L"},
    "PNG": {"RGB", "RGBA", "L", "LA", "P", "1"},
    "GIF": {"P", "L"},
    "WEBP": {"RGB", "RGBA"},
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
# Sources that are photographs go out as JPEG; drawings, scans and anything with alpha as PNG.
_PHOTO_FORMATS = {"JPEG", "JPEG2000", "MPO"}

PROMPT = (
    "This image was extracted from a PDF document (a catalogue, manual, datasheet or report). "
    "Describe it for a search index by calling record_caption with: caption, one factual sentence "
    "saying what the image visibly shows (objects, materials, colours, legible text or labels; "
    "no guesses, no marketing language); tags, up to five short lowercase keywords a person would "
    "search for."
)

CAPTION_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Record the caption and search tags of the image.",
    "input_schema": {
        "type": "object",
        "properties": {
            "caption": {
                "type": "string",
                "description": "One factual sentence describing what the image shows.",
            },
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": MAX_TAGS,
                "description": "Up to five short lowercase search keywords.",
            },
        },
        "required": ["caption", "tags"],
        "additionalProperties": False,
    },
}


def skipped(sha256: str, reason: str, *, input_tokens: int = 0, output_tokens: int = 0) -> CaptionResult:
    return CaptionResult(sha256, SKIPPED, None, [], reason, input_tokens, output_tokens)


def skip_all(images: Iterable[ImageRef], reason: str) -> list[CaptionResult]:
    """Every image skipped for one reason (captions off: no API key, no provider)."""
    return [skipped(image.sha256, reason) for image in images]


@dataclass(frozen=True)
class PreparedImage:
    media_type: str
    data: str  # base64
    width: int
    height: int

    @property
    def estimated_tokens(self) -> int:
        # The API's own estimate (width * height / 750); it scales larger images down to ~1600.
        return min(1600, math.ceil(self.width * self.height / 750))


class UnreadableImage(Exception):
    """The bytes are no image Pillow can decode (or too many pixels to try)."""


def caption_images(
    s3: Any,
    *,
    bucket: str,
    images: Iterable[ImageRef],
    client: Any,
    model: str,
    breaker: CircuitBreaker,
    budget: TokenBudget | None,
    max_attempts: int = 4,
    base_delay: float = 1.0,
    max_delay: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
    max_image_pixels: int = 40_000_000,
    time_left: Callable[[], float] | None = None,
    random: Callable[[], float] = _random.random,
) -> list[CaptionResult]:
    """Caption each image in order; one result per image.

    Never raises for model API trouble or a bad image; S3 being unavailable does raise
    (StorageUnavailable, retried by the state machine)."""
    policy = RetryPolicy(max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay)
    results: list[CaptionResult] = []
    for image in images:
        sha256, s3_key = image.sha256, image.s3_key
        result = _caption_one(
            s3, bucket, sha256, s3_key, client=client, model=model, breaker=breaker, budget=budget, policy=policy,
            sleep=sleep, max_image_pixels=max_image_pixels, time_left=time_left, random=random,
        )
        log.info("image caption", extra={
            "sha256": sha256, "status": result.status, "reason": result.reason,
            "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
        })
        results.append(result)
    return results


def _caption_one(
    s3: Any, bucket: str, sha256: str, s3_key: str, *, client: Any, model: str, breaker: CircuitBreaker,
    budget: TokenBudget | None, policy: RetryPolicy, sleep: Callable[[float], None], max_image_pixels: int,
    time_left: Callable[[], float] | None, random: Callable[[], float],
) -> CaptionResult:
    try:
        data = storage.get_bytes(s3, bucket, s3_key)
    except SourceMissing:
        return skipped(sha256, IMAGE_MISSING)
    try:
        prepared = prepare_image(data, max_pixels=max_image_pixels)
    except UnreadableImage as exc:
        log.info("image not captioned: unreadable", extra={"sha256": sha256, "error": str(exc)})
        return skipped(sha256, UNREADABLE_IMAGE)
    request = {
        "model": model,
        "max_tokens": MAX_OUTPUT_TOKENS,
        "tools": [CAPTION_TOOL],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
        "messages": [{
            "role": "user",
            "content": [
                {"type": "image",
                 "source": {"type": "base64", "media_type": prepared.media_type, "data": prepared.data}},
                {"type": "text", "text": PROMPT},
            ],
        }],
    }
    reserve = prepared.estimated_tokens + math.ceil(len(PROMPT) / 4) + 400 + MAX_OUTPUT_TOKENS  # 400: tool schema
    call = call_tool(
        client, request, tool_name=TOOL_NAME, breaker=breaker, budget=budget, reserve_tokens=reserve,
        policy=policy, sleep=sleep, random=random, time_left=time_left,
    )
    tokens = {"input_tokens": call.input_tokens, "output_tokens": call.output_tokens}
    if call.tool_input is None:
        return skipped(sha256, call.reason or MALFORMED_ANSWER, **tokens)
    parsed = parse_caption(call.tool_input)
    if parsed is None:
        return skipped(sha256, MALFORMED_ANSWER, **tokens)
    caption, tags = parsed
    return CaptionResult(sha256, CAPTIONED, caption, tags, None, **tokens)


def parse_caption(tool_input: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(caption, tags) from the tool's input, or None when it does not follow the schema."""
    caption = tool_input.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        return None
    caption = " ".join(caption.split())
    if len(caption) > MAX_CAPTION_CHARS:
        caption = caption[: MAX_CAPTION_CHARS - 1].rstrip() + "…"
    raw_tags = tool_input.get("tags", [])
    if not isinstance(raw_tags, list):
        return None
    tags: list[str] = []
    for tag in raw_tags:
        if not isinstance(tag, str):
            continue
        clean = " ".join(tag.split()).lower()[:40]
        if clean and clean not in tags:
            tags.append(clean)
    return caption, tags[:MAX_TAGS]


def prepare_image(data: bytes, *, max_pixels: int) -> PreparedImage:
    """The image as the API takes it: the original bytes when they already qualify, else
    re-encoded (converted mode, long side ≤ 1568 px, JPEG or PNG, ≤ 5 MB base64)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnreadableImage("not an image format Pillow can read") from exc
    except Exception as exc:  # decoders of untrusted bytes fail in many ways
        raise UnreadableImage(f"{type(exc).__name__}: {exc}") from exc
    with image:
        width, height = image.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise UnreadableImage(f"{width}x{height} pixels is outside the limits")
        try:
            image.load()
        except MemoryError:
            raise
        except Exception as exc:
            raise UnreadableImage(f"cannot decode {image.format or 'image'}: {type(exc).__name__}: {exc}") from exc
        fmt = image.format or ""
        if (
            fmt in _MEDIA_TYPES
            and image.mode in _SENDABLE_MODES[fmt]
            and max(width, height) <= MAX_LONG_SIDE
            and _base64_size(len(data)) <= MAX_BASE64_BYTES
        ):
            return PreparedImage(_MEDIA_TYPES[fmt], base64.b64encode(data).decode("ascii"), width, height)
        return _reencode(image, fmt)


def _reencode(image: Image.Image, source_format: str) -> PreparedImage:
    from PIL import Image

    converted = _normalised(image)
    if max(converted.size) > MAX_LONG_SIDE:
        converted.thumbnail((MAX_LONG_SIDE, MAX_LONG_SIDE), Image.Resampling.LANCZOS)
    as_png = converted.mode in ("RGBA", "LA") or source_format not in _PHOTO_FORMATS
    quality = 90
    while True:
        buffer = io.BytesIO()
        if as_png:
            converted.save(buffer, format="PNG", optimize=True)
        else:
            converted.convert("RGB" if converted.mode != "L" else "L").save(buffer, format="JPEG", quality=quality)
        size = buffer.tell()
        if _base64_size(size) <= MAX_BASE64_BYTES:
            media = "image/png" if as_png else "image/jpeg"
            return PreparedImage(media, base64.b64encode(buffer.getvalue()).decode("ascii"), *converted.size)
        # Too large: a PNG becomes a JPEG (flattened), then quality and size come down.
        if as_png:
            as_png = False
            if converted.mode in ("RGBA", "LA"):
                converted = _flatten(converted)
        elif quality > 60:
            quality -= 15
        else:
            converted = converted.resize(
                (max(1, converted.width * 3 // 4), max(1, converted.height * 3 // 4)), Image.Resampling.LANCZOS
            )


def _normalised(image: Image.Image) -> Image.Image:
    """RGB, RGBA, L or LA: modes every encoder and the API handle."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return image.copy()
    if mode in _SIXTEEN_BIT_MODES:
        import numpy as np
        from PIL import Image

        wide = np.asarray(image, dtype=np.float64)
        top = float(wide.max()) if wide.size else 0.0
        scale = 255.0 / top if top > 255.0 else 1.0
        return Image.fromarray(np.clip(np.rint(wide * scale), 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("PA", "La", "RGBa"):
        return image.convert("RGBA")
    # CMYK, YCbCr, LAB, HSV, …
    return image.convert("RGB")


def _flatten(image: Image.Image) -> Image.Image:
    from PIL import Image

    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _base64_size(n: int) -> int:
    return 4 * math.ceil(n / 3)


# --- a batch: what one Caption Lambda does -----------------------------------------------


def caption_batch(
    s3: Any,
    *,
    bucket: str,
    images: Iterable[ImageRef],
    out_key: str,
    client: Any,
    model: str,
    breaker: CircuitBreaker,
    budget: TokenBudget | None,
    max_attempts: int,
    base_delay: float,
    max_delay: float,
    max_image_pixels: int = 40_000_000,
    time_left: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Caption ``images``, write the results to ``out_key`` and return a small summary
    (the state payload): {"captions_key", "captioned", "skipped", "input_tokens", "output_tokens"}."""
    results = caption_images(
        s3, bucket=bucket, images=images, client=client, model=model, breaker=breaker, budget=budget,
        max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep,
        max_image_pixels=max_image_pixels, time_left=time_left,
    )
    return finish_batch(s3, bucket, out_key, results)


def finish_batch(s3: Any, bucket: str, out_key: str, results: list[CaptionResult]) -> dict[str, Any]:
    """Write a batch's results to ``out_key``; its summary is the map item's (small) result."""
    write_results(s3, bucket, out_key, results)
    summary = summarize(results)
    return {
        "captions_key": out_key, "captioned": summary["captioned"], "skipped": summary["skipped"],
        "input_tokens": summary["input_tokens"], "output_tokens": summary["output_tokens"],
    }


def write_results(s3: Any, bucket: str, key: str, results: Iterable[CaptionResult]) -> None:
    storage.put_json(s3, bucket, key, {"results": [dump(r) for r in results]})


def load_results(s3: Any, bucket: str, prefix: str) -> dict[str, CaptionResult]:
    """Every batch's results under ``prefix``, by image sha256 (for the Write stage)."""
    found: dict[str, CaptionResult] = {}
    for key in sorted(storage.list_keys(s3, bucket, prefix)):
        if key.endswith(".json"):
            for item in storage.get_json(s3, bucket, key).get("results", []):
                result = load(CaptionResult, item)
                # A batch that ran twice (a retried Lambda) may hold an image twice: a caption wins.
                if result.sha256 not in found or result.status == CAPTIONED:
                    found[result.sha256] = result
    return found


def summarize(results: Iterable[CaptionResult]) -> dict[str, Any]:
    """The document's caption outcome: {"captioned", "skipped", "reasons": {reason: n},
    "input_tokens", "output_tokens"} (documents.caption_summary)."""
    results = list(results)
    reasons = Counter(r.reason or "unknown" for r in results if r.status != CAPTIONED)
    return {
        "captioned": sum(1 for r in results if r.status == CAPTIONED),
        "skipped": sum(1 for r in results if r.status != CAPTIONED),
        "reasons": dict(reasons.most_common()),
        "input_tokens": sum(r.input_tokens for r in results),
        "output_tokens": sum(r.output_tokens for r in results),
    }
