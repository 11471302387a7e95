"""The per-document token budget: input plus output tokens that captions and document
understanding may spend on one document, shared by every concurrent invocation for it.

A call first *reserves* an upper bound of what it can cost (the image's tokens, the prompt and
``max_tokens``); the reservation succeeds only if it keeps the total within the limit, so
concurrent callers cannot overshoot it together. After the call, ``settle`` replaces the
reservation with the tokens the response reports (or releases it when nothing was billed).

``DynamoDbTokenBudget`` keeps the counters in one item per document of the captions table
(atomic ADD with a condition); ``InMemoryTokenBudget`` is the same in this process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from pagemill.captions.breaker import TABLE_KEY, dynamodb_errors, is_condition_failure

# Budget items expire on their own (enable TTL on this attribute); a week outlives any execution.
TTL_ATTRIBUTE = "expires_at"
_DEFAULT_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    reserved: int = 0  # held by calls in flight
    calls: int = 0  # responses received

    @property
    def spent(self) -> int:
        return self.input_tokens + self.output_tokens


class TokenBudget(Protocol):
    limit: int

    def reserve(self, tokens: int) -> bool:
        """Hold ``tokens`` if spent + held + tokens stays within the limit; False otherwise."""

    def settle(self, reserved: int, *, input_tokens: int, output_tokens: int) -> None:
        """Release a reservation and record what the call actually used (zero: nothing billed)."""

    def usage(self) -> TokenUsage: ...


class InMemoryTokenBudget:
    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("a token budget cannot be negative")
        self.limit = limit
        self._lock = threading.Lock()
        self._usage = TokenUsage()

    def reserve(self, tokens: int) -> bool:
        with self._lock:
            u = self._usage
            if u.spent + u.reserved + tokens > self.limit:
                return False
            self._usage = TokenUsage(u.input_tokens, u.output_tokens, u.reserved + tokens, u.calls)
            return True

    def settle(self, reserved: int, *, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            u = self._usage
            billed = 1 if input_tokens or output_tokens else 0
            self._usage = TokenUsage(
                u.input_tokens + input_tokens, u.output_tokens + output_tokens, u.reserved - reserved, u.calls + billed
            )

    def usage(self) -> TokenUsage:
        with self._lock:
            return self._usage


class DynamoDbTokenBudget:
    """One item per document, ``pk = "budget#<document id>"``, with the attributes ``used``
    (spent + reserved), ``input_tokens``, ``output_tokens``, ``calls`` and ``expires_at``."""

    def __init__(
        self,
        table_name: str,
        document_id: str,
        limit: int,
        client: Any,
        *,
        ttl_seconds: int = _DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table_name:
            raise ValueError("the token budget needs a DynamoDB table name (PAGEMILL_CAPTIONS_TABLE)")
        if limit < 0:
            raise ValueError("a token budget cannot be negative")
        self.table_name = table_name
        self.limit = limit
        self.key = {TABLE_KEY: {"S": f"budget#{document_id}"}}
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def reserve(self, tokens: int) -> bool:
        room = self.limit - tokens  # DynamoDB conditions compare, they do not add
        if room < 0:
            return False
        with dynamodb_errors(self.table_name):
            try:
                self.client.update_item(
                    TableName=self.table_name, Key=self.key,
                    UpdateExpression="ADD used :tokens SET #ttl = :expires",
                    ConditionExpression="attribute_not_exists(used) OR used <= :room",
                    ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={
                        ":tokens": _n(tokens), ":room": _n(room), ":expires": _n(self._expires()),
                    },
                )
            except ClientError as exc:
                if is_condition_failure(exc):
                    return False
                raise
        return True

    def settle(self, reserved: int, *, input_tokens: int, output_tokens: int) -> None:
        billed = 1 if input_tokens or output_tokens else 0
        with dynamodb_errors(self.table_name):
            self.client.update_item(
                TableName=self.table_name, Key=self.key,
                UpdateExpression=(
                    "ADD used :delta, input_tokens :in, output_tokens :out, calls :calls SET #ttl = :expires"
                ),
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":delta": _n(input_tokens + output_tokens - reserved), ":in": _n(input_tokens),
                    ":out": _n(output_tokens), ":calls": _n(billed), ":expires": _n(self._expires()),
                },
            )

    def usage(self) -> TokenUsage:
        with dynamodb_errors(self.table_name):
            item = self.client.get_item(TableName=self.table_name, Key=self.key, ConsistentRead=True).get("Item") or {}

        def number(name: str) -> int:
            return int(item[name]["N"]) if name in item else 0

        spent = number("input_tokens") + number("output_tokens")
        return TokenUsage(
            input_tokens=number("input_tokens"), output_tokens=number("output_tokens"),
            reserved=number("used") - spent, calls=number("calls"),
        )

    def _expires(self) -> int:
        return int(self.clock()) + self.ttl_seconds


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}
