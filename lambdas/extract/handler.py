"""Plan and ExtractBatch: thin handlers over pagemill.pipeline.plan and .extract_batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pagemill import metrics as m
from pagemill.aws.clients import db_connection, stage_context
from pagemill.aws.handler import lambda_handler, metrics
from pagemill.payloads import PlanInput
from pagemill.pipeline.extract_batch import extract_batch as run_extract_batch
from pagemill.pipeline.plan import plan as run_plan
from pagemill.records import BatchSpec
from pagemill.storage import SourceCache

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# /tmp survives warm invocations: the next batch of the same document skips the download.
# Per process, because the local engine's workers share one /tmp.
_sources = SourceCache(Path(f"/tmp/pagemill-sources/{os.getpid()}"))


@lambda_handler(PlanInput, counts={m.DOCUMENTS_PLANNED: 1, m.PAGES_PLANNED: "page_count"}, state="Plan")
def plan(payload: PlanInput, context: LambdaContext) -> dict[str, Any]:
    return run_plan(stage_context(), db_connection(), payload)


@lambda_handler(BatchSpec, counts={m.PAGES_EXTRACTED: "pages", m.IMAGES_EXTRACTED: "images"}, state="ExtractPages")
def extract_batch(spec: BatchSpec, context: LambdaContext) -> dict[str, Any]:
    extracted = run_extract_batch(stage_context(), spec, _sources)
    if spec.only:  # it collected the document's images too, as CollectImages counts them
        metrics.add_metric(name=m.IMAGES_COLLECTED, unit=MetricUnit.Count, value=extracted["image_count"])
    return extracted
