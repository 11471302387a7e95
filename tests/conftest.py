"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fake_anthropic"]

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("PAGEMILL_CORPUS", ROOT.parent / "shared" / "corpus"))


def pytest_configure(config: pytest.Config) -> None:
    # Tests never call the real model API, whatever the developer's environment holds: engines,
    # CLI subprocesses and workers all inherit this process's environment. (Tests that caption
    # set their own key and point the SDK at the fake Messages API.)
    os.environ.pop("ANTHROPIC_API_KEY", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test` hands whole modules to two workers in collection order
    # (--dist loadfile --no-loadscope-reorder): the longest modules go first, so that no long
    # module starts last and runs alone while the other worker sits idle.
    def weight(item: pytest.Item) -> float:
        mark = item.get_closest_marker("heavy")
        return -mark.args[0] if mark else 0

    items.sort(key=weight)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real-world PDFs of ../shared/corpus; tests that need them skip when they are absent."""
    if not (CORPUS / "MANIFEST.tsv").is_file():
        pytest.skip(f"corpus not found at {CORPUS} (set PAGEMILL_CORPUS to its folder)")
    return CORPUS


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server with pgvector: PAGEMILL_TEST_DATABASE_URL when set, else an embedded
    server of this session (one per xdist worker), stopped at the end."""
    explicit = os.environ.get("PAGEMILL_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    from pagemill_tools import embedded_db as embedded

    # Not under pytest's own temporary folder: the server runs as another user, and every pytest
    # session of this user makes that folder private again (mode 0700) when it starts, which
    # took the server's data away from it under a test run beside this one.
    home = Path(tempfile.mkdtemp(prefix="pagemill-test-pg-"))
    url = embedded.start(home)
    try:
        yield url
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database of its own, dropped after the test."""
    from pagemill_tools.scratch_db import scratch_database

    with scratch_database(pg_server_url) as url:
        yield url


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A fresh database with the schema migrated, dropped after the test."""
    from pagemill.db.migrate import migrate

    migrate(empty_database_url)
    return empty_database_url
