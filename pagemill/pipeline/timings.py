"""Seconds spent in each state of the pipeline, for documents.timings (locally and on AWS alike).

Each stage's handler records when its invocation started and ended (``record_timing``, called by
pagemill.aws.handler.lambda_handler for the handlers given a ``state``), one small object per
state and map item under the document's timings prefix; Write turns them into wall-clock seconds
per state (first start to last end: a map's items overlap) for this execution, ignoring an earlier
run's. The GPU Embed task records its span at the key the state machine gives it (TIMING_KEY).
"""

from __future__ import annotations

import time
from typing import Any

from pagemill import keys, storage
from pagemill.pipeline.context import StageContext

# The states, in the order a document goes through them (the run summary's columns).
STATES = ("Plan", "ExtractPages", "CollectImages", "Embed", "EmbedChunks", "Captions", "Understand", "SpeakSummary",
          "Write")


def record_timing(ctx: StageContext, document_id: str, state: str, started: float, item: str | None = None) -> None:
    """``state`` (its map ``item``) ran from ``started`` (epoch seconds) until now."""
    record_span(ctx.s3, ctx.work_bucket, keys.timing_key(document_id, state, item), state, started)


def record_span(s3: Any, bucket: str, key: str, state: str, started: float) -> None:
    """The same record at a key given whole (the GPU worker is told its key by the state machine)."""
    storage.put_json(s3, bucket, key, {"state": state, "started": started, "ended": time.time()})


def state_seconds(ctx: StageContext, document_id: str, *, since: float | None) -> dict[str, float]:
    """Seconds per state of the runs recorded from ``since`` (epoch: the execution's start) on."""
    spans: dict[str, tuple[float, float]] = {}
    timing_keys = storage.list_keys(ctx.s3, ctx.work_bucket, keys.timings_prefix(document_id))
    for span in storage.get_json_all(ctx.s3, ctx.work_bucket, timing_keys):
        if since is not None and span["started"] < since:
            continue
        first, last = spans.get(span["state"], (span["started"], span["ended"]))
        spans[span["state"]] = (min(first, span["started"]), max(last, span["ended"]))
    ordered = sorted(spans, key=lambda s: STATES.index(s) if s in STATES else len(STATES))
    return {state: round(spans[state][1] - spans[state][0], 3) for state in ordered}
