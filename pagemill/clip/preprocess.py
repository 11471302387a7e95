"""CLIP image preprocessing, pixel for pixel what Hugging Face's CLIPImageProcessor does for
openai/clip-vit-base-patch32: RGB, shorter side to 224 with Pillow's bicubic filter, center crop
224x224, scale to [0, 1], normalize with CLIP's mean and std, float32 CHW.

(OpenAI's own ``clip.load`` preprocessing differs in one place: torchvision's CenterCrop rounds
the crop offset, HF floors it, so the two can sit one pixel apart. The exported model is HF's.)"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from pagemill.clip.errors import ImageRejected

IMAGE_SIZE = 224
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

# Beyond this aspect ratio the full-size intermediate of "resize the shorter side to 224" grows
# without bound (a 40 x 1,000,000 strip would resize to 224 x 5.6M). There we resample only the
# region the center crop keeps; Pillow's boxed resize can differ from the full one by a few levels.
_MAX_ASPECT_FOR_FULL_RESIZE = 16
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def preprocess(image: Image.Image) -> np.ndarray:
    """One image → float32 [3, 224, 224], normalized as CLIP expects."""
    crop = _resize_and_crop(_to_rgb(image))
    pixels = np.asarray(crop, dtype=np.float32) / np.float32(255.0)
    return ((pixels - MEAN) / STD).transpose(2, 0, 1).copy()


def preprocess_bytes(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode an image file (any format Pillow reads) and preprocess it.

    Raises ImageRejected for anything that cannot become an embedding: not an image, a format
    Pillow lacks, a corrupt or truncated stream, or more than ``max_pixels`` pixels (checked from
    the header, before any pixel is decoded, so a decompression bomb costs nothing)."""
    with _decoding("image header"):
        image = Image.open(io.BytesIO(data))
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(f"too many pixels: {width}x{height} is over the limit of {max_pixels}")
        with _decoding(image.format or "image"):
            image.load()
            return preprocess(image)


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    try:
        yield
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image format Pillow can read") from exc
    except MemoryError:
        raise
    except Exception as exc:
        # Decoders of untrusted bytes fail in many ways (OSError for truncation, SyntaxError,
        # ValueError, struct.error, DecompressionBombError): all mean "this image is unusable".
        raise ImageRejected(f"cannot decode {what}: {type(exc).__name__}: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's 16-bit → RGB conversion clips at 255 instead of scaling, turning a 16-bit
        # scan white. Scale to 8 bits first (HF would embed the white image).
        wide = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    # Palette, grayscale, 1-bit, CMYK, YCbCr, and alpha (dropped, not composited), as HF does.
    return image.convert("RGB")


def _resize_and_crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    # HF get_resize_output_image_size(default_to_square=False): the long side is truncated.
    if width <= height:
        new_w, new_h = IMAGE_SIZE, int(IMAGE_SIZE * height / width)
    else:
        new_w, new_h = int(IMAGE_SIZE * width / height), IMAGE_SIZE
    # HF center_crop: offsets floor.
    top, left = (new_h - IMAGE_SIZE) // 2, (new_w - IMAGE_SIZE) // 2
    if max(new_w, new_h) <= IMAGE_SIZE * _MAX_ASPECT_FOR_FULL_RESIZE:
        resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        return resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + IMAGE_SIZE) * sx, (top + IMAGE_SIZE) * sy)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC, box=box)
