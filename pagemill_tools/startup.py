"""The local engine imported fast, as `pagemill run` and `pagemill serve` import it.

Importing the engine (moto's models and its Step Functions interpreter, boto3, psycopg) makes
a few hundred thousand objects that live as long as the process. Collecting while they are
made frees next to nothing and took 0.3 of the 1.1 s those imports cost (bench/RESULTS.md,
"engine start-up"); frozen afterwards, they are also left out of every later full collection
of a long run. And moto's EC2 models, which its ECS and Batch models import and with them the
engine and the interpreter, list the regions at import with three new boto3 Sessions, each
loading botocore's endpoint data again (0.2-0.3 s): one Session serves the three.

Only the processes that run an engine import it so; the Lambda workers never import moto.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import boto3


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


def import_engine() -> None:
    """Import the local engine, fast (see the module's docstring); later imports of it are free."""
    with collection_paused():
        with mock.patch.object(boto3, "Session", lambda _shared=boto3.Session(): _shared):
            import moto.ec2.models  # noqa: F401 - its import-time region lists
        import pagemill_tools.engine.engine  # noqa: F401 - what a run needs, imported here
