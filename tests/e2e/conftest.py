"""The local engine, started once per module: synth (cached), moto, worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pagemill.db.migrate import migrate
from pagemill_tools.engine.engine import EngineOptions, LocalEngine
from pagemill_tools.engine.runbook import DocumentRun
from pagemill_tools.sample import make_catalog
from pagemill_tools.scratch_db import scratch_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The synth cache lives in the repo's build folder so every module (and every xdist worker)
    # shares one synth.
    home = ROOT / "build" / "test-home"
    home.mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture(scope="module")
def module_database_url(pg_server_url: str) -> Iterator[str]:
    with scratch_database(pg_server_url, prefix="pm_e2e_") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def engine(engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    # No API key (tests/conftest.py removes it): captions are skipped, never sent.
    options = EngineOptions(home=engine_home, database_url=module_database_url, workers=2)
    with LocalEngine(options) as running:
        yield running


@pytest.fixture
def db(module_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        yield conn


def run_catalog(engine: LocalEngine, folder: Path, pages: int) -> DocumentRun:
    """A generated catalog of ``pages`` pages, uploaded and run to its end."""
    catalog = folder / "catalog.pdf"
    make_catalog(catalog, pages=pages)
    run = engine.submit(catalog)
    engine.wait([run])
    return run
