"""`pagemill serve`: the HTTP API and console over the local engine, in one process. Uploads go
into the engine's bucket and start executions on its state machine, as on AWS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pagemill.api.backend import Backend
from pagemill.db.connect import connect
from pagemill.settings import Settings
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.searching import clip_model, text_embedder


def local_backend(engine: LocalEngine, database_url: str, settings: Settings) -> Backend:
    assert engine.deployment is not None

    @contextmanager
    def connection() -> Iterator[Any]:
        # One per request: the server answers from a thread pool.
        with connect(database_url, autocommit=True) as conn:
            yield conn

    return Backend(
        s3=engine.s3, sfn=engine.sfn, bucket=engine.deployment.bucket_name,
        state_machine_arn=engine.state_machine_arn, connection=connection,
        embed_text=text_encoder(settings, engine.options.home), text_embedder=text_embedder(settings),
        max_upload_bytes=settings.max_bytes, max_source_bytes=settings.max_bytes,
        redrive_executions=False, where="local",
    )


STOPPED = "pagemill serve stopped before this document finished; upload it again"


def stop_unfinished(engine: LocalEngine, database_url: str) -> list[str]:
    """At shutdown, as `pagemill run` on Ctrl-C: the documents this engine is still running are
    cancelled with the reason (a Write in flight commits first or not at all) and their executions
    stopped; the engine, its bucket and executions go with the process. Returns their ids."""
    from pagemill.db.documents import cancel_execution

    running = engine.sfn.list_executions(stateMachineArn=engine.state_machine_arn, statusFilter="RUNNING")
    stopped = []
    with connect(database_url, autocommit=True) as conn:
        for execution in running["executions"]:
            arn = execution["executionArn"]
            if document_id := cancel_execution(conn, arn, STOPPED):
                stopped.append(document_id)
            engine.sfn.stop_execution(executionArn=arn, error="Cancelled", cause=STOPPED)
    return stopped


def text_encoder(settings: Settings, home: Path) -> Callable[[str], np.ndarray]:
    """The model the local engine embeds with (a real export if PAGEMILL_CLIP_DIR names one),
    loaded at the first search."""

    @lru_cache(maxsize=1)
    def model() -> Any:
        return clip_model(settings, home)

    return lambda text: model().embed_texts([text])[0]
