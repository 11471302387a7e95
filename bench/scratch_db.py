"""A PostgreSQL for a benchmark: the given URL (or DATABASE_URL), else a throwaway embedded server
(the scratch database on it: pagemill_tools.scratch_db)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pagemill_tools import embedded_db as embedded


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
