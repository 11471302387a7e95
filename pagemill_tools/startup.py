"""The `pagemill` command's entry point: the CLI imported with the garbage collector paused.

Importing the CLI and the local engine (moto's models, its Step Functions interpreter, boto3,
psycopg, rich) makes a few hundred thousand objects that live as long as the process. Collecting
while they are made frees next to nothing and took 0.3 of the 1.1 s those imports cost
(bench/RESULTS.md, "engine start-up"). Frozen afterwards, they are also left out of every later
full collection of a long run.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """No collection while the body runs; what it made is then kept out of later collections.
    For start-up only: garbage made inside is never collected."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def main() -> None:
    with collection_paused():
        from pagemill_tools.cli import app  # the import is what is timed and paused
    app(prog_name="pagemill")
