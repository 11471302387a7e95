"""The local engine, started once per module: synth (cached), moto, worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pagemill.db.migrate import migrate
from pagemill.local.engine import EngineOptions, LocalEngine

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
    name = f"pm_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_dbname(pg_server_url, name)
    migrate(url)
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_dbname(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="module")
def engine(engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    # No API key, whatever the environment holds: tests never call a real model API.
    options = EngineOptions(
        home=engine_home, database_url=module_database_url, workers=2, function_env={"ANTHROPIC_API_KEY": ""}
    )
    with LocalEngine(options) as running:
        yield running


@pytest.fixture
def db(module_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        yield conn
