"""Embeddings end to end, GPU route: the Enrich stage runs ecs:runTask.waitForTaskToken; locally
the container's worker runs as a process with the container overrides' environment, a real task
token and heartbeats, and completes the task with SendTaskSuccess."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from moto.ecs.models import EC2ContainerServiceBackend
from pgvector.psycopg import register_vector

from pagemill.clip.model import ClipModel
from pagemill.clip.preprocess import preprocess_bytes
from pagemill.settings import Settings
from pagemill_tools.engine.engine import EngineOptions, LocalEngine
from pagemill_tools.sample import make_catalog

pytestmark = pytest.mark.heavy(20)


@pytest.fixture(scope="module")
def gpu_engine(engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    # Every document with at least one image goes to the GPU service; the worker beats every
    # second and EmbedOnGpu gives up on a silent one after 3 (600/20 when deployed).
    options = EngineOptions(
        home=engine_home, database_url=module_database_url, workers=2,
        context={"gpu_min_images": 1, "gpu_heartbeat_seconds": 3, "gpu_worker_heartbeat_seconds": 1},
    )
    with LocalEngine(options) as running:
        yield running


def test_gpu_route_embeds_every_image_like_the_model_does(gpu_engine: LocalEngine, db, tmp_path: Path) -> None:
    # GIVEN a catalog, with every document routed to the GPU service
    catalog = tmp_path / "catalog.pdf"
    make_catalog(catalog, pages=10)
    # WHEN it runs
    run = gpu_engine.submit(catalog)
    gpu_engine.wait([run])
    # THEN the execution went through EmbedOnGpu (no Lambda embedding) and succeeded
    assert run.status == "SUCCEEDED", run
    visited = gpu_engine.visited_states(run.execution_arn)
    assert "EmbedOnGpu" in visited and "EmbedOnLambda" not in visited
    # AND the worker's answer carried the Embed state's span into the document's timings
    timings = db.execute("select timings from documents where id = %s", (run.document_id,)).fetchone()[0]
    assert timings["states"]["Embed"] > 0
    # AND each image row holds the vector the model gives that image's bytes, computed here apart
    model = ClipModel.load(gpu_engine.options.home / "clip-test-model")
    register_vector(db)
    rows = db.execute("select s3_key, embedding from images where document_id = %s", (run.document_id,)).fetchall()
    assert rows
    bucket = gpu_engine.deployment.bucket_name
    for key, vector in rows:
        assert vector is not None, key
        data = gpu_engine.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        expected = model.embed_images(preprocess_bytes(data, max_pixels=Settings().max_image_pixels)[None])[0]
        np.testing.assert_allclose(vector.to_numpy(), expected, atol=1e-5)


def test_a_worker_killed_mid_job_is_noticed_by_its_heartbeat_and_the_retry_finishes(
    gpu_engine: LocalEngine, db, tmp_path: Path
) -> None:
    # GIVEN the first GPU task's worker dies (SIGKILL: the instance went away) as soon as it starts
    assert gpu_engine.containers is not None
    run_task = gpu_engine.containers.run_task
    killed: list[int] = []

    def run_and_kill_the_first(backend: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        started = run_task(*args, **kwargs)
        if not killed:
            process = gpu_engine.containers.tasks[started[0]["taskArn"]][1]
            os.kill(process.pid, signal.SIGKILL)
            killed.append(process.pid)
        return started

    catalog = tmp_path / "catalog.pdf"
    truth = make_catalog(catalog, pages=6)
    with mock.patch.object(EC2ContainerServiceBackend, "run_task", run_and_kill_the_first):
        run = gpu_engine.submit(catalog)
        gpu_engine.wait([run])
    # THEN the silent task timed out, EmbedOnGpu ran again, and the document succeeded
    assert killed
    assert run.status == "SUCCEEDED", run
    history = gpu_engine.history(run.execution_arn)
    entered = [e for e in history if e["type"] == "TaskStateEntered"
               and e["stateEnteredEventDetails"]["name"] == "EmbedOnGpu"]
    assert len(entered) == 1  # a Retry stays in the state
    scheduled = [e for e in history if e["type"] == "TaskScheduled"
                 and e["taskScheduledEventDetails"]["resource"].startswith("runTask")]
    assert len(scheduled) == 2
    timed_out = [e for e in history if e["type"] == "TaskTimedOut"]
    assert len(timed_out) == 1
    # AND every distinct image is one row with an embedding: nothing lost, nothing twice
    rows = db.execute(
        "select count(*), count(distinct sha256), count(embedding) from images where document_id = %s",
        (run.document_id,),
    ).fetchone()
    assert rows == (truth.distinct_images, truth.distinct_images, truth.distinct_images)
