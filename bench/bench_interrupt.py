"""How fast a `pagemill run` stops: seconds from the signal to the command's exit, and until its
last worker process is gone, for Ctrl-C (SIGINT to the process group, as a terminal sends it),
SIGTERM and SIGKILL (to the engine process alone), on a generated 300-page PDF mid-extraction.

    python -m bench.bench_interrupt [--repeat 3]

Uses the embedded PostgreSQL under $PAGEMILL_HOME (default a folder in /tmp)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

from pagemill.db.migrate import migrate
from pagemill.pipeline.context import document_id_for, file_sha256
from pagemill_tools.embedded_db import start
from tests.e2e.test_operate import text_pdf

CASES = (("Ctrl-C", signal.SIGINT, True), ("SIGTERM", signal.SIGTERM, False), ("SIGKILL", signal.SIGKILL, False))


def measure(pdf: Path, home: Path, url: str, signum: int, group: bool) -> tuple[int, float, float]:
    document_id = document_id_for(file_sha256(pdf))
    process = subprocess.Popen(
        [sys.executable, "-m", "pagemill_tools", "run", str(pdf), "--out", str(home / "out"), "--database-url", url],
        env={**os.environ, "PAGEMILL_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with psycopg.connect(url, autocommit=True) as db:
        while not db.execute("select 1 from local_runs where document_id = %s and pid = %s and pages_done > 0",
                             (document_id, process.pid)).fetchone():
            time.sleep(0.05)
    workers = psutil.Process(process.pid).children(recursive=True)
    sent = time.monotonic()
    (os.killpg if group else os.kill)(process.pid, signum)
    code = process.wait(timeout=120)
    exited = time.monotonic() - sent
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        time.sleep(0.02)
    return code, exited, time.monotonic() - sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(os.environ.get("PAGEMILL_HOME") or tempfile.mkdtemp(prefix="pagemill-bench-"))
    url = start(home)
    migrate(url)  # the first run would, but the watch below reads local_runs before it starts
    print(f"{'signal':8} {'exit code':>9} {'to exit (s)':>12} {'workers gone (s)':>17}")
    for n in range(args.repeat):
        for name, signum, group in CASES:
            pdf = text_pdf(home / f"{name}-{n}.pdf", pages=300, words=f"{name} {n} {time.time()}")
            code, exited, gone = measure(pdf, home, url, signum, group)
            print(f"{name:8} {code:>9} {exited:>12.2f} {gone:>17.2f}")


if __name__ == "__main__":
    main()
