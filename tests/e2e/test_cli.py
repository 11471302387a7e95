"""The `pagemill` command as a user runs it: a real process, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest

from pagemill_tools.sample import make_catalog
from tests.e2e.conftest import ROOT

PAGEMILL = [sys.executable, "-m", "pagemill_tools"]


def pagemill(*args: str, home: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAGEMILL_HOME": str(home), **env_vars}
    env.pop("DATABASE_URL", None)
    return subprocess.run([*PAGEMILL, *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_run_json_reports_each_input_and_exits_nonzero_on_a_failure(
    tmp_path: Path, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN a folder with a good PDF and an empty one
    folder = tmp_path / "in"
    folder.mkdir()
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Hello from the command line")
    doc.save(folder / "hello.pdf")
    (folder / "broken.pdf").write_bytes(b"")
    # WHEN `pagemill run --json` processes the folder
    result = pagemill("run", str(folder), "--json", "--out", str(tmp_path / "out"),
                      "--database-url", module_database_url, home=engine_home)
    # THEN it prints one object per input, exits 1, and exported the good one
    assert result.returncode == 1, result.stderr
    report = {Path(r["source"]).name: r for r in json.loads(result.stdout)}
    assert set(report) == {"hello.pdf", "broken.pdf"}
    hello, broken = report["hello.pdf"], report["broken.pdf"]
    assert set(hello) == {
        "document_id", "source", "status", "pages", "chunks", "images", "error", "seconds", "execution_arn", "timings",
    }
    assert (hello["status"], hello["pages"], hello["error"]) == ("succeeded", 1, None)
    assert broken["status"] == "failed" and "empty" in broken["error"]
    exported = tmp_path / "out" / hello["document_id"]
    assert "Hello from the command line" in (exported / "pages" / "0001.md").read_text()


def test_run_without_an_api_key_says_captions_were_skipped(
    tmp_path: Path, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN a PDF with an image, and no ANTHROPIC_API_KEY
    path = tmp_path / "one.pdf"
    make_catalog(path, pages=2)
    # WHEN `pagemill run` prints its summary
    result = pagemill("run", str(path), "--out", str(tmp_path / "out"), "--database-url", module_database_url,
                      home=engine_home, COLUMNS="300")
    # THEN the document succeeded and the summary says why there are no captions: not an error
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    assert "captions skipped: no API key" in result.stdout
    # AND its seconds per state stand in the order the document went through them (the database's
    # jsonb keeps keys shortest first)
    header = next(line for line in result.stdout.splitlines() if "Plan s" in line)
    columns = [name.strip() for name in header.strip("┃ ").split("┃") if name.strip().endswith(" s")]
    assert columns == ["Plan s", "ExtractPages s", "Embed s", "EmbedChunks s", "Write s"], columns


def test_caption_environment_follows_the_key_and_the_flag() -> None:
    from pagemill_tools.engine.engine import (
        CAPTIONS_OFF,
        NO_API_KEY,
        caption_environment,
    )

    key = {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    assert caption_environment(key, no_captions=False) == (
        {"PAGEMILL_CAPTION_PROVIDER": "anthropic", **key}, None
    )
    assert caption_environment(key, no_captions=True) == ({"PAGEMILL_CAPTION_PROVIDER": "off"}, CAPTIONS_OFF)
    assert caption_environment({}, no_captions=False) == ({"PAGEMILL_CAPTION_PROVIDER": "off"}, NO_API_KEY)
    bedrock = {"PAGEMILL_CAPTION_PROVIDER": "bedrock"}
    assert caption_environment(bedrock, no_captions=False) == (bedrock, None)


def test_an_exported_deployed_setting_reaches_the_synthesis(tmp_path: Path, monkeypatch) -> None:
    from pagemill_tools.engine import engine

    # GIVEN deployed settings exported as a user would, beside ones the engine decides itself
    # and a library-only one
    for name, value in {"PAGEMILL_MARKDOWN_MODE": "fast", "PAGEMILL_BATCH_PAGES": "5",
                        "PAGEMILL_SPEECH": "off", "PAGEMILL_OCR_DPI": "300"}.items():
        monkeypatch.setenv(name, value)
    seen: list[dict] = []

    def synthesize(cache_dir: Path, *, context: dict) -> tuple[Path, str]:
        seen.append(context)
        raise RuntimeError("synthesis stops here")

    monkeypatch.setattr(engine, "synthesize", synthesize)
    # WHEN the local engine starts, with a context of its caller's own
    options = engine.EngineOptions(home=tmp_path, database_url="", context={"batch_pages": 7})
    with pytest.raises(RuntimeError, match="stops here"):
        engine.LocalEngine(options).__enter__()
    # THEN the synthesis gets the exported pipeline settings as context (cdk.json's value would
    # shadow them in every function otherwise), and the caller's own context wins
    assert seen == [{"markdown_mode": "fast", "batch_pages": 7}]


def test_a_setting_that_cannot_be_used_stops_run_with_its_name(tmp_path: Path) -> None:
    result = pagemill("run", str(tmp_path), home=tmp_path, PAGEMILL_MARKDOWN_MODE="fastest")
    assert result.returncode == 2
    assert "PAGEMILL_MARKDOWN_MODE must be one of" in result.stderr and "Traceback" not in result.stderr


def test_asl_prints_the_synthesized_definition_with_tokens_resolved(engine_home: Path) -> None:
    result = pagemill("asl", home=engine_home)
    assert result.returncode == 0, result.stderr
    definition = json.loads(result.stdout)
    assert definition["StartAt"] == "Plan"
    assert {"Plan", "ExtractPages", "Write", "RecordFailure"} <= set(definition["States"])
    assert "Fn::" not in result.stdout and '"Ref"' not in result.stdout
    plan = definition["States"]["Plan"]
    assert plan["Arguments" if "Arguments" in plan else "Parameters"]["FunctionName"].startswith("arn:aws:lambda:")


def test_db_url_starts_the_embedded_server_and_it_outlives_the_command(tmp_path: Path) -> None:
    from pagemill_tools import embedded_db as embedded

    home = tmp_path / "home"
    try:
        # WHEN `pagemill db-url` runs with no DATABASE_URL
        result = pagemill("db-url", home=home)
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        # THEN the URL it printed reaches a migrated PostgreSQL after the command exited
        import psycopg

        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}
        assert {"documents", "sources", "pages", "chunks", "images"} <= tables
    finally:
        embedded.stop(home)
