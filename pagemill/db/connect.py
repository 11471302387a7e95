"""Opening connections and translating connection failures into the retryable error."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict
from psycopg.types import TypeInfo

from pagemill.errors import DatabaseUnavailable, InternalError

# Short, so an unreachable database fails a Lambda attempt quickly and Step Functions' retry
# with backoff does the waiting, instead of the function's own timeout.
CONNECT_TIMEOUT_S = 5
# Server settings pagemill's databases run with (the embedded server here, the RDS parameter
# group in stacks/database.py; a test keeps the two equal). A function killed at its timeout
# leaves its backend behind: without a check PostgreSQL notices the vanished client only when it
# next writes to it, so a backend waiting on a lock keeps its own locks (the document's row) and
# blocks every retry of the same document. With it, the backend gives up within seconds.
SERVER_SETTINGS = {"client_connection_check_interval": "5000"}  # milliseconds


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Connect, with pgvector's types registered when the extension exists.

    The first connection to a new database comes before the migration that creates the
    extension; it works without the vector type (``migrate`` registers it afterwards).
    """
    params = conninfo_to_dict(url)
    timeout = {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        # No server-side prepared statements (psycopg prepares a query run 5 times): RDS Proxy
        # pins a session that prepares one to its database connection until it closes.
        conn = psycopg.connect(url, autocommit=autocommit, prepare_threshold=None, **timeout)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"could not reach PostgreSQL at {describe(url)}: {one_line(exc)}") from exc
    try:
        register_vector_if_present(conn)
    except psycopg.OperationalError as exc:
        conn.close()
        raise DatabaseUnavailable(f"PostgreSQL at {describe(url)} dropped the connection: {one_line(exc)}") from exc
    return conn


def url_from_secret(secret: Mapping[str, Any], *, host: str | None = None) -> str:
    """The connection URL of an RDS secret (username, password, host, port, dbname), TLS required.

    ``host`` replaces the secret's: the secret RDS generates names the instance, while clients
    go through RDS Proxy (same user, password, port and database)."""
    missing = [key for key in ("username", "password") if not secret.get(key)]
    if not host and not secret.get("host"):
        missing.append("host")
    if missing:
        raise InternalError(f"the database secret has no {', '.join(missing)}")
    user, password = quote(str(secret["username"]), safe=""), quote(str(secret["password"]), safe="")
    return (
        f"postgresql://{user}:{password}@{host or secret['host']}:{secret.get('port') or 5432}/"
        f"{quote(str(secret.get('dbname') or 'postgres'), safe='')}?sslmode=require"
    )


def register_vector_if_present(conn: psycopg.Connection[Any]) -> bool:
    """Register pgvector's adapters on ``conn``; False when the extension is not installed yet."""
    if TypeInfo.fetch(conn, "vector") is None:
        return False
    register_vector(conn)
    return True


@contextmanager
def unavailable_on_failure(action: str) -> Iterator[None]:
    """Turn a lost or refused connection during ``action`` into DatabaseUnavailable (retried)."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"PostgreSQL failed while {action}: {one_line(exc)}") from exc


def describe(url: str) -> str:
    """host:port or the socket folder, never the password."""
    params = conninfo_to_dict(url)
    host = params.get("host") or "the default socket"
    port = params.get("port") or "5432"
    where = f"socket {host}" if str(host).startswith("/") else f"{host}:{port}"
    return f"{where} (database {params.get('dbname') or params.get('user') or 'default'})"


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
