"""Embeddings end to end, CPU route: a document with few images is embedded in the Embed Lambda
and Write stores one L2-normalized vector(512) per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pgvector.psycopg import register_vector

from pagemill.search.images import nearest_images
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.sample import make_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("emb") / "catalog.pdf"
    make_catalog(path, pages=12)
    return path


def vectors(db, document_id: str) -> dict[str, np.ndarray]:
    register_vector(db)
    rows = db.execute("select sha256, embedding from images where document_id = %s", (document_id,)).fetchall()
    return {sha: (None if vec is None else vec.to_numpy()) for sha, vec in rows}


def test_cpu_lambda_path_embeds_every_image(engine: LocalEngine, db, catalog: Path) -> None:
    # GIVEN a catalog with fewer images than the GPU threshold
    run = engine.submit(catalog)
    engine.wait([run])
    # THEN Enrich took the Lambda route and every image row has a unit vector
    assert run.status == "SUCCEEDED"
    visited = engine.visited_states(run.execution_arn)
    assert "EmbedOnLambda" in visited and "EmbedOnGpu" not in visited
    found = vectors(db, run.document_id)
    assert found and all(v is not None for v in found.values())
    for v in found.values():
        assert v.shape == (512,) and abs(np.linalg.norm(v) - 1) < 1e-4
    # AND distinct images have distinct vectors
    matrix = np.stack(list(found.values()))
    assert len({tuple(np.round(r, 5)) for r in matrix}) == len(found)
    # AND searching with an image's own vector ranks it first
    register_vector(db)
    sha, probe = next(iter(found.items()))
    hits = nearest_images(db, probe.astype(np.float32), limit=3)
    top = db.execute("select sha256 from images where document_id = %s and image_no = %s",
                     (hits[0].document_id, hits[0].image_no)).fetchone()[0]
    assert top == sha and hits[0].score > 0.999
    assert hits[0].score >= hits[1].score >= hits[2].score
