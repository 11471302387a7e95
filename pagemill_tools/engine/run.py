"""`pagemill run`: files in, one execution each through the local engine, results out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pagemill.db.connect import connect
from pagemill_tools.engine.engine import DocumentRun, EngineOptions, LocalEngine
from pagemill_tools.engine.interrupt import StopRequest
from pagemill_tools.export import export_document


@dataclass
class RunResult:
    document_id: str
    source: str
    status: str  # succeeded | partial | failed | cancelled | running (never expected) | missing
    pages: int
    chunks: int
    images: int
    error: str | None
    seconds: float
    execution_arn: str
    duplicate: bool = False
    # What a partial document is missing, and notes (pagemill.records.DocumentWarning as dicts).
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # documents.timings: seconds per state (Plan, ExtractPages, ...) and the write's own figures.
    timings: dict[str, Any] = field(default_factory=dict)
    out: str | None = None

    def public(self) -> dict[str, Any]:
        """The `--json` shape (duplicate only when true, warnings only when any)."""
        d = asdict(self)
        d.pop("out")
        if not self.duplicate:
            d.pop("duplicate")
        if not self.warnings:
            d.pop("warnings")
        return d


def expand_inputs(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a folder means every PDF in it (sorted, not recursive)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".pdf"))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def run_documents(
    files: list[Path],
    options: EngineOptions,
    *,
    out_dir: Path | None,
    on_progress: Callable[[DocumentRun], None] | None = None,
    on_submitted: Callable[[list[DocumentRun]], None] | None = None,
    stop: StopRequest | None = None,
) -> list[RunResult]:
    """``stop``: a Ctrl-C/SIGTERM request (pagemill_tools.engine.interrupt); an interrupted run
    returns its results at once, without exporting them."""
    with LocalEngine(options) as engine:
        runs = [engine.submit(path) for path in files]
        if on_submitted:
            on_submitted(runs)
        engine.wait(runs, on_progress=on_progress, stop=stop)
        with connect(options.database_url) as conn:
            results = [_result(engine, conn, run) for run in runs]
            if out_dir is not None and not (stop is not None and stop.reason):
                for result in results:
                    if result.status not in ("succeeded", "partial"):
                        continue
                    if result.duplicate:
                        # Its images lived in an earlier run's bucket; that run exported them.
                        earlier = out_dir / result.document_id
                        result.out = str(earlier) if earlier.is_dir() else None
                    else:
                        result.out = str(
                            export_document(conn, engine.s3, engine.deployment.bucket_name, result.document_id, out_dir)
                        )
    return results


def _result(engine: LocalEngine, conn: Any, run: DocumentRun) -> RunResult:
    visited = engine.visited_states(run.execution_arn)
    with conn.cursor() as cur:
        cur.execute("select status, error, warnings, timings from documents where id = %s", (run.document_id,))
        row = cur.fetchone()
        cur.execute(
            "select (select count(*) from pages where document_id = %(d)s),"
            " (select count(*) from chunks where document_id = %(d)s),"
            " (select count(*) from images where document_id = %(d)s)",
            {"d": run.document_id},
        )
        pages, chunks, images = cur.fetchone()
    status, error, warnings, timings = row if row else (
        "missing", f"execution ended {run.status} without a document row", [], {}
    )
    if run.status in ("FAILED", "TIMED_OUT") and status == "succeeded" and "AlreadyProcessed" not in visited:
        # The content succeeded before, but this execution failed (e.g. RecordFailure refused to
        # overwrite good data): report this run's outcome, not the stored one. (A stopped one
        # whose Write had committed did succeed.)
        status, error = "failed", f"execution ended {run.status}"
    return RunResult(
        document_id=run.document_id,
        source=str(run.path),
        status=status,
        pages=pages,
        chunks=chunks,
        images=images,
        error=error,
        seconds=round(run.seconds, 2),
        execution_arn=run.execution_arn,
        duplicate="AlreadyProcessed" in visited,
        warnings=warnings,
        timings=timings,
    )
