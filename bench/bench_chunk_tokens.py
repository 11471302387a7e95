"""Tokens per chunk in the corpus, for the embedding cost per million chunks (bench/scale_model.py).

The corpus's PDFs with a text layer are extracted and chunked as the pipeline does (1,500-character
chunks); each chunk's tokens are counted with a real BPE tokenizer (WordLlama's, Llama 2's 32k
vocabulary, in its wheel: Titan's own tokenizer is not published, and a 32k BPE is of its kind) and
by pagemill's budget estimate (4 characters a token). Titan bills input tokens, so the measured
mean is what a million chunks cost there.

    python -m bench.bench_chunk_tokens [--corpus ../shared/corpus]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import pymupdf

from bench.inputs import record
from pagemill.captions.client import estimate_text_tokens
from pagemill.pdf.pages import extract_pages
from pagemill.settings import Settings
from pagemill.text_embed.static import load_tokenizer

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# Documents whose text layer is their content (scans, broken and encrypted files are other benches').
CATEGORIES = {"text", "multi-column", "tables", "long", "non-latin", "forms"}


def chunk_texts(path: Path) -> list[str]:
    doc = pymupdf.open(path)
    try:
        batch = extract_pages(doc, document_id="0" * 32, batch_no=0, first_page=1, last_page=doc.page_count,
                              settings=Settings(), store_image=lambda sha, ext, data: f"images/{sha}.{ext}")
    finally:
        doc.close()
    return [c.text for c in batch.chunks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    with open(args.corpus / "MANIFEST.tsv", encoding="utf-8") as f:
        files = [row["file"] for row in csv.DictReader(f, delimiter="\t")
                 if row["category"] in CATEGORIES and not row["pages"].startswith("error")]
    tokenizer = load_tokenizer()
    chunks: list[str] = []
    print(f"{'document':<44}{'chunks':>8}{'chars/chunk':>13}{'BPE tokens/chunk':>18}")
    began = time.perf_counter()
    for name in files:
        texts = [t for t in chunk_texts(args.corpus / name) if t.strip()]
        if not texts:
            continue
        tokens = [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
        print(f"{name:<44}{len(texts):>8}{statistics.mean(map(len, texts)):>13,.0f}{statistics.mean(tokens):>18,.0f}")
        chunks += texts
    tokens = [len(e.ids) for e in tokenizer.encode_batch(chunks, add_special_tokens=False)]
    chars = statistics.mean(map(len, chunks))
    bpe = statistics.mean(tokens)
    estimate = statistics.mean(estimate_text_tokens(t) for t in chunks)
    print(f"\n{len(chunks):,} chunks of {len(files)} documents in {time.perf_counter() - began:.0f} s: "
          f"{chars:,.0f} characters, {bpe:,.0f} BPE tokens (p95 {sorted(tokens)[int(0.95 * len(tokens))]:,}), "
          f"{estimate:,.0f} estimated (4 characters a token) per chunk")
    record("chunk_tokens", {"chunks": len(chunks), "documents": len(files), "chars_per_chunk": chars,
                            "bpe_tokens_per_chunk": bpe, "estimated_tokens_per_chunk": estimate})


if __name__ == "__main__":
    main()
