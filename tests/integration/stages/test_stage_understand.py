"""UnderstandDocument on its own: the document's markdown → what the model says it is, in S3."""

from __future__ import annotations

from pagemill import keys, storage
from pagemill.payloads import DocumentInput
from pagemill.pipeline.context import ModelAccess, StageContext
from pagemill.pipeline.understand import skip_understanding, understand
from pagemill.records import SKIPPED, UNDERSTOOD, Understanding, load
from tests.support.fake_anthropic import FakeAnthropic, tool_answer
from tests.support.stages import Upload

ANSWER = {"document_type": "product_catalog", "summary": "A furniture catalogue with prices.",
          "products": [{"name": "Oslo sofa", "attributes": {"price": "EUR 1,299"}, "page": 2}]}


def test_understand_stores_the_models_answer(
    ctx: StageContext, document: DocumentInput, model: ModelAccess, fake_anthropic: FakeAnthropic, upload: Upload
) -> None:
    # GIVEN an extracted catalogue and a model that answers with the understanding tool
    fake_anthropic.enqueue(tool_answer(ANSWER, input_tokens=900, output_tokens=120))
    # WHEN the document is understood
    out = understand(ctx, document, model)
    # THEN the answer is stored at the document's understanding key
    assert out["understanding_key"] == keys.understanding_key(document.document_id)
    stored = load(Understanding, storage.get_json(ctx.s3, ctx.work_bucket, out["understanding_key"]))
    assert (stored.status, stored.doc_type, [p.name for p in stored.products]) == (
        UNDERSTOOD, "product_catalog", ["Oslo sofa"])
    assert (out["products"], out["input_tokens"], out["output_tokens"]) == (1, 900, 120)
    # AND the model read the catalogue's pages (its headings were in the request)
    [request] = fake_anthropic.requests
    assert all(heading in request.text for heading in upload.truth.headings)


def test_skip_understanding_stores_the_reason(ctx: StageContext, document: DocumentInput) -> None:
    # WHEN the model cannot be used THEN the skip is stored like an answer, with the reason
    out = skip_understanding(ctx, document, "no API key")
    stored = load(Understanding, storage.get_json(ctx.s3, ctx.work_bucket, out["understanding_key"]))
    assert (stored.status, stored.reason, out["status"]) == (SKIPPED, "no API key", SKIPPED)
