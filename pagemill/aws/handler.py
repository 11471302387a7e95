"""What every Lambda handler does around its one call: Powertools' logger, tracer and metrics
(one of each per execution environment), the event parsed once into its typed payload, the
payload's identifying keys on every log line, and the counts of the result published as metrics."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from pagemill import metrics as metric_names
from pagemill.aws.clients import stage_context
from pagemill.pipeline.timings import record_map_item, span_since
from pagemill.records import dump, load

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()
metrics = Metrics()

P = TypeVar("P")
# A metric's value: the result's field of that name, or a constant (e.g. 1 per document).
MetricSource = str | int
Handler = Callable[[Any, "LambdaContext"], Any]


def lambda_handler(
    payload_type: type[P] | None = None, *, counts: Mapping[str, MetricSource] | None = None,
    units: Mapping[str, str] | None = None, state: str | None = None,
) -> Callable[[Callable[[P, LambdaContext], Any]], Handler]:
    """Wrap ``fn(payload, context)`` as a Lambda handler: the event is parsed into
    ``payload_type`` (passed as is without one); ``counts`` maps metric names to what is published;
    a completed invocation is timed as (a map item of) ``state`` for documents.timings: its span
    is the result's ``span``, or a map item's is recorded in S3 (pagemill.pipeline.timings)."""

    def wrap(fn: Callable[[P, LambdaContext], Any]) -> Handler:
        @functools.wraps(fn)
        def handler(event: dict[str, Any], context: LambdaContext) -> Any:
            started = time.time()
            payload = load(payload_type, event) if payload_type is not None else event
            logger.append_keys(**log_keys(payload))
            result = fn(payload, context)
            if state is not None:
                _time(state, payload, result, started)
            for name, source in (counts or {}).items():
                value = result[source] if isinstance(source, str) else source
                metrics.add_metric(name=name, unit=(units or {}).get(name, MetricUnit.Count), value=value)
            return result

        traced = tracer.capture_lambda_handler(handler)
        published = metrics.log_metrics(traced) if counts else traced
        return logger.inject_lambda_context(published, clear_state=True)

    return wrap


def _time(state: str, payload: Any, result: dict[str, Any], started: float) -> None:
    span = span_since(state, started)
    item = getattr(payload, "map_item", None)
    if item is None:
        result["span"] = dump(span)
    else:
        record_map_item(stage_context(), payload.document_id, item, span)


def log_keys(payload: Any) -> dict[str, Any]:
    """What identifies an invocation in its logs: the payload's own ``log_keys()``, else its
    document id."""
    if hasattr(payload, "log_keys"):
        return payload.log_keys()
    document_id = getattr(payload, "document_id", None)
    return {"document_id": document_id} if document_id else {}


def publish_failure_class(error_class: str) -> None:
    # Its own metric: a dimension on the invocation's metrics would split every one of them.
    with single_metric(name=metric_names.DOCUMENTS_FAILED_BY_CLASS, unit=MetricUnit.Count, value=1) as by_class:
        by_class.add_dimension(name=metric_names.ERROR_CLASS_DIMENSION, value=error_class)
