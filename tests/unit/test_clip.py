"""CLIP preprocessing, tokenizer and model wrapper, on the generated CLIP-shaped test model."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pagemill.clip.errors import ClipModelError, ImageRejected
from pagemill.clip.model import ClipModel
from pagemill.clip.preprocess import preprocess, preprocess_bytes
from pagemill.clip.tokenizer import ClipTokenizer
from pagemill.onnx_threads import ALLOW_SPINNING
from pagemill_tools.clip_testmodel import NAME, ensure_test_model

# CLIP's published normalization constants, restated here so the reference below shares no code
# with the implementation.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
LIMIT = 40_000_000


def reference_preprocess(image: Image.Image) -> np.ndarray:
    """HF CLIPImageProcessor, step by step in float64: RGB, shortest edge 224 (long side
    truncated), bicubic, center crop with floored offsets, /255, normalize, CHW."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    size = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)
    resized = np.asarray(rgb.resize(size, Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
    top, left = (size[1] - 224) // 2, (size[0] - 224) // 2
    crop = resized[top : top + 224, left : left + 224]
    return ((crop - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: like a photo, and unlike any other seed's."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, 3)
    channels = [127 + 100 * np.sin(x / (13 + 7 * c) + y / (17 + 5 * c) + phase[c]) for c in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_test_model(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def model(model_dir: Path) -> ClipModel:
    return ClipModel.load(model_dir)


# --- preprocessing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "mode"),
    [
        ((640, 480), "RGB"),   # landscape, downscale
        ((251, 900), "RGB"),   # portrait, odd crop margin (HF floors, torchvision would round)
        ((224, 224), "RGB"),   # already the target size
        ((50, 30), "RGB"),     # upscale
        ((300, 301), "L"),
        ((320, 200), "P"),
        ((320, 200), "RGBA"),
        ((320, 200), "CMYK"),
        ((320, 200), "1"),
        ((320, 200), "LA"),
    ],
)
def test_preprocess_matches_reference(size: tuple[int, int], mode: str) -> None:
    # GIVEN an image in one of the modes PDFs yield
    image = photo(*size).convert(mode)
    # WHEN it is preprocessed
    pixels = preprocess(image)
    # THEN it is the HF CLIP tensor: float32 [3, 224, 224], equal to the reference up to float32 rounding
    assert pixels.dtype == np.float32
    assert pixels.shape == (3, 224, 224)
    np.testing.assert_allclose(pixels, reference_preprocess(image), atol=1e-5)


def test_extreme_aspect_ratio_is_bounded_and_close_to_reference() -> None:
    # GIVEN a thin strip whose "shorter side to 224" resize would be 224 x 16,800
    image = photo(40, 3000)
    # WHEN it is preprocessed (only the kept region is resampled)
    pixels = preprocess(image)
    # THEN it is still the reference crop, to within Pillow's boxed-resize rounding
    assert pixels.shape == (3, 224, 224)
    assert np.abs(pixels - reference_preprocess(image)).mean() < 0.01


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    # GIVEN a 16-bit mid-gray image (Pillow's own RGB conversion would clip it to white)
    image = Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16))
    # WHEN it is preprocessed
    pixels = preprocess(image)
    # THEN it is mid-gray
    np.testing.assert_allclose(pixels[:, 0, 0], (128 / 255 - CLIP_MEAN) / CLIP_STD, atol=1e-3)


@pytest.mark.parametrize(
    ("fmt", "options"), [("PNG", {}), ("JPEG", {"quality": 90}), ("JPEG2000", {}), ("TIFF", {}), ("GIF", {})],
)
def test_preprocess_bytes_decodes_formats(fmt: str, options: dict[str, object]) -> None:
    # GIVEN an image file as PyMuPDF extracts them
    data = encoded(photo(300, 200), fmt, **options)
    # WHEN it is decoded and preprocessed
    pixels = preprocess_bytes(data, max_pixels=LIMIT)
    # THEN it is what preprocessing the decoded image gives
    np.testing.assert_allclose(pixels, reference_preprocess(Image.open(io.BytesIO(data))), atol=1e-5)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose pixel data is a few bytes of nothing."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not an image", "not an image format"),
        (encoded(photo(300, 200), "JPEG")[:4000], "cannot decode JPEG"),
        (png_header_only(8000, 8000), "too many pixels"),
        (b"", "not an image format"),
    ],
    ids=["garbage", "truncated-jpeg", "pixel-bomb", "empty"],
)
def test_preprocess_bytes_rejects_with_reason(data: bytes, reason: str) -> None:
    # GIVEN bytes that cannot become an embedding (the bomb's size is read from its header;
    # decoding it would fail differently, as its pixel data is missing)
    # WHEN they are preprocessed
    with pytest.raises(ImageRejected) as rejected:
        preprocess_bytes(data, max_pixels=LIMIT)
    # THEN the typed error says why
    assert reason in rejected.value.reason


# --- tokenizer ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> ClipTokenizer:
    return ClipTokenizer.from_file(model_dir / "tokenizer.json")


def test_tokenizer_frames_and_pads(tokenizer: ClipTokenizer) -> None:
    # GIVEN a short text and an empty one
    # WHEN they are encoded
    ids = tokenizer.encode(["a photo of a red sofa", ""])
    # THEN each row is start, tokens, end, then the end token as padding, 77 long
    assert ids.dtype == np.int64
    assert ids.shape == (2, 77)
    assert tokenizer.pad_id == tokenizer.end_id
    first = list(ids[0])
    end_at = first.index(tokenizer.end_id)
    assert first[0] == tokenizer.start_id
    assert end_at == 7  # "a photo of a red sofa" is 6 tokens in the test vocabulary
    assert all(t == tokenizer.pad_id for t in first[end_at:])
    assert list(ids[1][:2]) == [tokenizer.start_id, tokenizer.end_id]


