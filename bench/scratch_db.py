"""A PostgreSQL for a benchmark: the given URL (or DATABASE_URL), else a throwaway embedded server,
and on it a scratch database that is dropped at the end."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pagemill.db import embedded
from pagemill.db.connect import connect


@contextmanager
def server(explicit: str | None) -> Iterator[str]:
    if explicit:
        yield explicit
        return
    with tempfile.TemporaryDirectory(prefix="pagemill-bench-") as home:
        try:
            yield embedded.start(Path(home))
        finally:
            embedded.stop(Path(home))


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    name = f"pm_bench_{uuid.uuid4().hex[:12]}"
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**conninfo_to_dict(server_url), "dbname": name})
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
