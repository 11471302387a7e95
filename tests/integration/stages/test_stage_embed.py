"""Embed (the CPU path) on its own: the image list → one unit vector per image in S3."""

from __future__ import annotations

from typing import Any

import numpy as np

from pagemill import keys
from pagemill.clip.embed import load_embeddings
from pagemill.clip.model import ClipModel
from pagemill.payloads import DocumentInput, EmbedInput
from pagemill.pipeline.context import StageContext
from pagemill.pipeline.embed import embed
from pagemill.records import load
from tests.support.stages import Upload


def test_embed_writes_one_unit_vector_per_distinct_image(
    ctx: StageContext, clip: ClipModel, document: DocumentInput, collected: dict[str, Any], upload: Upload
) -> None:
    # GIVEN the catalogue's collected images, as the Embed state passes them
    payload = load(EmbedInput, {"document_id": document.document_id, "images_key": collected["images_key"]})
    # WHEN they are embedded with the CLIP model
    out = embed(ctx, clip, payload)
    # THEN the index under the document's embeddings prefix lists each image once, with a unit vector
    assert out["index_key"].startswith(keys.embeddings_prefix(payload.document_id))
    vectors = load_embeddings(ctx.s3, ctx.work_bucket, out["index_key"])
    assert sorted(vectors) == sorted(set(upload.truth.image_hashes)) and out["count"] == len(vectors)
    for vector in vectors.values():
        assert vector.shape == (512,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-3)

