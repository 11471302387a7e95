"""PostgreSQL goes away just before Write: the Write task fails with DatabaseUnavailable, Step
Functions retries it with backoff, and once the database is back the document succeeds with
each row once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pagemill_tools.engine.engine import EngineOptions, LocalEngine
from pagemill.operate.progress import visited
from pagemill_tools.sample import make_catalog
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def proxy(module_database_url: str) -> Iterator[TcpProxy]:
    params = conninfo_to_dict(module_database_url)
    if not str(params.get("host", "")).startswith("/"):
        pytest.skip("the outage is staged in front of a Unix-socket PostgreSQL (the embedded one)")
    with TcpProxy(f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}") as running:
        yield running


@pytest.fixture(scope="module")
def outage_engine(proxy: TcpProxy, engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    params = {**conninfo_to_dict(module_database_url), "host": "127.0.0.1", "port": str(proxy.port)}
    options = EngineOptions(home=engine_home, database_url=make_conninfo(**params), workers=2)
    with LocalEngine(options) as running:
        yield running


def _write_failures(events: list[dict]) -> list[dict]:
    return [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"
            and e["taskFailedEventDetails"].get("error") == "DatabaseUnavailable"]


def test_write_waits_out_a_database_outage(outage_engine: LocalEngine, proxy: TcpProxy, db, tmp_path: Path) -> None:
    # GIVEN a document on its way
    path = tmp_path / "catalog.pdf"
    truth = make_catalog(path, pages=6, seed=21)
    run = outage_engine.submit(path)
    # WHEN the database goes away once Plan has registered it, and comes back after Write failed on it
    deadline = time.monotonic() + 120
    while not visited(outage_engine.history(run.execution_arn), "Enrich"):
        assert time.monotonic() < deadline, "the document never reached Enrich"
        time.sleep(0.05)
    proxy.down()
    try:
        while not _write_failures(events := outage_engine.history(run.execution_arn)):
            assert time.monotonic() < deadline, f"Write never failed on the outage: {[e['type'] for e in events]}"
            time.sleep(0.05)
    finally:
        proxy.up()
    outage_engine.wait([run])
    # THEN Write was retried and the document succeeded
    assert run.status == "SUCCEEDED", run
    events = outage_engine.history(run.execution_arn)
    assert _write_failures(events)
    assert not visited(events, "RecordFailure")
    # AND its rows are there once each
    counts = db.execute(
        "select (select status from documents where id = %(d)s),"
        " (select count(*) from pages where document_id = %(d)s),"
        " (select count(*) from images where document_id = %(d)s),"
        " (select count(distinct sha256) from images where document_id = %(d)s)",
        {"d": run.document_id},
    ).fetchone()
    assert counts == ("succeeded", truth.page_count, truth.distinct_images, truth.distinct_images)
