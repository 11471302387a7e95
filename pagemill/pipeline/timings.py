"""Seconds spent in each state of the pipeline, for documents.timings (locally and on AWS alike).

Each timed stage's handler (pagemill.aws.handler.lambda_handler given a ``state``) notes when its
invocation started and ended, a span. Where the state machine keeps the state's result (Plan,
ExtractOnlyBatch, CollectImages, the Enrich branches, the GPU task's answer), the span travels in
the result and the state machine hands them all to Write: no S3 request for them. (A document of
one batch has no CollectImages state: ExtractOnlyBatch collects its images within its
ExtractPages span.) A map discards its items' results (ExtractPages' batches, CaptionImages'), so
a map item's span is one small object under the document's timings prefix, which Write lists
only for a document that had map items. Write turns the spans into wall-clock seconds per state (first start to last end: a map's
items overlap) for this execution, ignoring an earlier run's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pagemill import keys, storage
from pagemill.pipeline.context import StageContext
from pagemill.records import StateSpan, dump, load

# The states, in the order a document goes through them (the run summary's columns).
STATES = ("Plan", "ExtractPages", "CollectImages", "Embed", "EmbedChunks", "Captions", "Understand", "SpeakSummary",
          "Write")


def in_pipeline_order(states: Iterable[str]) -> list[str]:
    """The states in the order a document goes through them (unknown ones last). Needed again
    after a round trip through documents.timings: jsonb keeps keys shortest first."""
    return sorted(set(states), key=lambda s: STATES.index(s) if s in STATES else len(STATES))


def span_since(state: str, started: float) -> StateSpan:
    """``state`` ran from ``started`` (epoch seconds) until now."""
    return StateSpan(state, started, time.time())


def record_map_item(ctx: StageContext, document_id: str, item: str, span: StateSpan) -> None:
    """A map item's span, kept in S3 (its map discards the item's result)."""
    storage.put_json(ctx.s3, ctx.work_bucket, keys.timing_key(document_id, span.state, item), dump(span))


def state_seconds(
    ctx: StageContext, document_id: str, carried: Iterable[StateSpan | None], *, map_items: bool, since: float | None
) -> dict[str, float]:
    """Seconds per state of this run: the spans its results ``carried``, and when the document had
    ``map_items``, the map items' spans recorded from ``since`` (epoch: the execution's start) on."""
    found = [span for span in carried if span is not None]
    if map_items:
        timing_keys = storage.list_keys(ctx.s3, ctx.work_bucket, keys.timings_prefix(document_id))
        recorded = (load(StateSpan, item) for item in storage.get_json_all(ctx.s3, ctx.work_bucket, timing_keys))
        found.extend(span for span in recorded if since is None or span.started >= since)
    spans: dict[str, tuple[float, float]] = {}
    for span in found:
        first, last = spans.get(span.state, (span.started, span.ended))
        spans[span.state] = (min(first, span.started), max(last, span.ended))
    return {state: round(spans[state][1] - spans[state][0], 3) for state in in_pipeline_order(spans)}
