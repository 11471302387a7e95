"""Embeddings end to end, GPU route: the Enrich stage runs ecs:runTask.waitForTaskToken; locally
the container's worker runs as a process with the container overrides' environment, a real task
token and heartbeats, and completes the task with SendTaskSuccess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pgvector.psycopg import register_vector

from pagemill.clip.model import ClipModel
from pagemill.clip.preprocess import preprocess_bytes
from pagemill.local.engine import EngineOptions, LocalEngine
from pagemill.sample import make_catalog
from pagemill.settings import Settings


@pytest.fixture(scope="module")
def gpu_engine(engine_home: Path, module_database_url: str) -> Iterator[LocalEngine]:
    # Every document with at least one image goes to the GPU service.
    options = EngineOptions(home=engine_home, database_url=module_database_url, workers=2,
                            function_env={"PAGEMILL_GPU_MIN_IMAGES": "1"})
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
