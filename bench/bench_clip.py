"""Images per second for CLIP image embedding on this machine's CPU, two models:

  test      the generated CLIP-shaped test model (pagemill_tools.clip_testmodel): measures our code
  vit-b32   random weights in the real ViT-B/32 image tower's graph (patch conv, 12 pre-LN
            transformer layers of width 768 with 12 heads, QuickGELU MLPs, 768→512 projection,
            88M parameters), built here with onnx.helper: the real model's arithmetic, so its
            speed is the real model's speed (no CLIP weights can be downloaded here)

and, for each: inference alone, batched vs one image per call; decode + preprocess alone; and the
whole Embed stage (moto S3 read, decode, preprocess, inference, S3 write) vs inference alone.

    python bench/bench_clip.py [--images 64] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import boto3
import numpy as np
import onnx
from moto import mock_aws
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from pagemill.clip.embed import embed_images
from pagemill.clip.model import ClipModel
from pagemill.clip.preprocess import preprocess_bytes
from pagemill_tools.clip_testmodel import ensure_test_model

LIMIT = 40_000_000
BUCKET = "bench"


# --- a ViT-B/32 image tower with random weights ---------------------------------------------


def vit_b32(path: Path) -> None:
    width, heads, layers, patch, grid, dim = 768, 12, 12, 32, 7, 512
    tokens = grid * grid + 1
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, *shape: int, scale: float = 0.02) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name: str, values: list[int] | float) -> str:
        dtype = np.float32 if isinstance(values, float) else np.int64
        inits.append(numpy_helper.from_array(np.array(values, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def layer_norm(x: str, name: str) -> str:
        inits.append(numpy_helper.from_array(np.ones(width, np.float32), f"{name}.g"))
        inits.append(numpy_helper.from_array(np.zeros(width, np.float32), f"{name}.b"))
        return node("LayerNormalization", [x, f"{name}.g", f"{name}.b"], f"{name}.out", axis=-1, epsilon=1e-5)

    def linear(x: str, name: str, n_in: int, n_out: int) -> str:
        y = node("MatMul", [x, weight(f"{name}.w", n_in, n_out)], f"{name}.mm")
        return node("Add", [y, weight(f"{name}.b", n_out, scale=0.0)], f"{name}.out")

    conv = node("Conv", ["pixel_values", weight("patch.w", width, 3, patch, patch)], "patches",
                kernel_shape=[patch, patch], strides=[patch, patch])
    flat = node("Reshape", [conv, const("shape_nc_", [0, width, -1])], "patches.flat")
    seq = node("Transpose", [flat], "patches.seq", perm=[0, 2, 1])
    batch = node("Gather", [node("Shape", ["pixel_values"], "in.shape"), const("zero", [0])], "batch")
    cls_shape = node("Concat", [batch, const("one_width", [1, width])], "cls.shape", axis=0)
    cls = node("Expand", [weight("cls", 1, 1, width), cls_shape], "cls.tokens")
    x = node("Add", [node("Concat", [cls, seq], "tokens", axis=1), weight("pos", tokens, width)], "embedded")
    x = layer_norm(x, "pre")
    head_shape = const("head_shape", [0, 0, 3, heads, width // heads])
    merged_shape = const("merged_shape", [0, 0, width])
    scale = const("scale", float((width // heads) ** -0.5))
    alpha = const("gelu", 1.702)
    for i in range(layers):
        p = f"l{i}"
        qkv = linear(layer_norm(x, f"{p}.ln1"), f"{p}.qkv", width, 3 * width)
        qkv = node("Reshape", [qkv, head_shape], f"{p}.qkv5")
        qkv = node("Transpose", [qkv], f"{p}.qkvT", perm=[2, 0, 3, 1, 4])
        q, k, v = (node("Gather", [qkv, const(f"{p}.i{j}", j)], f"{p}.{n}", axis=0) for j, n in enumerate("qkv"))
        scores = node("Mul", [node("MatMul", [q, node("Transpose", [k], f"{p}.kT", perm=[0, 1, 3, 2])], f"{p}.qk"),
                              scale], f"{p}.scores")
        attn = node("MatMul", [node("Softmax", [scores], f"{p}.probs", axis=-1), v], f"{p}.ctx")
        attn = node("Reshape", [node("Transpose", [attn], f"{p}.ctxT", perm=[0, 2, 1, 3]), merged_shape], f"{p}.ctx2")
        x = node("Add", [x, linear(attn, f"{p}.proj", width, width)], f"{p}.res1")
        hidden = linear(layer_norm(x, f"{p}.ln2"), f"{p}.fc1", width, 4 * width)
        gelu = node("Mul", [hidden, node("Sigmoid", [node("Mul", [hidden, alpha], f"{p}.ax")], f"{p}.sig")], f"{p}.act")
        x = node("Add", [x, linear(gelu, f"{p}.fc2", 4 * width, width)], f"{p}.res2")
    pooled = layer_norm(node("Gather", [x, const("first", 0)], "pooled", axis=1), "post")
    node("MatMul", [pooled, weight("proj", width, dim)], "image_embeds")
    graph = helper.make_graph(
        nodes, "vit_b32_random",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "image_encoder.onnx"))
    (path / "model.json").write_text(json.dumps({"name": "random-vit-b32"}))


# --- measurements ----------------------------------------------------------------------------


def photos(n: int) -> list[bytes]:
    """JPEGs of 1000x750, smooth plus noise, about what a product catalogue embeds."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:750, 0:1000]
    out = []
    for i in range(n):
        base = np.stack([127 + 100 * np.sin(x / (40 + 9 * c + i) + y / (53 + i)) for c in range(3)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def rate(n: int, run: Callable[[], object], repeats: int) -> list[float]:
    """Images per second of each of ``repeats`` passes after a warm-up (the spread shows how much
    the machine's other load moved the numbers)."""
    run()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - started))
    return rates