def test_tokenizer_truncates_keeping_the_end_token(tokenizer: ClipTokenizer) -> None:
    # GIVEN a text far longer than CLIP's 77-token context
    # WHEN it is encoded
    (row,) = tokenizer.encode(["sofa " * 200])
    # THEN it keeps the start token, 75 text tokens and the end token
    assert row[0] == tokenizer.start_id
    assert row[76] == tokenizer.end_id
    assert tokenizer.end_id not in row[1:76]


def test_tokenizer_cleans_like_clip(tokenizer: ClipTokenizer) -> None:
    # GIVEN the same words with different case, whitespace and HTML escaping
    # WHEN they are encoded
    ids = tokenizer.encode(["A Photo\n\tof  a RED sofa ", "a photo of a red sofa", "a photo of a red sofa"])
    # THEN they are the same tokens, and encoding is deterministic
    assert (ids[0] == ids[1]).all() and (ids[1] == ids[2]).all()
    assert (tokenizer.encode(["fish &amp; chips"]) == tokenizer.encode(["fish & chips"])).all()


def test_tokenizer_empty_batch(tokenizer: ClipTokenizer) -> None:
    assert tokenizer.encode([]).shape == (0, 77)


# --- model -------------------------------------------------------------------------------------


def test_test_model_loads_with_its_name_on_cpu(model: ClipModel) -> None:
    # GIVEN the generated fp32 model set WHEN it is loaded THEN it runs on the CPU provider
    assert model.name == NAME
    assert model.dim == 512
    assert model.provider == "CPUExecutionProvider"
    # and its threads sleep between batches rather than spin (pagemill.onnx_threads)
    assert model._image.session._sess_options_initial.get_session_config_entry(ALLOW_SPINNING) == "0"


def test_ensure_test_model_is_idempotent_and_small(tmp_path: Path) -> None:
    # GIVEN a model set generated once
    first = ensure_test_model(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    # WHEN it is ensured again, and regenerated after a file went missing
    ensure_test_model(first)
    (first / "text_encoder.onnx").unlink()
    ensure_test_model(first)
    # THEN the files are byte-identical each time, and small
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    assert sum(len(b) for b in before.values()) < 10 * 1024 * 1024


def test_image_embeddings_are_unit_deterministic_and_batch_independent(model: ClipModel) -> None:
    # GIVEN four different images
    pixels = np.stack([preprocess(photo(320, 240, seed=s)) for s in range(4)])
    # WHEN they are embedded as one batch, and one at a time
    batched = model.embed_images(pixels)
    single = np.concatenate([model.embed_images(pixels[i : i + 1]) for i in range(4)])
    # THEN the vectors are float32 unit vectors, the same either way and on repeat
    assert batched.dtype == np.float32 and batched.shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_array_equal(model.embed_images(pixels), batched)


def test_distinct_images_differ_and_similar_images_agree(model: ClipModel) -> None:
    # GIVEN two unrelated images, and the first one re-encoded as a JPEG at another size
    a, b = photo(400, 300, seed=1), photo(400, 300, seed=2)
    a_again = Image.open(io.BytesIO(encoded(a.resize((380, 285)), "JPEG", quality=85)))
    # WHEN they are embedded
    va, vb, va2 = model.embed_images(np.stack([preprocess(a), preprocess(b), preprocess(a_again)]))
    # THEN the re-encoded copy lies close to its original, the unrelated image does not
    assert float(va @ va2) > 0.95
    assert float(va @ vb) < float(va @ va2) - 0.1


def test_empty_batch_gives_empty_matrix(model: ClipModel) -> None:
    out = model.embed_images(np.zeros((0, 3, 224, 224), dtype=np.float32))
    assert out.shape == (0, 512) and out.dtype == np.float32


def test_wrong_pixel_shape_is_refused(model: ClipModel) -> None:
    with pytest.raises(ValueError, match="3, 224, 224"):
        model.embed_images(np.zeros((2, 224, 224, 3), dtype=np.float32))


def test_text_embeddings(model: ClipModel) -> None:
    # GIVEN texts, one repeated WHEN they are embedded
    vectors = model.embed_texts(["a red sofa", "a bar chart", "a red sofa"])
    # THEN they are unit vectors, equal for equal texts and different otherwise
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_fp16_model_takes_float32_pixels(tmp_path: Path, model: ClipModel) -> None:
    # GIVEN the fp16 variant (float16 input and output, as an fp16 export has)
    fp16 = ClipModel.load(ensure_test_model(tmp_path / "fp16", fp16=True))
    pixels = np.stack([preprocess(photo(300, 200, seed=s)) for s in range(3)])
    # WHEN float32 pixels are embedded
    out = fp16.embed_images(pixels)
    # THEN they are cast for it, and the float32 unit vectors agree with the fp32 model's
    assert out.dtype == np.float32
    assert (np.sum(out * model.embed_images(pixels), axis=1) > 0.999).all()


def test_model_directory_problems_are_typed(tmp_path: Path, model_dir: Path) -> None:
    # GIVEN a directory that is not a model, and one whose image encoder is missing
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text(json.dumps({"name": "x"}))
    # WHEN they are loaded THEN the error names the problem
    with pytest.raises(ClipModelError, match="model.json"):
        ClipModel.load(tmp_path / "nothing")
    with pytest.raises(ClipModelError, match="image_encoder.onnx"):
        ClipModel.load(broken)
