"""Versioned schema migrations: ``pagemill/db/migrations/NNNN_name.sql``, applied in order.

Each migration runs in its own transaction together with its row in ``schema_migrations``, so a
migration is either applied and recorded or not at all. Every transaction first takes one
advisory lock: several Lambda workers (or CLI calls) migrating at once apply each migration
exactly once, the others wait and then find it recorded.

Apply pending migrations with ``python -m pagemill.db.migrate [URL]`` (default: DATABASE_URL).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import psycopg

from pagemill.db.connect import (
    connect,
    register_vector_if_present,
    unavailable_on_failure,
)
from pagemill.errors import InternalError

# pg_advisory_xact_lock takes a bigint; the ASCII of "pagemill" keeps it recognisable in pg_locks.
_LOCK_KEY = int.from_bytes(b"pagemill", "big")
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this package, by version."""
    found: dict[int, Migration] = {}
    for entry in files("pagemill.db").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise InternalError(f"two migrations have version {version}: {found[version].name} and {match.group(2)}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(target: str | psycopg.Connection[Any]) -> list[int]:
    """Apply pending migrations to a database (URL or open, idle connection); return the versions
    applied by this call (empty when the schema was up to date)."""
    if isinstance(target, str):
        with connect(target) as conn:
            return _apply(conn)
    return _apply(target)


def _apply(conn: psycopg.Connection[Any]) -> list[int]:
    applied: list[int] = []
    with unavailable_on_failure("migrating the schema"):
        with conn.transaction():
            _lock(conn)
            conn.execute(
                "create table if not exists schema_migrations ("
                " version int primary key, name text not null,"
                " applied_at timestamptz not null default now())"
            )
        for migration in migrations():
            with conn.transaction():
                _lock(conn)
                done = conn.execute(
                    "select 1 from schema_migrations where version = %s", (migration.version,)
                ).fetchone()
                if done:
                    continue
                # No parameters: psycopg sends the file as one simple query, several statements.
                conn.execute(migration.sql)
                conn.execute(
                    "insert into schema_migrations (version, name) values (%s, %s)", (migration.version, migration.name)
                )
            applied.append(migration.version)
        # The first migration creates the vector type; this connection may have been opened before.
        register_vector_if_present(conn)
    return applied


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def main(argv: list[str]) -> int:
    from pagemill.settings import Settings

    url = argv[0] if argv else Settings.from_env().database_url
    if not url:
        sys.stderr.write("usage: python -m pagemill.db.migrate [URL]   (or set DATABASE_URL)\n")
        return 2
    applied = migrate(url)
    latest = migrations()[-1].version
    sys.stdout.write(
        f"applied migrations {applied}; schema is at version {latest}\n" if applied
        else f"schema is up to date (version {latest})\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
