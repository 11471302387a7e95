"""A circuit breaker shared by every caption call of every concurrent invocation.

When the model API fails again and again (outage, bad key, overload), callers stop asking it for
a while instead of each spending its own retries: the breaker *opens* after
``failure_threshold`` failures within ``window_seconds``; while open, ``allow()`` says no without
any request; after ``cooldown_seconds`` exactly one caller gets a trial request (*half-open*); its
success closes the breaker, its failure opens it for another cool-down.

The state lives behind ``BreakerStore``. ``DynamoDbBreakerStore`` keeps it in one DynamoDB item
and changes it only with conditional UpdateItem calls, so concurrent Lambdas agree on it (one
winner for the trial, one for the opening). The local engine runs the same class against moto's
DynamoDB. ``InMemoryBreakerStore`` is the same state machine under a lock, for unit tests and a
single process.

A breaker that cannot reach its store fails *open* (calls are allowed, logged): the retry cap and
the per-document token budget still bound what a call can cost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from pagemill.errors import StoreUnavailable

log = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# The partition key of the captions table (string). Breaker items are "breaker#<name>",
# token budgets "budget#<document id>" (see pagemill.captions.budget).
TABLE_KEY = "pk"

# How many times record_failure re-reads and tries again when a concurrent writer changed the
# item between its read and its conditional write.
_MAX_RACES = 8


@dataclass(frozen=True)
class BreakerState:
    state: str = CLOSED
    failures: int = 0  # failures counted in the current window (closed state)
    window_start: float = 0.0  # epoch seconds when the current window began
    opened_at: float = 0.0  # epoch seconds when the breaker last opened
    trial_at: float = 0.0  # epoch seconds when the current half-open trial was granted


class BreakerStore(Protocol):
    """Shared breaker state. Each method is one atomic step of the state machine."""

    def read(self) -> BreakerState: ...

    def record_success(self) -> None:
        """Any state → closed, no failures counted."""

    def record_failure(self, now: float, *, window_seconds: float, threshold: int) -> BreakerState:
        """Closed: count the failure (a window older than ``window_seconds`` starts over) and
        open at ``threshold``. Half-open: the trial failed, open again from ``now``. Open: no
        change. Returns the state after the step."""

    def try_half_open(self, now: float, *, cooldown_seconds: float) -> bool:
        """Grant the trial: open for ``cooldown_seconds`` (or a trial granted that long ago and
        never reported) → half-open. True for exactly one of any number of concurrent callers."""


class CircuitBreaker:
    def __init__(
        self,
        store: BreakerStore,
        *,
        failure_threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if window_seconds <= 0 or cooldown_seconds < 0:
            raise ValueError("window_seconds must be positive and cooldown_seconds not negative")
        self.store = store
        self.failure_threshold = failure_threshold
        self.window_seconds = window_seconds
        self.cooldown_seconds = cooldown_seconds
        # Epoch seconds, not a monotonic clock: the state is compared across machines.
        self.clock = clock

    def allow(self) -> bool:
        """May the caller send a request now? Never sends one itself."""
        try:
            state = self.store.read()
            if state.state == CLOSED:
                return True
            now = self.clock()
            since = state.opened_at if state.state == OPEN else state.trial_at
            if now < since + self.cooldown_seconds:
                return False
            granted = self.store.try_half_open(now, cooldown_seconds=self.cooldown_seconds)
        except StoreUnavailable as exc:
            log.warning("circuit breaker store unavailable: allowing the call", extra={"error": str(exc)})
            return True
        if granted:
            log.info("circuit half-open: one trial request allowed")
        return granted

    def record_success(self) -> None:
        try:
            self.store.record_success()
        except StoreUnavailable as exc:
            log.warning("circuit breaker store unavailable: success not recorded", extra={"error": str(exc)})

    def record_failure(self) -> None:
        now = self.clock()
        try:
            state = self.store.record_failure(
                now, window_seconds=self.window_seconds, threshold=self.failure_threshold
            )
        except StoreUnavailable as exc:
            log.warning("circuit breaker store unavailable: failure not recorded", extra={"error": str(exc)})
            return
        # The store keeps microseconds: "opened by this failure" is "opened at this instant".
        if state.state == OPEN and abs(state.opened_at - now) < 1e-3:
            log.warning("circuit opened: model API failing", extra={
                "failures": state.failures, "cooldown_seconds": self.cooldown_seconds,
            })

    def state(self) -> BreakerState:
        return self.store.read()


class InMemoryBreakerStore:
    """The state machine in this process only (unit tests, a single local process)."""

    def __init__(self) -> None:
        self._state = BreakerState()
        self._lock = threading.Lock()

    def read(self) -> BreakerState:
        with self._lock:
            return self._state

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState()

    def record_failure(self, now: float, *, window_seconds: float, threshold: int) -> BreakerState:
        with self._lock:
            s = self._state
            if s.state == HALF_OPEN:
                s = replace(s, state=OPEN, opened_at=now)
            elif s.state == CLOSED:
                if s.failures and s.window_start > now - window_seconds:
                    s = replace(s, failures=s.failures + 1)
                else:
                    s = replace(s, failures=1, window_start=now)
                if s.failures >= threshold:
                    s = replace(s, state=OPEN, opened_at=now)
            self._state = s
            return s

    def try_half_open(self, now: float, *, cooldown_seconds: float) -> bool:
        with self._lock:
            s = self._state
            cutoff = now - cooldown_seconds
            if (s.state == OPEN and s.opened_at <= cutoff) or (s.state == HALF_OPEN and s.trial_at <= cutoff):
                self._state = replace(s, state=HALF_OPEN, trial_at=now)
                return True
            return False


class DynamoDbBreakerStore:
    """The state in one item of a DynamoDB table whose partition key is ``pk`` (string).

    Every change is a conditional UpdateItem on that item, so concurrent writers cannot both
    win a transition. ``client`` is a low-level ``boto3.client("dynamodb")`` built at the edge."""

    def __init__(self, table_name: str, key: str, client: Any) -> None:
        if not table_name:
            raise ValueError("the breaker needs a DynamoDB table name (PAGEMILL_CAPTIONS_TABLE)")
        self.table_name = table_name
        self.key = {TABLE_KEY: {"S": f"breaker#{key}"}}
        self.client = client

    def read(self) -> BreakerState:
        with dynamodb_errors(self.table_name):
            item = self.client.get_item(TableName=self.table_name, Key=self.key, ConsistentRead=True).get("Item")
        return _state_of(item)

    def record_success(self) -> None:
        # Conditional, so a success while closed with nothing counted writes nothing.
        self._update(
            "SET #st = :closed, failures = :zero, window_start = :zero",
            "attribute_exists(#pk) AND (#st <> :closed OR failures > :zero)",
            {":closed": _s(CLOSED), ":zero": _n(0)},
        )

    def record_failure(self, now: float, *, window_seconds: float, threshold: int) -> BreakerState:
        cutoff = now - window_seconds
        for _ in range(_MAX_RACES):
            # The common case in one write: closed, within the window → count it.
            counted = self._update(
                "ADD failures :one",
                "#st = :closed AND window_start > :cutoff AND failures > :zero",
                {":one": _n(1), ":zero": _n(0), ":closed": _s(CLOSED), ":cutoff": _n(cutoff)},
            )
            if counted is None:
                state = self.read()
                if state.state == OPEN:
                    return state  # a late failure of a request sent before the breaker opened
                if state.state == HALF_OPEN:
                    # The trial failed: open again, for a full cool-down from now.
                    reopened = self._update(
                        "SET #st = :open, opened_at = :now",
                        "#st = :half AND trial_at = :trial",
                        {":open": _s(OPEN), ":now": _n(now), ":half": _s(HALF_OPEN), ":trial": _n(state.trial_at)},
                    )
                    if reopened is not None:
                        return reopened
                    continue
                # Closed with nothing counted, an expired window, or no item yet: start a window.
                counted = self._update(
                    "SET #st = :closed, failures = :one, window_start = :now",
                    "attribute_not_exists(#pk) OR (#st = :closed AND (failures = :zero OR window_start <= :cutoff))",
                    {":closed": _s(CLOSED), ":one": _n(1), ":zero": _n(0), ":now": _n(now), ":cutoff": _n(cutoff)},
                )
                if counted is None:
                    continue
            if counted.failures < threshold:
                return counted
            # Only the writer that finds it still closed opens it (and is the one that logs it).
            opened = self._update(
                "SET #st = :open, opened_at = :now",
                "#st = :closed AND failures >= :threshold",
                {":open": _s(OPEN), ":now": _n(now), ":closed": _s(CLOSED), ":threshold": _n(threshold)},
            )
            return opened if opened is not None else self.read()
        # Writers kept overtaking each other; the failure goes uncounted, which only delays opening.
        log.warning("circuit breaker: failure not counted after repeated write conflicts")
        return self.read()

    def try_half_open(self, now: float, *, cooldown_seconds: float) -> bool:
        cutoff = now - cooldown_seconds
        granted = self._update(
            "SET #st = :half, trial_at = :now",
            "(#st = :open AND opened_at <= :cutoff) OR (#st = :half AND trial_at <= :cutoff)",
            {":half": _s(HALF_OPEN), ":open": _s(OPEN), ":now": _n(now), ":cutoff": _n(cutoff)},
        )
        return granted is not None

    def _update(self, expression: str, condition: str, values: dict[str, Any]) -> BreakerState | None:
        """One conditional UpdateItem; the new state, or None when the condition did not hold."""
        names = {"#pk": TABLE_KEY, "#st": "st"}
        used = {k: v for k, v in names.items() if k in expression or k in condition}
        with dynamodb_errors(self.table_name):
            try:
                answer = self.client.update_item(
                    TableName=self.table_name, Key=self.key, UpdateExpression=expression,
                    ConditionExpression=condition, ExpressionAttributeNames=used,
                    ExpressionAttributeValues=values, ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if is_condition_failure(exc):
                    return None
                raise
        return _state_of(answer.get("Attributes"))


def _state_of(item: dict[str, Any] | None) -> BreakerState:
    if not item:
        return BreakerState()
    return BreakerState(
        state=item.get("st", {}).get("S", CLOSED),
        failures=int(_num(item, "failures")),
        window_start=_num(item, "window_start"),
        opened_at=_num(item, "opened_at"),
        trial_at=_num(item, "trial_at"),
    )


def _num(item: dict[str, Any], name: str) -> float:
    value = item.get(name)
    return float(value["N"]) if value else 0.0


def _n(value: float) -> dict[str, str]:
    # Microsecond resolution: a timestamp read back compares equal to the one written.
    return {"N": str(value) if isinstance(value, int) else f"{value:.6f}"}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@contextmanager
def dynamodb_errors(table: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        if is_condition_failure(exc):
            raise
        code = exc.response.get("Error", {}).get("Code", "")
        raise StoreUnavailable(f"DynamoDB table {table} refused the request: {code}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"could not reach DynamoDB table {table}: {exc}") from exc
