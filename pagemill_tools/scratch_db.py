"""A throwaway database on a PostgreSQL server: the tests' and the benchmarks' own, dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pagemill.db.connect import connect


@contextmanager
def scratch_database(server_url: str, prefix: str = "pm_") -> Iterator[str]:
    """Create an empty database on the server of ``server_url``; yield its URL; drop it (and any
    connection still open to it) at the end."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**conninfo_to_dict(server_url), "dbname": name})
    finally:
        with connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