def measure(model: ClipModel, images: list[bytes], batch: int, repeats: int) -> dict[str, list[float]]:
    pixels = np.stack([preprocess_bytes(d, max_pixels=LIMIT) for d in images])
    n = len(images)

    def batched() -> None:
        for i in range(0, n, batch):
            model.embed_images(pixels[i : i + batch])

    def one_by_one() -> None:
        for i in range(n):
            model.embed_images(pixels[i : i + 1])

    def decode() -> None:
        for d in images:
            preprocess_bytes(d, max_pixels=LIMIT)

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        listing = []
        for i, data in enumerate(images):
            key = f"documents/bench/images/{i:064x}.jpeg"
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            listing.append({"sha256": f"{i:064x}", "s3_key": key})
        s3.put_object(Bucket=BUCKET, Key="images.json", Body=json.dumps(listing).encode())

        def stage() -> None:
            embed_images(s3, bucket=BUCKET, images_key="images.json", out_prefix="out/", model=model,
                         batch_size=batch, max_image_pixels=LIMIT)

        end_to_end = rate(n, stage, repeats)
    return {"batched": rate(n, batched, repeats), "one_by_one": rate(n, one_by_one, repeats),
            "decode": rate(n, decode, repeats), "end_to_end": end_to_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    images = photos(args.images)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        test_dir = ensure_test_model(Path(tmp) / "test")
        results["test"] = measure(ClipModel.load(test_dir), images, args.batch, args.repeats)
        started = time.perf_counter()
        vit_b32(Path(tmp) / "vit")
        built = time.perf_counter() - started
        results["vit-b32"] = measure(ClipModel.load(Path(tmp) / "vit"), images, args.batch, args.repeats)

    print(f"\n{args.images} JPEGs of 1000x750, batch {args.batch}, {os.cpu_count()} CPUs, ONNX Runtime CPU, "
          f"median of {args.repeats} passes (min-max); random ViT-B/32 built in {built:.1f} s\n")
    print(f"{'images/s':<36}{'test':>24}{'vit-b32':>24}")
    rows = [
        ("inference, batched", "batched"),
        ("inference, one image per call", "one_by_one"),
        ("decode + preprocess, one thread", "decode"),
        ("Embed stage end to end (moto S3)", "end_to_end"),
    ]
    for label, key in rows:
        cells = "".join(f"{_cell(results[m][key]):>24}" for m in ("test", "vit-b32"))
        print(f"{label:<36}{cells}")
    print()
    for label, num, den in [("batched / one per call", "batched", "one_by_one"),
                            ("end to end / inference alone", "end_to_end", "batched")]:
        ratios = "".join(f"{median(results[m][num]) / median(results[m][den]):>24.2f}" for m in ("test", "vit-b32"))
        print(f"{label:<36}{ratios}")


def _cell(rates: list[float]) -> str:
    return f"{median(rates):.1f} ({min(rates):.0f}-{max(rates):.0f})"

if __name__ == "__main__":
    main()
