"""A small CLIP-shaped model set, generated deterministically, for tests and local runs (no CLIP
weights can be downloaded there). Same files, input/output names, dtypes and shapes as the real
export, so every line of loading, preprocessing, tokenizing and batching code is the real one:

  image: 16x16 average pool → flatten (588) → MatMul → Tanh → MatMul → image_embeds [N, 512]
  text:  embedding table lookup → mean over the non-padding positions → text_embeds [N, 512]

Fixed-seed random projections keep distinct images apart and similar images close. The vectors
mean nothing semantically: the model name in model.json says so wherever they end up.

    python -m pagemill_tools.clip_testmodel DIR [--fp16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

from pagemill.clip.model import (
    EMBEDDING_DIM,
    IMAGE_ENCODER,
    METADATA,
    TEXT_ENCODER,
    TOKENIZER,
)
from pagemill.clip.preprocess import IMAGE_SIZE
from pagemill.clip.tokenizer import CONTEXT_LENGTH, END_TOKEN, START_TOKEN

if TYPE_CHECKING:
    import onnx

NAME = "pagemill-test-clip"
# Bump when the generated files change, so ensure_test_model regenerates stale copies.
GENERATOR_VERSION = 1
_POOL = 16
_OPSET = 17
_IR_VERSION = 9  # loadable by every ONNX Runtime from 1.15 on
_MERGES = 400
# CLIP's pre-tokenizer split, as in openai/clip-vit-base-patch32's tokenizer.json.
_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_CORPUS = """
a photo of a red leather sofa in a living room. a diagram of an engine with labelled parts.
the quarterly revenue chart shows steady growth. a black and white company logo. a map of the
city streets and the river. a table of measurements in millimetres. a portrait of a woman
smiling. a close up of a circuit board. the floor plan of a two bedroom apartment. a bar chart
comparing sales by region. a product photo of running shoes on a white background. a scanned
page of handwritten notes. a screenshot of a web page. an illustration of a cat sitting on a chair.
"""


def ensure_test_model(directory: Path, *, fp16: bool = False) -> Path:
    """Generate the model set into ``directory`` unless an up-to-date copy is already there.
    Safe to call from concurrent processes: files are written whole and renamed into place."""
    directory = Path(directory)
    metadata = directory / METADATA
    try:
        current = json.loads(metadata.read_text())
    except (FileNotFoundError, ValueError):
        current = None
    wanted = _metadata(fp16)
    files = (IMAGE_ENCODER, TEXT_ENCODER, TOKENIZER)
    if current != wanted or not all((directory / f).is_file() for f in files):
        generate(directory, fp16=fp16)
    return directory


def generate(directory: Path, *, fp16: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tokenizer = build_tokenizer()
    image = _image_encoder(rng, fp16=fp16)
    text = _text_encoder(rng, vocab_size=tokenizer.get_vocab_size(), pad_id=tokenizer.token_to_id(END_TOKEN))
    _write(directory / TOKENIZER, tokenizer.to_str().encode())
    _write(directory / IMAGE_ENCODER, image.SerializeToString())
    _write(directory / TEXT_ENCODER, text.SerializeToString())
    # Last: its presence with the current version marks a complete set.
    _write(directory / METADATA, json.dumps(_metadata(fp16), indent=2).encode())


def _metadata(fp16: bool) -> dict[str, object]:
    return {"name": NAME + ("-fp16" if fp16 else ""), "generator_version": GENERATOR_VERSION}


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- ONNX graphs -------------------------------------------------------------------------------


# onnx is imported only where a model is built: importing it costs about a CPU-second, and every
# local engine start calls ensure_test_model, which finds the model already there.


def _image_encoder(rng: np.random.Generator, *, fp16: bool) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    grid = IMAGE_SIZE // _POOL
    features = 3 * grid * grid
    w1 = (rng.standard_normal((features, EMBEDDING_DIM)) / np.sqrt(features)).astype(np.float32)
    w2 = (rng.standard_normal((EMBEDDING_DIM, EMBEDDING_DIM)) / np.sqrt(EMBEDDING_DIM)).astype(np.float32)
    io_type = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    nodes = [
        # An fp16 export takes and returns float16; the arithmetic here stays float32 because
        # ONNX Runtime's CPU provider lacks float16 kernels for some of these operators.
        helper.make_node("Cast", ["pixel_values"], ["pixels32"], to=TensorProto.FLOAT),
        helper.make_node("AveragePool", ["pixels32"], ["pooled"], kernel_shape=[_POOL, _POOL], strides=[_POOL, _POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["hidden"]),
        helper.make_node("Tanh", ["hidden"], ["activated"]),
        helper.make_node("MatMul", ["activated", "w2"], ["embeds32"]),
        helper.make_node("Cast", ["embeds32"], ["image_embeds"], to=io_type),
    ]
    graph = helper.make_graph(
        nodes, "pagemill_test_clip_vision",
        [helper.make_tensor_value_info("pixel_values", io_type, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("image_embeds", io_type, ["batch", EMBEDDING_DIM])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return _model(graph)


def _text_encoder(rng: np.random.Generator, *, vocab_size: int, pad_id: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    table = rng.standard_normal((vocab_size, EMBEDDING_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0),
        helper.make_node("Equal", ["input_ids", "pad_id"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["is_text"]),
        helper.make_node("Cast", ["is_text"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["summed"], keepdims=0),
        # The start token is never padding, so the count is at least 1.
        helper.make_node("ReduceSum", ["mask", "seq_axis"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["text_embeds"]),
    ]
    graph = helper.make_graph(
        nodes, "pagemill_test_clip_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", CONTEXT_LENGTH])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array(pad_id, dtype=np.int64), "pad_id"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "last_axis"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
        ],
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="pagemill_tools.clip_testmodel",
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# --- tokenizer ---------------------------------------------------------------------------------


def build_tokenizer() -> Tokenizer:
    """A byte-level BPE tokenizer laid out like CLIP's: the 256 byte symbols, the same with the
    end-of-word mark "</w>", learned merges, then <|startoftext|> and <|endoftext|>. Merges are
    learned here by a plain deterministic loop (the tokenizers trainer numbers its vocabulary
    differently from run to run)."""
    alphabet = list(_bytes_to_unicode().values())
    words = _pretokenize(_CORPUS)
    merges = _learn_merges(words, _MERGES)
    vocab_tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_tokens))}
    for special in (START_TOKEN, END_TOKEN):
        vocab[special] = len(vocab)
    tokenizer = Tokenizer(models.BPE(
        vocab=vocab, merges=merges, unk_token=END_TOKEN, continuing_subword_prefix="", end_of_word_suffix="</w>",
        fuse_unk=False,
    ))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(
        (END_TOKEN, vocab[END_TOKEN]), (START_TOKEN, vocab[START_TOKEN]), add_prefix_space=False, trim_offsets=False,
    )
    tokenizer.add_special_tokens([START_TOKEN, END_TOKEN])
    return tokenizer


def _pretokenize(text: str) -> Counter[tuple[str, ...]]:
    byte_symbols = _bytes_to_unicode()
    words: Counter[tuple[str, ...]] = Counter()
    for word in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", " ".join(text.lower().split())):
        symbols = [byte_symbols[b] for b in word.encode()]
        symbols[-1] += "</w>"
        words[tuple(symbols)] += 1
    return words


def _learn_merges(words: Counter[tuple[str, ...]], count: int) -> list[tuple[str, str]]:
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        # Most frequent first, ties by the pair itself: the same merges on every run.
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        words = Counter({_merge(word, best): n for word, n in words.items()})
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character map, in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate pagemill's small CLIP-shaped test model set.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--fp16", action="store_true", help="float16 image encoder inputs and outputs")
    args = parser.parse_args()
    ensure_test_model(args.directory, fp16=args.fp16)


if __name__ == "__main__":
    main()
