"""The schema custom resource's handler (lambdas/migrate) against a real PostgreSQL: Create and
Update apply pending migrations through the one database connection a function holds; Delete
leaves the schema, and touches no database at all."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pagemill.aws import clients as edge
from pagemill.db.connect import connect
from pagemill.db.migrate import migrations
from pagemill.errors import DatabaseUnavailable
from tests.support.lambda_context import LambdaContext, load_handler

ROOT = Path(__file__).resolve().parents[2]
HANDLER = ROOT / "lambdas" / "migrate" / "handler.py"


def _context() -> LambdaContext:
    return LambdaContext("MigrateFunction", 512, 900_000)


@pytest.fixture(scope="module")
def handler() -> ModuleType:
    return load_handler(HANDLER, "pagemill_migrate_handler")


@pytest.fixture
def fresh_connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No connection left over from another test's database; the one opened here is closed after."""
    monkeypatch.setattr(edge, "_connection", None)
    yield
    if edge._connection is not None:
        edge._connection.close()


def _event(request: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResourceType": "Custom::PagemillSchema",
        "LogicalResourceId": "MigrationsSchema",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:framework",
                               "MigrationsHash": "abc"},
        **extra,
    }


def _applied_versions(url: str) -> list[int]:
    with connect(url) as conn:
        return [v for (v,) in conn.execute("select version from schema_migrations order by version")]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://pagemill@127.0.0.1:{port}/pagemill"


def test_create_migrates_an_empty_database(
    handler: ModuleType, empty_database_url: str, fresh_connection: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an empty database and the function's environment pointing at it
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    # WHEN CloudFormation creates the resource
    result = handler.on_event(_event("Create"), _context())
    # THEN every migration is applied and reported, the vector extension included
    versions = [m.version for m in migrations()]
    assert result == {
        "PhysicalResourceId": "pagemill-schema",
        "Data": {"SchemaVersion": str(versions[-1]), "Applied": ",".join(map(str, versions))},
    }
    assert _applied_versions(empty_database_url) == versions
    with connect(empty_database_url) as conn:
        assert conn.execute("select 1 from pg_extension where extname = 'vector'").fetchone()
        assert conn.execute("select to_regclass('images')").fetchone() == ("images",)


def test_update_applies_only_what_is_pending(
    handler: ModuleType, empty_database_url: str, fresh_connection: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a database migrated by an earlier deploy
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    handler.on_event(_event("Create"), _context())
    # WHEN a later deploy sends an Update (the migrations hash changed)
    result = handler.on_event(
        _event("Update", PhysicalResourceId="pagemill-schema", OldResourceProperties={"MigrationsHash": "old"}),
        _context(),
    )
    # THEN nothing is applied twice, the resource keeps its id, and the function still holds one connection
    assert result["PhysicalResourceId"] == "pagemill-schema"
    assert result["Data"]["Applied"] == ""
    assert _applied_versions(empty_database_url) == [m.version for m in migrations()]
    with connect(empty_database_url) as conn:
        own = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchone()
    assert own == (1,)


def test_delete_keeps_the_schema_and_needs_no_database(
    handler: ModuleType, database_url: str, fresh_connection: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a migrated database, and a function whose database is unreachable (a stack deleted,
    # or rolled back before its instance came up)
    monkeypatch.setenv("DATABASE_URL", _closed_port_url())
    # WHEN CloudFormation deletes the resource
    result = handler.on_event(_event("Delete", PhysicalResourceId="pagemill-schema"), _context())
    # THEN it succeeds without a connection, and the schema and its tables are still there
    assert result == {"PhysicalResourceId": "pagemill-schema"}
    assert edge._connection is None
    assert _applied_versions(database_url) == [m.version for m in migrations()]


def test_an_unreachable_database_fails_the_deploy_with_a_clear_error(
    handler: ModuleType, fresh_connection: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN nothing listening where the database should be
    monkeypatch.setenv("DATABASE_URL", _closed_port_url())
    # WHEN CloudFormation creates the resource THEN the error names what could not be reached
    with pytest.raises(DatabaseUnavailable, match="could not reach PostgreSQL at 127.0.0.1"):
        handler.on_event(_event("Create"), _context())


def test_an_event_that_is_not_a_custom_resource_request_is_refused(handler: ModuleType) -> None:
    with pytest.raises(ValueError, match="RequestType is 'Invoke'"):
        handler.on_event({"RequestType": "Invoke"}, _context())
