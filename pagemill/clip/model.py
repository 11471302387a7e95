"""The CLIP model as two ONNX graphs run by ONNX Runtime: CUDA when the runtime has it, else CPU.

A model directory holds:
  image_encoder.onnx  pixel_values float32|float16 [N, 3, 224, 224] → image_embeds [N, 512]
  text_encoder.onnx   input_ids int64 [N, 77] → text_embeds [N, 512]
  tokenizer.json      Hugging Face tokenizer of the same checkpoint
  model.json          {"name": ...}: recorded with every embedding, so vectors of different
                      models are never mixed
The text half is opened on first use: the embed stage never needs it, and a directory with only
the image encoder (a smaller Lambda package) serves image embedding alone."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pagemill.clip.errors import ClipModelError
from pagemill.clip.preprocess import IMAGE_SIZE
from pagemill.clip.tokenizer import CONTEXT_LENGTH, ClipTokenizer

log = logging.getLogger(__name__)

EMBEDDING_DIM = 512  # images.embedding is vector(512)
IMAGE_ENCODER = "image_encoder.onnx"
TEXT_ENCODER = "text_encoder.onnx"
TOKENIZER = "tokenizer.json"
METADATA = "model.json"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32}


@dataclass(frozen=True)
class _Encoder:
    """One ONNX session with its input and output read from the graph."""

    session: Any
    input_name: str
    input_type: type
    output_name: str

    @classmethod
    def open(
        cls, path: Path, *, options: Any, providers: list[str], output: str, item_shape: tuple[int, ...],
    ) -> _Encoder:
        import onnxruntime as ort

        if not path.is_file():
            raise ClipModelError(f"{path} is missing")
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise ClipModelError(f"cannot load {path.name}: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ClipModelError(f"{path.name} takes {[i.name for i in inputs]}, expected one input")
        graph_input = inputs[0]
        if graph_input.type not in _NUMPY_TYPES:
            raise ClipModelError(f"{path.name} input {graph_input.name} is {graph_input.type}")
        # Dynamic dimensions come back as names or None; only static ones can be checked here.
        shape = graph_input.shape
        if len(shape) != 1 + len(item_shape) or any(
            isinstance(d, int) and d != want for d, want in zip(shape[1:], item_shape, strict=True)
        ):
            raise ClipModelError(f"{path.name} input shape {shape}, expected [N, {', '.join(map(str, item_shape))}]")
        named = [o for o in outputs if o.name == output]
        if not named and len(outputs) == 1:
            named = outputs
        if not named:
            raise ClipModelError(f"{path.name} has no output {output!r} (outputs: {[o.name for o in outputs]})")
        dim = named[0].shape[-1]
        if len(named[0].shape) != 2 or (isinstance(dim, int) and dim != EMBEDDING_DIM):
            raise ClipModelError(f"{path.name} output shape {named[0].shape}, expected [N, {EMBEDDING_DIM}]")
        return cls(session, graph_input.name, _NUMPY_TYPES[graph_input.type], named[0].name)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """batch → L2-normalized float32 [N, 512]."""
        if len(batch) == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        (out,) = self.session.run([self.output_name], {self.input_name: batch.astype(self.input_type, copy=False)})
        if out.shape != (len(batch), EMBEDDING_DIM):
            raise ClipModelError(f"model returned {out.shape} for a batch of {len(batch)}")
        out = out.astype(np.float32, copy=False)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, np.float32(1e-12))


class ClipModel:
    def __init__(self, model_dir: Path, name: str, image: _Encoder, options: Any, providers: list[str]) -> None:
        self.model_dir = model_dir
        self.name = name
        self.dim = EMBEDDING_DIM
        self._image = image
        self._options = options
        self._providers = providers
        self._text: tuple[_Encoder, ClipTokenizer] | None = None
        self._text_lock = threading.Lock()

    @classmethod
    def load(
        cls, model_dir: Path, *, providers: list[str] | None = None, intra_op_threads: int | None = None,
    ) -> ClipModel:
        """Open the image encoder. ``providers`` defaults to CUDA (when this onnxruntime build has
        it) then CPU; ``intra_op_threads`` defaults to ONNX Runtime's choice (all physical cores)."""
        import onnxruntime as ort

        from pagemill.onnx_threads import QuietSessionOptions

        model_dir = Path(model_dir)
        name = _read_name(model_dir)
        available = ort.get_available_providers()
        chosen = providers or ([CUDA, CPU] if CUDA in available else [CPU])
        # Not spinning: the random ViT-B/32 on 2 CPU cores, 3 batches of 16, took 3.35 s of CPU
        # for 1.70 s of wall spinning and 2.77 s for 1.46 s not.
        options = QuietSessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        image = _Encoder.open(
            model_dir / IMAGE_ENCODER, options=options, providers=chosen, output="image_embeds",
            item_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        )
        model = cls(model_dir, name, image, options, chosen)
        extra = {"model": name, "provider": model.provider, "requested_providers": chosen,
                 "available_providers": available, "input_type": image.input_type.__name__}
        if chosen[0] == CUDA and model.provider != CUDA:
            # ONNX Runtime falls back to CPU with only a warning of its own (e.g. cuDNN missing):
            # on the GPU worker that is a 20-50x slowdown someone must notice.
            log.warning("CUDA execution provider requested but not active; running on CPU", extra=extra)
        else:
            log.info("CLIP model loaded", extra=extra)
        return model

    @property
    def provider(self) -> str:
        """The execution provider the image encoder runs on, e.g. "CUDAExecutionProvider"."""
        return self._image.provider

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed pixels [N, 3, 224, 224] → unit vectors float32 [N, 512]."""
        if pixels.ndim != 4 or pixels.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"pixels must be [N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}], got {pixels.shape}")
        return self._image.run(pixels)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → unit vectors float32 [N, 512], comparable with image vectors by dot product."""
        encoder, tokenizer = self._text_half()
        return encoder.run(tokenizer.encode(texts))

    def _text_half(self) -> tuple[_Encoder, ClipTokenizer]:
        with self._text_lock:
            if self._text is None:
                tokenizer_path = self.model_dir / TOKENIZER
                if not tokenizer_path.is_file():
                    raise ClipModelError(f"{tokenizer_path} is missing")
                encoder = _Encoder.open(
                    self.model_dir / TEXT_ENCODER, options=self._options, providers=self._providers,
                    output="text_embeds", item_shape=(CONTEXT_LENGTH,),
                )
                self._text = (encoder, ClipTokenizer.from_file(tokenizer_path))
            return self._text


def _read_name(model_dir: Path) -> str:
    path = model_dir / METADATA
    try:
        name = json.loads(path.read_text())["name"]
    except FileNotFoundError as exc:
        raise ClipModelError(f"{path} is missing: {model_dir} is not a pagemill CLIP model directory") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ClipModelError(f"{path} has no model name: {exc}") from exc
    if not isinstance(name, str) or not name:
        raise ClipModelError(f"{path} has no model name")
    return name
