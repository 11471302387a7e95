"""The `pagemill` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="pagemill: PDFs to pages, chunks and images in PostgreSQL.", no_args_is_help=True)
err = Console(stderr=True)
# Piped output (CI logs, `| tee`) would otherwise be squeezed to 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=160)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DATABASE_URL", help="PostgreSQL URL (default: the embedded server)."),
]


def _home() -> Path:
    return Path(os.environ.get("PAGEMILL_HOME", Path.home() / ".pagemill")).expanduser()


def _database_url(explicit: str | None) -> str:
    from pagemill.db.embedded import resolve_url
    from pagemill.db.migrate import migrate

    url = resolve_url(_home(), explicit)
    migrate(url)
    return url


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="PDF files, or folders of PDFs.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input.")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to export results.")] = Path("pagemill-out"),
    database_url: DatabaseUrlOption = None,
    workers: Annotated[int, typer.Option(help="Lambda worker processes.")] = os.cpu_count() or 2,
    no_captions: Annotated[
        bool, typer.Option("--no-captions", help="Do not caption images or read documents with the model.")
    ] = False,
) -> None:
    """Run each PDF through the full state machine, locally."""
    from pagemill.local.engine import EngineOptions, caption_environment
    from pagemill.local.run import expand_inputs, run_documents

    try:
        files = expand_inputs(paths)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if not files:
        err.print("[yellow]no PDF files found in the given paths[/yellow]")
        raise typer.Exit(2)
    url = _database_url(database_url)
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

        def update(r) -> None:  # noqa: ANN001 - DocumentRun
            progress.update(
                tasks[r.execution_arn], total=r.page_count, completed=r.pages_done, state=r.status.lower()
            )

        results = run_documents(files, options, out_dir=out_dir, on_progress=update, on_submitted=submitted)
    if as_json:
        out.print_json(json.dumps([r.public() for r in results]))
    else:
        _summary(results, url, out_dir, caption_note)
    raise typer.Exit(0 if all(r.status == "succeeded" for r in results) else 1)


_STATES = ("Plan", "ExtractPages", "Enrich", "Write", "RecordFailure")


def _summary(results: list, url: str, out_dir: Path, caption_note: str | None) -> None:
    states = [s for s in _STATES if any(s in r.state_seconds for r in results)]
    table = Table(title="pagemill run")
    table.add_column("document", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("pages", "chunks", "images", "seconds", *(f"{s} s" for s in states)):
        table.add_column(column, justify="right")
    for r in results:
        status = {"succeeded": "[green]succeeded[/green]", "failed": "[red]failed[/red]"}.get(r.status, r.status)
        if r.duplicate:
            status += " (duplicate)"
        table.add_row(
            Path(r.source).name, status, str(r.pages), str(r.chunks), str(r.images), f"{r.seconds:.1f}",
            *(f"{r.state_seconds[s]:.1f}" if s in r.state_seconds else "" for s in states),
        )
    out.print(table)
    for r in results:
        if r.error:
            out.print(f"[red]{Path(r.source).name}[/red]: {r.error}")
        elif r.out:
            out.print(f"{Path(r.source).name}: {r.out}/", highlight=False)
    if caption_note:
        out.print(caption_note, highlight=False)
    out.print(f'database: psql "{url}"', highlight=False, soft_wrap=True)


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Find images like this one instead.")] = None,
    limit: Annotated[int, typer.Option(help="How many hits.")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where `run` exported images.")] = Path("pagemill-out"),
    database_url: DatabaseUrlOption = None,
) -> None:
    """Rank stored images by similarity to a text (or an image), with their page numbers."""
    from pagemill.clip.model import ClipModel
    from pagemill.clip.preprocess import preprocess_bytes
    from pagemill.clip.testmodel import ensure_test_model
    from pagemill.db.connect import connect
    from pagemill.export import image_path
    from pagemill.search import nearest_images
    from pagemill.settings import Settings

    if (text is None) == (image is None):
        err.print("[red]give either a text or --image FILE[/red]")
        raise typer.Exit(2)
    settings = Settings.from_env()
    # The same model the local engine embeds with: a real export if PAGEMILL_CLIP_DIR names one.
    model = ClipModel.load(Path(settings.clip_dir) if settings.clip_dir else ensure_test_model(_home() / "clip-test-model"))
    if image is not None:
        query = model.embed_images(preprocess_bytes(image.read_bytes(), max_pixels=settings.max_image_pixels)[None])[0]
    else:
        query = model.embed_texts([text])[0]
    with connect(_database_url(database_url)) as conn:
        hits = nearest_images(conn, query, limit=limit)
    files = [image_path(out_dir, h.document_id, h.image_no, h.page_no, h.s3_key.rsplit(".", 1)[-1]) for h in hits]
    if as_json:
        out.print_json(json.dumps([{**h.to_dict(), "out": str(f)} for h, f in zip(hits, files)]))
        return
    table = Table(title=f"images nearest to {text!r}" if text else f"images like {image}")
    for column in ("score", "document", "page", "caption", "file"):
        table.add_column(column)
    for h, f in zip(hits, files):
        table.add_row(f"{h.score:.3f}", h.document_id, str(h.page_no), h.caption or "", str(f))
    out.print(table)


@app.command("db-url")
def db_url(database_url: DatabaseUrlOption = None) -> None:
    """Print the database URL (starts the embedded PostgreSQL if needed)."""
    out.print(_database_url(database_url), soft_wrap=True, highlight=False)


@app.command()
def migrate(database_url: DatabaseUrlOption = None) -> None:
    """Apply pending schema migrations."""
    from pagemill.db.embedded import resolve_url
    from pagemill.db.migrate import migrate as apply

    applied = apply(resolve_url(_home(), database_url))
    out.print(f"applied migrations: {applied}" if applied else "schema is up to date")


@app.command()
def asl() -> None:
    """Print the state machine definition as synthesized, with CloudFormation tokens resolved."""
    from pagemill.local.synth import PROJECT_ROOT, synthesize
    from pagemill.local.template import load_deployment

    template, stack = synthesize(_home() / "synth")
    out.print_json(json.dumps(load_deployment(template, stack, PROJECT_ROOT).definition))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out")] = Path("pagemill-out"),
    database_url: DatabaseUrlOption = None,
    no_captions: Annotated[bool, typer.Option("--no-captions")] = False,
) -> None:
    """Generate the sample catalog PDF and run it through the pipeline."""
    from pagemill.sample import make_catalog

    sample = _home() / "samples" / "sample-catalog.pdf"
    sample.parent.mkdir(parents=True, exist_ok=True)
    truth = make_catalog(sample)
    err.print(f"sample catalog: {sample} ({truth.page_count} pages, {truth.distinct_images} distinct images)")
    run([sample], as_json=False, out_dir=out_dir, database_url=database_url, no_captions=no_captions)
