"""CLIP's text tokenizer over a Hugging Face ``tokenizer.json`` (byte-level BPE).

Output matches HF's CLIPTokenizer for openai/clip-vit-base-patch32 with
``padding="max_length", truncation=True, max_length=77``: ``<|startoftext|>``, at most 75 text
tokens, ``<|endoftext|>``, then ``<|endoftext|>`` again as padding (that checkpoint's pad token;
OpenAI's ``clip.tokenize`` pads with 0). The text model pools at the first end token and attends
causally, so what follows it never changes the embedding."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

CONTEXT_LENGTH = 77
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
_WHITESPACE = re.compile(r"\s+")


class ClipTokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        start, end = tokenizer.token_to_id(START_TOKEN), tokenizer.token_to_id(END_TOKEN)
        if start is None or end is None:
            raise ValueError(f"tokenizer has no {START_TOKEN} / {END_TOKEN}: not a CLIP tokenizer")
        # Truncation and padding are done here, so whatever tokenizer.json configures is ignored.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.start_id: int = start
        self.end_id: int = end
        self.pad_id: int = end

    @classmethod
    def from_file(cls, path: Path) -> ClipTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts → int64 [len(texts), 77]."""
        ids = np.full((len(texts), CONTEXT_LENGTH), self.pad_id, dtype=np.int64)
        encodings = self._tokenizer.encode_batch([clean_text(t) for t in texts], add_special_tokens=False)
        for row, encoding in zip(ids, encodings, strict=True):
            tokens = [self.start_id, *encoding.ids[: CONTEXT_LENGTH - 2], self.end_id]
            row[: len(tokens)] = tokens
        return ids


def clean_text(text: str) -> str:
    """OpenAI CLIP's basic_clean + whitespace_clean + lower, less ftfy's mojibake repair."""
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFC", text)
    return _WHITESPACE.sub(" ", text).strip().lower()
