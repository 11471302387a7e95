"""CollectImages, Embed (CPU ONNX Runtime) and EmbedChunks: thin handlers over
pagemill.pipeline.collect_images, .embed and .embed_chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pagemill import metrics as m
from pagemill.aws.clients import clip_model, stage_context, text_embedder
from pagemill.aws.handler import lambda_handler
from pagemill.payloads import DocumentInput, EmbedInput
from pagemill.pipeline.collect_images import collect_images as run_collect_images
from pagemill.pipeline.embed import embed as run_embed
from pagemill.pipeline.embed_chunks import embed_chunks as run_embed_chunks

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@lambda_handler(DocumentInput, counts={m.IMAGES_COLLECTED: "image_count"}, state="CollectImages")
def collect_images(payload: DocumentInput, context: LambdaContext) -> dict[str, Any]:
    return run_collect_images(stage_context(), payload)


@lambda_handler(EmbedInput, counts={m.IMAGES_EMBEDDED: "count"}, state="Embed")
def embed(payload: EmbedInput, context: LambdaContext) -> dict[str, Any]:
    return run_embed(stage_context(), clip_model(), payload)


@lambda_handler(DocumentInput, counts={m.CHUNKS_EMBEDDED: "chunks"}, state="EmbedChunks")
def embed_chunks(payload: DocumentInput, context: LambdaContext) -> dict[str, Any]:
    return run_embed_chunks(stage_context(), payload, text_embedder(payload.document_id))
