"""Peak RSS of an extract worker for one 25-page batch as the document grows.

For generated mixed catalogs (``pagemill_tools.sample.make_mixed``: 40% photo pages, a ruled table
every 10th page) of 50, 200, 1,000 and 2,000 pages, a fresh Python process does what one
ExtractBatch invocation does (open the PDF, ``extract_pages`` for the batch with the deployed
settings; images go to a sink that drops them, as S3 would take them away) for pages 1-25
and for the 25 pages in the middle, and reports its peak RSS (``VmHWM``), its RSS after
the imports, and after opening the document. With ``--ocr`` each measured batch also holds
three generated scans (``pagemill_tools.scans``: known text at 200 dpi, no text layer), which
the worker reads with RapidOCR as ExtractBatch does.

    python -m bench.bench_memory [--sizes 50,200,1000,2000] [--ocr]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.inputs import machine, peak_rss_bytes

ROOT = Path(__file__).resolve().parents[1]
BATCH = 25
SCANS_AT = (3, 11, 19)  # pages of a measured batch (0-based within it) that are scans with --ocr


def worker(path: str, first: int, last: int) -> None:
    """One ExtractBatch's work in this (fresh) process; prints one JSON line."""
    rss = psutil.Process().memory_info
    import pymupdf

    from pagemill.pdf.pages import extract_pages
    from pagemill.settings import Settings

    imported = rss().rss
    started = time.perf_counter()
    doc = pymupdf.open(path)
    opened = rss().rss
    extract_pages(
        doc, document_id="bench", batch_no=0, first_page=first, last_page=last, settings=Settings(),
        store_image=lambda sha256, ext, data: f"{sha256}.{ext}",
    )
    doc.close()
    seconds = time.perf_counter() - started
    # The worker's own peak: it was started by a parent that has just generated a 2,000-page PDF.
    print(json.dumps({"imported": imported, "opened": opened, "peak": peak_rss_bytes(), "seconds": seconds}))


def measure(path: Path, first: int, last: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_memory", "--worker", str(path), str(first), str(last)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def add_scans(path: Path, indexes: list[int]) -> None:
    """Replace the pages at these 0-based indexes by scans of known text (page count unchanged)."""
    import pymupdf

    from pagemill_tools.scans import add_scan, known_text

    doc = pymupdf.open(path)
    scans = pymupdf.open()
    for n, index in enumerate(sorted(indexes, reverse=True)):
        add_scan(scans, known_text(n), dpi=200)
        doc.delete_page(index)
        doc.insert_pdf(scans, from_page=n, to_page=n, start_at=index)
    doc.save(path.with_suffix(".tmp"), garbage=1)
    doc.close()
    path.with_suffix(".tmp").replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,200,1000,2000")
    parser.add_argument("--ocr", action="store_true", help="three scans in each measured batch")
    parser.add_argument("--worker", nargs=3, metavar=("PDF", "FIRST", "LAST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    from pagemill_tools.sample import make_mixed

    mib = 1024 * 1024
    print(f"load average: {machine()['loadavg']}; scans in each batch: {len(SCANS_AT) if args.ocr else 0}")
    print(f"{'pages':>6}{'MiB file':>10}{'batch':>12}{'imported':>10}{'opened':>9}{'peak':>9}{'over import':>13}{'seconds':>9}")
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as tmp:
        for pages in (int(n) for n in args.sizes.split(",")):
            path = Path(tmp) / f"mixed-{pages}.pdf"
            make_mixed(path, pages=pages, images=pages * 2 // 5)
            middle = (pages // 2 // BATCH) * BATCH + 1
            if args.ocr:
                add_scans(path, [first - 1 + at for first in (1, middle) for at in SCANS_AT])
            for first in (1, middle):
                last = min(first + BATCH - 1, pages)
                m = measure(path, first, last)
                print(
                    f"{pages:>6}{path.stat().st_size / mib:>10.1f}{f'{first}-{last}':>12}{m['imported'] / mib:>10.0f}"
                    f"{m['opened'] / mib:>9.0f}{m['peak'] / mib:>9.0f}{(m['peak'] - m['imported']) / mib:>13.0f}"
                    f"{m['seconds']:>9.2f}"
                )


if __name__ == "__main__":
    main()
