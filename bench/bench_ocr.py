"""OCR of scanned pages (pagemill.pdf.ocr, RapidOCR on one onnxruntime thread): character error
rate, word recall and pages/s per core on generated scans of known text (pagemill_tools.scans:
150/200/300 dpi, JPEG noise, four orientations, two columns), and what the corpus's scanned files
give (words, confidence, orientation found, CPU seconds). Speed is CPU time of this process
(render + OCR on one thread), so a busy shared machine does not distort it.

Each generated page is rendered by ``render_for_ocr`` at the deployed ocr_dpi, as ExtractBatch
does; the scan's own dpi is the resolution of the image the "scanner" produced.

    python -m bench.bench_ocr [--corpus DIR] [--pages 2]   (--pages 0: the corpus only)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pymupdf

from bench.bench_extract import CORPUS, SETTINGS
from bench.inputs import machine
from pagemill.errors import InputError
from pagemill.pdf.completeness import word_loss
from pagemill.pdf.document import open_pdf
from pagemill.pdf.ocr import (
    largest_image_pixels,
    needs_ocr,
    ocr_image,
    rapidocr_engine,
    render_for_ocr,
)
from pagemill_tools.scans import add_scan, known_text

CASES: dict[str, dict[str, object]] = {
    "150 dpi": {"dpi": 150},
    "200 dpi": {"dpi": 200},
    "300 dpi": {"dpi": 300},
    "200 dpi JPEG q25": {"dpi": 200, "jpeg_quality": 25},
    "150 dpi JPEG q15": {"dpi": 150, "jpeg_quality": 15},
    "200 dpi 90°": {"dpi": 200, "rotation": 90},
    "200 dpi 180°": {"dpi": 200, "rotation": 180},
    "200 dpi 270°": {"dpi": 200, "rotation": 270},
    "200 dpi 2 columns": {"dpi": 200, "columns": 2},
    "200 dpi 2 col 9pt": {"dpi": 200, "columns": 2, "fontsize": 9},
}


def cer(truth: str, text: str) -> float:
    """Character error rate: edit distance over the truth's length, whitespace squashed."""
    a, b = " ".join(truth.split()), " ".join(text.split())
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(len(a), 1)


def generated(pages: int) -> None:
    engine = rapidocr_engine(threads=1)
    print(f"\ngenerated scans, {pages} pages each, 1 onnxruntime thread; rendered at {SETTINGS.ocr_dpi} dpi")
    print(f"{'case':<20}{'CER':>8}{'word recall':>13}{'confidence':>12}{'pages/s/core':>14}  rotation found")
    for name, options in CASES.items():
        errors, recalls, confidences, rotations, seconds = [], [], [], [], 0.0
        for seed in range(pages):
            truth = known_text(seed, words=200)
            doc = pymupdf.open()
            add_scan(doc, truth, **options)  # type: ignore[arg-type]
            started = time.process_time()
            result = ocr_image(engine, render_for_ocr(doc.load_page(0), SETTINGS))
            seconds += time.process_time() - started
            errors.append(cer(truth, result.markdown))
            recalls.append(1 - word_loss(truth, result.markdown).fraction)
            confidences.append(result.confidence)
            rotations.append(result.rotation)
        print(f"{name:<20}{sum(errors) / pages:>8.3f}{sum(recalls) / pages:>13.3f}{sum(confidences) / pages:>12.3f}"
              f"{pages / seconds:>14.2f}  {sorted(set(rotations))}")


def corpus(folder: Path) -> None:
    engine = rapidocr_engine(threads=1)
    print(f"\ncorpus files with pages to OCR ({folder})")
    print(f"{'file':<32}{'page':>5}{'words':>7}{'confidence':>12}{'rotation':>10}{'cpu s':>9}")
    for path in sorted(folder.glob("*.pdf")):
        try:
            doc = open_pdf(path, SETTINGS)
        except InputError:
            continue
        with doc:
            for page in doc:
                if not needs_ocr(page):
                    continue
                if largest_image_pixels(page) > SETTINGS.max_image_pixels:
                    print(f"{path.name:<32}{page.number + 1:>5}  refused: image over max_image_pixels")
                    continue
                started = time.process_time()
                result = ocr_image(engine, render_for_ocr(page, SETTINGS))
                took = time.process_time() - started
                count = len(result.markdown.split())
                print(f"{path.name:<32}{page.number + 1:>5}{count:>7}{result.confidence:>12.3f}{result.rotation:>10}"
                      f"{took:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--pages", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start: {machine()['loadavg']}")
    rapidocr_engine(threads=1)  # model loading is not a page's time
    if args.pages:  # --pages 0: the corpus only
        generated(args.pages)
    if args.corpus.is_dir():
        corpus(args.corpus)
    print(f"load average at end: {machine()['loadavg']}")


if __name__ == "__main__":
    main()
