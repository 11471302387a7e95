"""What the stage tests share besides fixtures: names, settings, and inputs built the way the
state machine builds them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pagemill import storage
from pagemill.payloads import PlanInput
from pagemill.pipeline.context import StageContext
from pagemill.records import BatchSpec, SourceObject, load, load_list
from pagemill.settings import Settings
from pagemill_tools.sample import CatalogTruth

REGION = "us-east-1"
UPLOADS = "pm-uploads"
WORK = "pm-work"
TABLE = "pm-captions"
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:pagemill:catalog-1"
# Two batches of a six-page catalogue: the stages after ExtractBatch read more than one result.
SETTINGS = Settings(batch_pages=3, batch_cost=100.0, caption_batch_size=2, captions_table=TABLE)


@dataclass(frozen=True)
class Upload:
    source: SourceObject
    truth: CatalogTruth
    path: Path


def upload_pdf(s3: Any, path: Path, key: str) -> SourceObject:
    version = s3.put_object(Bucket=UPLOADS, Key=key, Body=path.read_bytes())["VersionId"]
    return SourceObject(bucket=UPLOADS, key=key, version_id=version)


def plan_input(source: SourceObject) -> PlanInput:
    # As the Plan state builds it: {"source": $.source, "execution_arn": $$.Execution.Id}
    return load(PlanInput, {"source": {"bucket": source.bucket, "key": source.key, "version_id": source.version_id},
                            "execution_arn": EXECUTION_ARN})


def manifest_items(ctx: StageContext, key: str) -> list[BatchSpec]:
    """The manifest's items, each as the ExtractPages map hands it to ExtractBatch."""
    return load_list(BatchSpec, storage.get_json(ctx.s3, ctx.work_bucket, key))


def with_settings(ctx: StageContext, **changes: Any) -> StageContext:
    return replace(ctx, settings=replace(ctx.settings, **changes))
