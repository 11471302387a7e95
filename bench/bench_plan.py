"""Plan's PDF work per document: ``open_pdf`` (validation, every page loaded), ``inspect_pdf``
(image references and the pages to OCR) and ``plan_batches``, in CPU seconds, scaled to 100
pages, on the corpus's long and image-heavy files and on generated 100-page documents (a mixed
catalog, and one with a photo on 90 of them). Issue 16's goal: under 0.5 s for 100 pages. The
stage's S3 download, database registration and manifest upload are not in these figures.

    python -m bench.bench_plan [--corpus DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.bench_extract import CORPUS, SETTINGS
from bench.inputs import machine
from pagemill.pdf.document import inspect_pdf, open_pdf, plan_batches
from pagemill_tools.sample import make_mixed

CORPUS_FILES = ("sicp-785p.pdf", "mueller-report-vol-2.pdf", "pdkids.pdf", "gao-23-106826-2p.pdf",
                "WARN-Report-for-7-1-2015-to-03-25-2016.pdf")


def plan_cpu(path: Path) -> tuple[int, dict[str, float]]:
    """(pages, CPU seconds of each step)."""
    started = time.process_time()
    doc = open_pdf(path, SETTINGS)
    opened = time.process_time()
    info = inspect_pdf(doc)
    inspected = time.process_time()
    plan_batches(info.images_per_page, SETTINGS, frozenset(info.ocr_pages))
    done = time.process_time()
    doc.close()
    return info.page_count, {"open": opened - started, "inspect": inspected - opened, "batches": done - inspected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {machine()['loadavg']}; best of {args.repeat}")
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as tmp:
        mixed, photos = Path(tmp) / "generated-mixed-100.pdf", Path(tmp) / "generated-photos-90-of-100.pdf"
        make_mixed(mixed, pages=100, images=40)
        make_mixed(photos, pages=100, images=90)
        paths = [mixed, photos] + [args.corpus / name for name in CORPUS_FILES if (args.corpus / name).exists()]
        print(f"{'file':<44}{'pages':>6}{'open s':>9}{'inspect s':>11}{'batches s':>11}{'total s':>9}{'per 100 p':>11}")
        for path in paths:
            runs = [plan_cpu(path) for _ in range(args.repeat)]
            pages = runs[0][0]
            best = min((steps for _, steps in runs), key=lambda steps: sum(steps.values()))
            total = sum(best.values())
            print(f"{path.name[:43]:<44}{pages:>6}{best['open']:>9.3f}{best['inspect']:>11.3f}{best['batches']:>11.4f}"
                  f"{total:>9.3f}{100 * total / pages:>11.3f}")


if __name__ == "__main__":
    main()
