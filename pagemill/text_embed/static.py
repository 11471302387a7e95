"""WordLlama's static token embeddings (256 dims), read straight from the files its wheel ships.

A text is the mean of its tokens' vectors, normalised: no network, no model runtime, about 16 MB
of weights and thousands of chunks a second on one core (bench/bench_retrieval.py). The package's
own loader looks for the tokenizer under a folder name the wheel does not use and then tries the
Hugging Face hub, so pagemill opens the two files itself; ``import wordllama`` is never needed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pagemill.errors import InternalError
from pagemill.text_embed.embedder import unit_rows

MODEL = "wordllama-l2-supercat-256"
_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


class StaticEmbedder:
    model = MODEL

    def __init__(self, package_dir: Path | None = None) -> None:
        from safetensors.numpy import load_file

        root = package_dir or _package_dir("wordllama")
        self._table = load_file(str(root / _WEIGHTS))["embedding.weight"].astype(np.float32)
        self.dim = int(self._table.shape[1])
        self._tokenizer = load_tokenizer(root)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self._tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            if encoding.ids:
                out[row] = self._table[encoding.ids].mean(axis=0)
        return unit_rows(out)

    def query(self, text: str) -> np.ndarray:
        return self.passages([text])[0]


def load_tokenizer(package_dir: Path | None = None) -> Any:
    """WordLlama's tokenizer (Llama 2's 32k BPE) from its wheel, whole texts (no padding, no truncation)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str((package_dir or _package_dir("wordllama")) / _TOKENIZER))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InternalError(f"the {name} package is not installed (pip install {name})")
    return Path(next(iter(spec.submodule_search_locations)))
