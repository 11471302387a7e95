"""How far a document's execution got: pages extracted of the total, and the state it is in.

One implementation for the local engine's progress bars, ``pagemill status`` locally and
``pagemill status --aws``: pages are counted from the manifest and the batch result objects in
S3 (their keys carry the page range), the state from the execution history.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pagemill import keys, storage
from pagemill.errors import SourceMissing


@dataclass(frozen=True)
class Progress:
    page_count: int | None  # None until Plan has written the manifest
    pages_done: int
    batches_total: int | None = None  # None until Plan has written the manifest (or not read)
    batches_done: int = 0


def document_progress(
    s3: Any, bucket: str, document_id: str, *, since: datetime | None = None, page_count: int | None = None
) -> Progress:
    """``since``: count only batch results written from then on (an execution's start), so a
    re-run does not count the results an earlier attempt left behind. ``page_count``: already
    known (the manifest is not read again)."""
    batches_total = None
    if page_count is None:
        try:
            manifest = storage.get_json(s3, bucket, keys.manifest_key(document_id))
            page_count = sum(item["last_page"] - item["first_page"] + 1 for item in manifest)
            batches_total = len(manifest)
        except SourceMissing:
            pass
    # S3 listings give LastModified to the second.
    since = since.replace(microsecond=0) if since else None
    done = [
        keys.pages_in_batch_key(obj["Key"])
        for obj in storage.list_objects(s3, bucket, keys.batches_prefix(document_id))
        if since is None or obj["LastModified"] >= since
    ]
    return Progress(page_count=page_count, pages_done=sum(done), batches_total=batches_total, batches_done=len(done))


def read_history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution, newest first."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000, "reverseOrder": True}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    # Event ids grow with time; sorting makes the order certain whatever the service honoured.
    return sorted(events, key=lambda e: e["id"], reverse=True)


def current_state(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The state most recently entered and not exited (events newest first)."""
    exits: Counter[str] = Counter()
    for event in events:
        if event["type"].endswith("StateExited"):
            exits[event["stateExitedEventDetails"]["name"]] += 1
        elif event["type"].endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            if exits[name]:
                exits[name] -= 1
            else:
                return name
    return None


def visited(events: Iterable[Mapping[str, Any]], state: str) -> bool:
    return any(
        e["type"].endswith("StateEntered") and e["stateEnteredEventDetails"]["name"] == state for e in events
    )


def planned_document(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The document id Plan put in the state (``$.plan.document_id``), once Plan has exited."""
    return _state_output(events, "Plan", "plan").get("document_id")


def written(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What Write put in the state (``$.written``: counts, ``status`` succeeded or partial, the
    warnings' codes); empty until Write has exited."""
    return _state_output(events, "Write", "written")


def _state_output(events: Iterable[Mapping[str, Any]], state: str, path: str) -> dict[str, Any]:
    for event in events:
        if event["type"].endswith("StateExited") and event["stateExitedEventDetails"]["name"] == state:
            output = json.loads(event["stateExitedEventDetails"].get("output") or "{}")
            return output.get(path) or {}
    return {}
