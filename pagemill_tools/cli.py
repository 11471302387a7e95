"""The `pagemill` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from pagemill.operate import (
        CancelOutcome,
        DocumentStatus,
        RedriveOutcome,
        StatusList,
    )
    from pagemill.settings import Settings

app = typer.Typer(help="pagemill: PDFs to pages, chunks and images in PostgreSQL.", no_args_is_help=True)
err = Console(stderr=True)
# Piped output (CI logs, `| tee`) would otherwise be squeezed to 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=160)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DATABASE_URL", help="PostgreSQL URL (default: the embedded server)."),
]

WorkersOption = Annotated[int, typer.Option(help="Lambda worker processes.")]
NoCaptionsOption = Annotated[
    bool, typer.Option("--no-captions", help="Do not caption images or read documents with the model.")
]


def _home() -> Path:
    return Path(os.environ.get("PAGEMILL_HOME", Path.home() / ".pagemill")).expanduser()


def _database_url(explicit: str | None) -> str:
    from pagemill.db.migrate import migrate
    from pagemill_tools.embedded_db import resolve_url

    url = resolve_url(_home(), explicit)
    migrate(url)
    return url


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="PDF files, or folders of PDFs.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input.")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to export results.")] = Path("pagemill-out"),
    database_url: DatabaseUrlOption = None,
    workers: WorkersOption = os.cpu_count() or 2,
    no_captions: NoCaptionsOption = False,
) -> None:
    """Run each PDF through the full state machine, locally.

    Exit code: 0 every document succeeded; 3 none failed but some are partial (finished, something
    missing: see their warnings); 1 any failed or was cancelled; 130 interrupted (Ctrl-C, SIGTERM:
    its documents are cancelled; a second Ctrl-C exits at once); 2 no such input, or a PAGEMILL_
    setting that cannot be used."""
    from pagemill_tools.startup import import_engine

    _settings()
    import_engine()
    from pagemill_tools.engine.run import expand_inputs

    try:
        files = expand_inputs(paths)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if not files:
        err.print("[yellow]no PDF files found in the given paths[/yellow]")
        raise typer.Exit(2)
    raise typer.Exit(_run_files(files, as_json=as_json, out_dir=out_dir, url=_database_url(database_url),
                                workers=workers, no_captions=no_captions))


def _settings() -> Settings:
    """The PAGEMILL_ settings, read once per command before anything starts; one that cannot be
    used stops the command, naming it (the synthesis, or a function on its first document, would
    fail on it later and less clearly)."""
    from pagemill.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _run_files(files: list[Path], *, as_json: bool, out_dir: Path, url: str, workers: int, no_captions: bool) -> int:
    """Run files through the local engine with progress bars and print the results; the exit
    code as `pagemill run --help` says."""
    from pagemill_tools import exit_codes
    from pagemill_tools.engine.interrupt import stop_on_signals

    try:
        with stop_on_signals() as stop:
            results = _run_with_progress(files, as_json=as_json, out_dir=out_dir, url=url, workers=workers,
                                         no_captions=no_captions, stop=stop)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        _exit_now(exit_codes.INTERRUPTED)
    if stop.reason:
        err.print(f"[yellow]{stop.reason}: documents still running were cancelled; "
                  "`pagemill redrive DOC` runs one again[/yellow]", highlight=False)
        _exit_now(exit_codes.INTERRUPTED)
    return exit_codes.for_statuses(r.status for r in results)


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown: the engine, its workers and the database work are
    already closed, and tearing down moto's backends and the native libraries takes seconds on a
    busy machine, which a person who pressed Ctrl-C should not wait for."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_with_progress(
    files: list[Path], *, as_json: bool, out_dir: Path, url: str, workers: int, no_captions: bool, stop: Any
) -> list:
    from pagemill_tools.engine.engine import EngineOptions, caption_environment
    from pagemill_tools.engine.run import run_documents

    options = EngineOptions(home=_home(), database_url=url, workers=workers, no_captions=no_captions)
    _, caption_note = caption_environment(os.environ, no_captions=no_captions)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("pages"),
        TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=err, transient=as_json,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def submitted(runs: list) -> None:
            for r in runs:
                tasks[r.execution_arn] = progress.add_task(r.path.name[:40], total=None, state="starting")

        def update(r) -> None:
            progress.update(
                tasks[r.execution_arn], total=r.page_count, completed=r.pages_done, state=r.status.lower()
            )

        results = run_documents(files, options, out_dir=out_dir, on_progress=update, on_submitted=submitted, stop=stop)
    if as_json:
        out.print_json(json.dumps([r.public() for r in results]))
    else:
        _summary(results, url, out_dir, caption_note)
    return results


def _summary(results: list, url: str, out_dir: Path, caption_note: str | None) -> None:
    from pagemill.pipeline.timings import in_pipeline_order

    # Seconds per state, as documents.timings records them, in the pipeline's order.
    by_doc = [r.timings.get("states", {}) for r in results]
    states = in_pipeline_order(s for seconds in by_doc for s in seconds)
    table = Table(title="pagemill run")
    table.add_column("document", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("pages", "chunks", "images", "seconds", *(f"{s} s" for s in states)):
        table.add_column(column, justify="right")
    for r, seconds in zip(results, by_doc):
        status = _styled(r.status)
        if r.duplicate:
            status += " (duplicate)"
        table.add_row(
            Path(r.source).name, status, str(r.pages), str(r.chunks), str(r.images), f"{r.seconds:.1f}",
            *(f"{seconds[s]:.1f}" if s in seconds else "" for s in states),
        )
    out.print(table)
    for r in results:
        name = Path(r.source).name
        if r.error:
            out.print(f"[red]{name}[/red]: {r.error}")
        elif r.out:
            out.print(f"{name}: {r.out}/", highlight=False)
        for warning in r.warnings:
            out.print(f"[magenta]{name}[/magenta]: {_warning_line(warning)}")
    if caption_note:
        out.print(caption_note, highlight=False)
    out.print(f'database: psql "{url}"', highlight=False, soft_wrap=True)


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Find images like this one instead.")] = None,
    limit: Annotated[int, typer.Option(help="How many hits.")] = 10,
    mode: Annotated[str, typer.Option(help="hybrid, keyword or vector.")] = "hybrid",
    document: Annotated[str | None, typer.Option("--document", help="Only this document id.")] = None,
    pages: Annotated[str | None, typer.Option("--pages", help="Only pages A-B (or A).")] = None,
    doc_type: Annotated[str | None, typer.Option("--doc-type", help="Only documents of this type.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where `run` exported images.")] = Path("pagemill-out"),
    database_url: DatabaseUrlOption = None,
) -> None:
    """Find chunks and images: full text and vectors fused (or --image FILE: images like it)."""
    from pagemill.clip.preprocess import preprocess_bytes
    from pagemill.db.connect import connect
    from pagemill.errors import InputError
    from pagemill.records import dump
    from pagemill.search.hybrid import SearchFilters
    from pagemill.search.hybrid import search as hybrid_search
    from pagemill.search.images import nearest_images
    from pagemill_tools.export import image_path
    from pagemill_tools.searching import TEST_MODEL_NOTE, clip_model, is_test_model, text_embedder

    if (text is None) == (image is None):
        err.print("[red]give either a text or --image FILE[/red]")
        raise typer.Exit(2)
    settings = _settings()
    model = clip_model(settings, _home())
    if is_test_model(model):
        err.print(f"[yellow]note:[/yellow] {TEST_MODEL_NOTE}", highlight=False)
    with connect(_database_url(database_url)) as conn:
        if image is not None:
            query = model.embed_images(preprocess_bytes(image.read_bytes(), max_pixels=settings.max_image_pixels)[None])[0]
            hits = [{**dump(h), "kind": "image"} for h in nearest_images(conn, query, limit=limit)]
        else:
            first, last = _page_range(pages)
            try:
                found = hybrid_search(
                    conn, text, mode=mode, limit=limit, embedder=text_embedder(settings),
                    image_query=model.embed_texts([text])[0] if mode != "keyword" else None,
                    filters=SearchFilters(document_id=document, first_page=first, last_page=last, doc_type=doc_type),
                )
            except InputError as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from exc
            hits = [h.to_dict() for h in found]
    for hit in hits:
        if hit["kind"] == "image":
            hit["out"] = str(image_path(out_dir, hit["document_id"], hit["image_no"], hit["page_no"],
                                        hit["s3_key"].rsplit(".", 1)[-1]))
    if as_json:
        out.print_json(json.dumps(hits))
        return
    table = Table(title=f"{mode} search: {text!r}" if text else f"images like {image}")
    for column in ("score", "kind", "document", "pages", "text / caption", "open"):
        table.add_column(column)
    for h in hits:
        chunk = h["kind"] == "chunk"
        where = f"{h['first_page']}-{h['last_page']}" if chunk and h["first_page"] != h["last_page"] else str(
            h["first_page"] if chunk else h["page_no"])
        table.add_row(f"{h['score']:.4f}", h["kind"], h["document_id"][:12], where,
                      (h["text"] if chunk else h.get("caption")) or "", "" if chunk else h["out"])
    out.print(table)


def _page_range(pages: str | None) -> tuple[int | None, int | None]:
    if not pages:
        return None, None
    first, _, last = pages.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        err.print(f"[red]--pages wants A-B or A, not {pages!r}[/red]")
        raise typer.Exit(2) from None


@app.command()
def reembed(
    batch_size: Annotated[int, typer.Option(help="Chunks embedded per transaction.")] = 256,
    database_url: DatabaseUrlOption = None,
    aws: AwsOption = False,
    stack_name: StackOption = None,
    region: RegionOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="With --aws: follow the run until it ends.")] = True,
) -> None:
    """Give every chunk a vector of the configured text embedder (PAGEMILL_TEXT_EMBEDDER; on AWS the
    stack's text_embedder), replacing another model's; then rebuild that model's vector index. With
    --aws: the stack's reembed state machine does it inside the VPC (an execution already running is
    followed, not doubled)."""
    if aws:
        _operate(lambda: _reembed_on_aws(_Aws(stack_name, region, None), wait))
    from pagemill.db.chunk_vectors import models_stored
    from pagemill.db.chunk_vectors import reembed as run_reembed
    from pagemill.db.connect import connect
    from pagemill.text_embed.embedder import EmbeddingUnavailable
    from pagemill_tools.searching import text_embedder

    embedder = text_embedder(_settings())
    if embedder is None:
        err.print("[red]chunk embeddings are off (PAGEMILL_TEXT_EMBEDDER=off): nothing to embed with[/red]")
        raise typer.Exit(2)
    with connect(_database_url(database_url)) as conn, Progress(
        TextColumn("re-embedding chunks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
    ) as progress:
        task = progress.add_task("chunks", total=None)
        try:
            counts = run_reembed(conn, embedder, batch_size=batch_size,
                                 on_progress=lambda done, total: progress.update(task, completed=done, total=total))
        except EmbeddingUnavailable as exc:
            err.print(f"[red]the embedding service gave no vectors ({exc.reason}): the chunks done so far are "
                      "kept; run `pagemill reembed` again to go on[/red]", highlight=False)
            raise typer.Exit(1) from exc
        stored = models_stored(conn)
    out.print(f"{counts.chunks} chunks re-embedded with {counts.model}; index built in {counts.index_seconds:.1f} s; "
              f"chunks per model now: {stored}", highlight=False)


# How often `pagemill reembed --aws` reads the execution's progress.
REEMBED_POLL_SECONDS = 10.0


def _reembed_on_aws(edge: _Aws, wait: bool) -> int:
    """Start (or follow) the stack's reembed execution; 0 once it succeeded (or started, without
    --wait), 1 if it ended otherwise."""
    import time

    from pagemill.operate import reembed as on_aws

    arn, started = on_aws.start(edge.sfn, edge.stack)
    err.print(f"{'started' if started else 'already running, following'}: {arn}", highlight=False)
    run = on_aws.progress(edge.sfn, arn)
    if wait:
        with Progress(TextColumn("re-embedding chunks on AWS"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("chunks", total=None)
            while not run.finished:
                time.sleep(REEMBED_POLL_SECONDS)
                run = on_aws.progress(edge.sfn, arn)
                total = None if run.remaining is None else run.embedded + run.remaining
                bar.update(task, completed=run.embedded, total=total)
    if not run.finished:
        out.print(f"running: {run.embedded} chunks re-embedded so far; follow it with "
                  f"`pagemill reembed --aws` or in the Step Functions console", highlight=False)
        return 0
    if run.status != "SUCCEEDED":
        err.print(f"[red]reembed {run.status.lower()}: {run.error or 'no error recorded'}; the chunks done so far "
                  "are kept: run `pagemill reembed --aws` again to go on[/red]", highlight=False)
        return 1
    out.print(f"{run.embedded} chunks re-embedded with {run.model}; index built in {run.index_seconds or 0:.1f} s",
              highlight=False)
    return 0


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DatabaseUrlOption = None,
    workers: WorkersOption = os.cpu_count() or 2,
    no_captions: NoCaptionsOption = False,
) -> None:
    """The HTTP API (docs at /docs) and the web console (/) over the local engine, in one process."""
    from pagemill_tools.startup import import_engine

    settings = _settings()
    import_engine()
    import uvicorn

    from pagemill.api.app import create_app
    from pagemill_tools.engine.engine import (
        EngineOptions,
        LocalEngine,
        caption_environment,
    )
    from pagemill_tools.serve import local_backend, stop_unfinished

    url = _database_url(database_url)
    _, caption_note = caption_environment(os.environ, no_captions=no_captions)
    options = EngineOptions(home=_home(), database_url=url, workers=workers, no_captions=no_captions)
    err.print("starting the local engine…")
    with LocalEngine(options) as engine:
        backend = local_backend(engine, url, settings)
        if caption_note:
            err.print(caption_note, highlight=False)
        err.print(f"console: http://{host}:{port}/  API docs: http://{host}:{port}/docs", highlight=False)
        uvicorn.run(create_app(lambda: backend), host=host, port=port, log_level="warning")
        stopped = stop_unfinished(engine, url)
        if stopped:
            err.print(f"{len(stopped)} document(s) still running were cancelled: upload them again", highlight=False)


@app.command("db-url")
def db_url(database_url: DatabaseUrlOption = None) -> None:
    """Print the database URL (starts the embedded PostgreSQL if needed)."""
    out.print(_database_url(database_url), soft_wrap=True, highlight=False)


@app.command()
def migrate(database_url: DatabaseUrlOption = None) -> None:
    """Apply pending schema migrations."""
    from pagemill.db.migrate import migrate as apply
    from pagemill_tools.embedded_db import resolve_url

    applied = apply(resolve_url(_home(), database_url))
    out.print(f"applied migrations: {applied}" if applied else "schema is up to date")


@app.command()
def asl() -> None:
    """Print the state machine definition as synthesized, with CloudFormation tokens resolved."""
    from pagemill_tools.engine.synth import PROJECT_ROOT, synthesize
    from pagemill_tools.engine.template import load_deployment

    template, stack = synthesize(_home() / "synth")
    out.print_json(json.dumps(load_deployment(template, stack, PROJECT_ROOT).definition))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out")] = Path("pagemill-out"),
    database_url: DatabaseUrlOption = None,
    no_captions: Annotated[bool, typer.Option("--no-captions")] = False,
) -> None:
    """Generate the sample catalog PDF and run it through the pipeline."""
    from pagemill_tools.sample import make_catalog

    sample = _home() / "samples" / "sample-catalog.pdf"
    sample.parent.mkdir(parents=True, exist_ok=True)
    truth = make_catalog(sample)
    err.print(f"sample catalog: {sample} ({truth.page_count} pages, {truth.distinct_images} distinct images)")
    from pagemill_tools.searching import TEST_MODEL_NOTE

    settings = _settings()
    try:
        run([sample], as_json=False, out_dir=out_dir, database_url=database_url, no_captions=no_captions)
    finally:
        if not settings.clip_dir:
            err.print(f"[yellow]note:[/yellow] {TEST_MODEL_NOTE}", highlight=False)
        err.print('find things: .venv/bin/pagemill search "red leather chair"  (chunks and images, ranked)',
                  highlight=False)


# --- operate: status, cancel, redrive ------------------------------------------------------

_T = TypeVar("_T")
_STYLES = {
    "succeeded": "green", "partial": "magenta", "failed": "red", "cancelled": "yellow", "interrupted": "yellow",
    "running": "cyan",
}

DocOption = Annotated[
    str, typer.Argument(help="A document id, a PDF that was run, an execution ARN or name, or (--aws) an upload key.")
]
AwsOption = Annotated[bool, typer.Option("--aws", help="The deployed stack (default AWS credentials), not the local engine.")]
StackOption = Annotated[
    str | None, typer.Option("--stack-name", help="With --aws: the stack (default: cdk.json's stack_name).")
]
RegionOption = Annotated[str | None, typer.Option("--region", help="With --aws: the stack's region.")]
AwsDatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DATABASE_URL",
                 help="PostgreSQL URL. Locally: default the embedded server. With --aws: optional (document rows)."),
]


def _styled(status: str) -> str:
    style = _STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def _default_stack_name() -> str:
    from pagemill_tools.engine.synth import PROJECT_ROOT

    cdk_json = PROJECT_ROOT / "cdk.json"
    context = json.loads(cdk_json.read_text()).get("context", {}) if cdk_json.is_file() else {}
    return context.get("stack_name") or "Pagemill"


class _Aws:
    """The edge for --aws: clients from the default credential chain, the stack's outputs, and
    the database when one is given."""

    def __init__(self, stack_name: str | None, region: str | None, database_url: str | None) -> None:
        import boto3

        from pagemill.operate.executions import find_stack

        session = boto3.Session(region_name=region)
        self.sfn = session.client("stepfunctions")
        self.s3 = session.client("s3")
        self.stack = find_stack(session.client("cloudformation"), stack_name or _default_stack_name())
        self.database_url = database_url


def _operate(action: Callable[[], int]) -> None:
    """Run an operation; typed failures become a red line and the exit code (1, 2 for a stack
    that cannot be found)."""
    from pagemill.errors import (
        DatabaseUnavailable,
        OperationError,
        StackNotFound,
        StorageUnavailable,
    )

    try:
        code = action()
    except StackNotFound as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc
    except (OperationError, DatabaseUnavailable, StorageUnavailable) as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


def _with_connection(url: str | None, use: Callable[[Any], _T]) -> _T:
    from pagemill.db.connect import connect

    if url is None:
        return use(None)
    with connect(url, autocommit=True) as conn:
        return use(conn)


@app.command()
def status(
    doc: Annotated[str | None, typer.Argument(help="A document (see cancel); none: the most recent.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[int, typer.Option(help="How many recent documents/executions without DOC.")] = 20,
    aws: AwsOption = False,
    stack_name: StackOption = None,
    region: RegionOption = None,
    database_url: AwsDatabaseOption = None,
) -> None:
    """A document's state, progress (pages done/total), current state, error and warnings; or the most
    recent ones. Exit code 0 running or succeeded, 3 partial, 1 failed, cancelled, interrupted or not found."""
    from pagemill.operate import executions as on_aws
    from pagemill_tools.operate import local

    def act() -> int:
        if aws:
            edge = _Aws(stack_name, region, database_url)
            if doc is None:
                return _show_list(on_aws.recent(edge.sfn, edge.stack, limit), as_json)

            def one(conn: Any) -> int:
                arn = on_aws.resolve(edge.sfn, edge.s3, edge.stack, doc, conn)
                return _show_status(on_aws.status(edge.sfn, edge.s3, edge.stack, arn), as_json)

            return _with_connection(edge.database_url, one)

        def local_status(conn: Any) -> int:
            if doc is None:
                return _show_list(local.recent(conn, limit), as_json)
            return _show_status(local.status(conn, doc), as_json)

        return _with_connection(_database_url(database_url), local_status)

    _operate(act)


@app.command()
def cancel(
    doc: DocOption,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; recorded with who cancelled it.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    aws: AwsOption = False,
    stack_name: StackOption = None,
    region: RegionOption = None,
    database_url: AwsDatabaseOption = None,
) -> None:
    """Stop a running document (StopExecution on AWS) and mark it cancelled, with who and why.
    Locally this also settles a document left running by a run that died."""
    import getpass
    import socket

    from pagemill.operate import executions as on_aws
    from pagemill_tools.operate import local

    why = f"cancelled by {getpass.getuser()}@{socket.gethostname()} with pagemill cancel" + (
        f": {reason}" if reason else ""
    )

    def act() -> int:
        if aws:
            edge = _Aws(stack_name, region, database_url)

            def on_stack(conn: Any) -> int:
                arn = on_aws.resolve(edge.sfn, edge.s3, edge.stack, doc, conn)
                return _show_outcome(on_aws.cancel(edge.sfn, edge.stack, arn, why, conn), as_json)

            return _with_connection(edge.database_url, on_stack)
        return _with_connection(_database_url(database_url), lambda conn: _show_outcome(local.cancel(conn, doc, why), as_json))

    _operate(act)


@app.command()
def redrive(
    doc: DocOption,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    aws: AwsOption = False,
    stack_name: StackOption = None,
    region: RegionOption = None,
    database_url: AwsDatabaseOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Locally: where to export results.")] = Path("pagemill-out"),
    workers: Annotated[int, typer.Option(help="Locally: Lambda worker processes.")] = os.cpu_count() or 2,
    no_captions: Annotated[bool, typer.Option("--no-captions")] = False,
) -> None:
    """Run a failed, cancelled, interrupted or partial document again. On AWS: RedriveExecution where it
    resumes the work, else a new execution of the same upload (`<name>-r<N>`). Locally: the file it came
    from, through the engine; a partial document's rows are replaced (none duplicated) and what was
    missing (captions, understanding) is made where it can be now. Exit codes locally: as `pagemill run`."""
    from pagemill.operate import executions as on_aws
    from pagemill_tools.operate import local

    def act() -> int:
        if aws:
            edge = _Aws(stack_name, region, database_url)

            def on_stack(conn: Any) -> int:
                arn = on_aws.resolve(edge.sfn, edge.s3, edge.stack, doc, conn)
                return _show_outcome(on_aws.redrive(edge.sfn, edge.stack, arn), as_json)

            return _with_connection(edge.database_url, on_stack)
        url = _database_url(database_url)
        path = _with_connection(url, lambda conn: local.redrive_source(conn, doc))
        err.print(f"running {path} again", highlight=False)
        return _run_files([path], as_json=as_json, out_dir=out_dir, url=url, workers=workers, no_captions=no_captions)

    _operate(act)


def _warning_line(warning: dict[str, Any]) -> str:
    return f"{warning['code']}: {warning['message']}"


def _show_status(s: DocumentStatus, as_json: bool) -> int:
    from pagemill.records import dump
    from pagemill_tools import exit_codes

    if as_json:
        out.print_json(json.dumps(dump(s)))
        return exit_codes.for_statuses([s.status])
    table = Table(show_header=False, title=f"document {s.document_id or s.execution_arn}")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    rows = {
        "status": _styled(s.status) + (f" (execution {s.execution_status})" if s.execution_status else ""),
        "progress": _progress(s),
        "current state": s.current_state,
        "error": f"{s.error_class}: {s.error}" if s.error_class else s.error,
        "failed state": s.failed_state,
        "source": s.source,
        "execution": s.execution_arn,
        "started": f"{s.started_at:%Y-%m-%d %H:%M:%S %Z}" if s.started_at else None,
        "updated": f"{s.updated_at:%Y-%m-%d %H:%M:%S %Z}" if s.updated_at else None,
    }
    rows["warnings"] = "\n".join(_warning_line(w) for w in s.warnings)
    for name, value in rows.items():
        if value:
            table.add_row(name, value)
    out.print(table)
    if s.note:
        out.print(s.note, highlight=False)
    return exit_codes.for_statuses([s.status])


def _show_list(listing: StatusList, as_json: bool) -> int:
    from pagemill.records import dump

    if as_json:
        out.print_json(json.dumps(dump(listing)))
        return 0
    table = Table(title="pagemill status (" + ", ".join(f"{n} {k}" for k, n in sorted(listing.counts.items())) + ")")
    for column in ("document / execution", "status", "progress", "state", "updated", "error / warnings"):
        table.add_column(column)
    for s in listing.items:
        when = s.updated_at or s.started_at
        problem = f"{s.error_class}: {s.error}" if s.error_class else ", ".join(w["code"] for w in s.warnings)
        table.add_row(
            s.document_id or s.execution_arn.rsplit(":", 1)[-1], _styled(s.status), _progress(s), s.current_state or "",
            f"{when:%Y-%m-%d %H:%M:%S}" if when else "", problem,
        )
    out.print(table)
    return 0


def _progress(s: DocumentStatus) -> str:
    if s.page_count is None:
        return f"{s.pages_done} pages" if s.pages_done else ""
    done = s.pages_done if s.pages_done is not None else 0
    return f"{done}/{s.page_count} pages ({done / s.page_count:.0%})" if s.page_count else "0 pages"


def _show_outcome(outcome: CancelOutcome | RedriveOutcome, as_json: bool) -> int:
    from pagemill.records import dump

    if as_json:
        out.print_json(json.dumps(dump(outcome)))
    else:
        out.print(outcome.note, highlight=False)
        out.print(f"execution: {outcome.execution_arn}", highlight=False, soft_wrap=True)
    return 0
