"""Seconds spent in each state of the pipeline, for documents.timings (locally and on AWS alike).

Each stage's handler records when its invocation started and ended (``record_timing``, called by
pagemill.aws.handler.lambda_handler for the handlers given a ``state``), one small object per
state and map item under the document's timings prefix; Write turns them into wall-clock seconds
per state (first start to last end: a map's items overlap) for this execution, ignoring an earlier
run's. The GPU Embed task is not a Lambda and is not timed.
"""

from __future__ import annotations

import time

from pagemill import keys, storage
from pagemill.pipeline.context import StageContext

# The states, in the order a document goes through them (the run summary's columns).
STATES = ("Plan", "ExtractPages", "CollectImages", "Embed", "EmbedChunks", "Captions", "Understand", "SpeakSummary",
          "Write")


def record_timing(ctx: StageContext, document_id: str, state: str, started: float, item: str | None = None) -> None:
    """``state`` (its map ``item``) ran from ``started`` (epoch seconds) until now."""
    storage.put_json(ctx.s3, ctx.work_bucket, keys.timing_key(document_id, state, item),
                     {"state": state, "started": started, "ended": time.time()})


def state_seconds(ctx: StageContext, document_id: str, *, since: float | None) -> dict[str, float]:
    """Seconds per state of the runs recorded from ``since`` (epoch: the execution's start) on."""
    spans: dict[str, tuple[float, float]] = {}
    for key in storage.list_keys(ctx.s3, ctx.work_bucket, keys.timings_prefix(document_id)):
        span = storage.get_json(ctx.s3, ctx.work_bucket, key)
        if since is not None and span["started"] < since:
            continue
        first, last = spans.get(span["state"], (span["started"], span["ended"]))
        spans[span["state"]] = (min(first, span["started"]), max(last, span["ended"]))
    ordered = sorted(spans, key=lambda s: STATES.index(s) if s in STATES else len(STATES))
    return {state: round(spans[state][1] - spans[state][0], 3) for state in ordered}
