"""The anthropic SDK client, and the one guarded way pagemill calls it.

``build_client`` makes the real SDK client from the settings: the Messages API with an API key
(the SDK itself honours ``ANTHROPIC_BASE_URL``) or Bedrock with the function's AWS credentials.
The SDK's own retries are off: ``call_tool`` retries itself, so that every failed attempt is
counted by the shared circuit breaker and every request first reserves from the token budget.

``call_tool`` never raises for model API trouble: it returns a ``ToolCall`` whose ``reason``
says why no answer came (circuit open, budget exhausted, key rejected, gave up after retries…).

The SDK is imported inside the functions, so that the Write stage can read caption results
(pagemill.captions.caption) without it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random as _random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pagemill.captions.breaker import CircuitBreaker
from pagemill.errors import PagemillError, StoreUnavailable

if TYPE_CHECKING:
    import anthropic

    from pagemill.captions.budget import TokenBudget
    from pagemill.settings import Settings

log = logging.getLogger(__name__)

# Skip reasons. Stable strings: they are counted per document (documents.caption_summary).
CIRCUIT_OPEN = "circuit open: model API failing"
BUDGET_EXHAUSTED = "token budget exhausted"
BUDGET_UNAVAILABLE = "token budget unavailable"
MALFORMED_ANSWER = "malformed answer"
OUT_OF_TIME = "no time left in this invocation"
# Not a failure but a choice of whoever deployed or ran it: a note, not a partial document.
NO_API_KEY = "no API key: set ANTHROPIC_API_KEY (or the captions secret on AWS)"

_PERMANENT = {
    400: "request rejected (400)",
    401: "API key rejected (401)",
    402: "billing problem: payment required (402)",
    403: "permission denied (403)",
    404: "model or endpoint not found (404)",
    413: "request too large (413)",
}


class CaptionsUnavailable(PagemillError):
    """Captions cannot run at all (no API key, say): every image is skipped with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def build_client(
    settings: Settings, *, api_key: str | None = None, base_url: str | None = None
) -> anthropic.Anthropic | anthropic.AnthropicBedrock:
    """The SDK client for ``settings.caption_provider``.

    "anthropic" needs ``api_key`` (on AWS read from Secrets Manager at the edge, locally from
    ANTHROPIC_API_KEY); without one it raises CaptionsUnavailable. "bedrock" signs with the
    ambient AWS credentials and region (AWS_REGION)."""
    import anthropic

    timeout = settings.caption_timeout_seconds
    if settings.caption_provider == "bedrock":
        return anthropic.AnthropicBedrock(max_retries=0, timeout=timeout, base_url=base_url)
    if not api_key:
        raise CaptionsUnavailable(NO_API_KEY)
    return anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays cannot be negative")

    def backoff(self, attempt: int, random: Callable[[], float]) -> float:
        """Exponential backoff with full jitter before attempt ``attempt + 1``."""
        return random() * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


@dataclass(frozen=True)
class ToolCall:
    """What one guarded call came to: the tool's input, or the reason there is none."""

    tool_input: dict[str, Any] | None
    reason: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0  # requests actually sent
    stop_reason: str | None = None


def call_tool(
    client: Any,
    request: Mapping[str, Any],
    *,
    tool_name: str,
    breaker: CircuitBreaker,
    budget: TokenBudget | None,
    reserve_tokens: int,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    random: Callable[[], float] = _random.random,
    time_left: Callable[[], float] | None = None,
) -> ToolCall:
    """Send ``request`` (``messages.create`` keyword arguments that force tool ``tool_name``)
    with retries, the breaker and the budget; return the tool_use block's input.

    Per attempt: the breaker must allow it (else CIRCUIT_OPEN, no request), the budget must
    grant ``reserve_tokens`` (else BUDGET_EXHAUSTED, no request). 429 waits ``retry-after``
    (capped at ``policy.max_delay``); 5xx/529, timeouts and connection errors back off with full
    jitter; other 4xx stop at once. Every failure is reported to the breaker, every answer too.
    ``time_left()`` (seconds left to the caller, e.g. a Lambda's) stops retrying in time."""
    import anthropic

    timeout = _timeout_of(client)
    requests = 0
    last = ""
    for attempt in range(1, policy.max_attempts + 1):
        if not breaker.allow():
            return ToolCall(None, CIRCUIT_OPEN, requests=requests)
        try:
            granted = budget is None or budget.reserve(reserve_tokens)
        except StoreUnavailable as exc:
            log.warning("token budget unavailable: call skipped", extra={"error": str(exc)})
            return ToolCall(None, BUDGET_UNAVAILABLE, requests=requests)
        if not granted:
            return ToolCall(None, BUDGET_EXHAUSTED, requests=requests)
        requests += 1
        try:
            try:
                response = client.messages.create(**request)
            except BaseException:
                _settle(budget, reserve_tokens, 0, 0)
                raise
        except anthropic.APIStatusError as exc:
            breaker.record_failure()
            last, delay = _classify(exc, attempt, policy, random)
            if delay is None:
                log.warning("model API refused the request", extra={
                    "status": exc.status_code, "api_message": exc.api_message, "request_id": exc.request_id,
                })
                return ToolCall(None, last, requests=requests)
        except anthropic.APITimeoutError:
            breaker.record_failure()
            last, delay = f"timed out after {timeout:g}s" if timeout else "timed out", policy.backoff(attempt, random)
        except anthropic.APIConnectionError as exc:
            breaker.record_failure()
            last, delay = f"connection failed: {exc}", policy.backoff(attempt, random)
        except (anthropic.APIResponseValidationError, json.JSONDecodeError) as exc:
            # Not an answer at all (a cut or garbled body): the API side is unwell, retrying
            # the same request would pay for it again.
            breaker.record_failure()
            log.warning("model API sent an unreadable response", extra={"error": str(exc)[:200]})
            return ToolCall(None, f"{MALFORMED_ANSWER}: unreadable response body", requests=requests)
        else:
            breaker.record_success()
            input_tokens, output_tokens = _usage(response)
            _settle(budget, reserve_tokens, input_tokens, output_tokens)
            tool_input = _tool_input(response, tool_name)
            return ToolCall(
                tool_input, None if tool_input is not None else MALFORMED_ANSWER,
                input_tokens=input_tokens, output_tokens=output_tokens, requests=requests,
                stop_reason=getattr(response, "stop_reason", None),
            )
        if attempt == policy.max_attempts:
            break
        if time_left is not None and time_left() < delay + (timeout or 0.0):
            return ToolCall(None, f"{OUT_OF_TIME} (last attempt: {last})", requests=requests)
        log.info("model API call failed, retrying", extra={
            "attempt": attempt, "reason": last, "delay": round(delay, 3),
        })
        sleep(delay)
    return ToolCall(None, f"gave up after {policy.max_attempts} attempts: {last}", requests=requests)


def _classify(
    exc: anthropic.APIStatusError, attempt: int, policy: RetryPolicy, random: Callable[[], float]
) -> tuple[str, float | None]:
    """(reason, delay before the next attempt); delay None: do not retry."""
    code = exc.status_code
    if code == 429:
        after = retry_after_seconds(exc.response.headers)
        delay = policy.backoff(attempt, random) if after is None else after
        return "rate limited (429)", min(delay, policy.max_delay)
    if code >= 500 or code in (408, 409):
        name = "API overloaded (529)" if code == 529 or exc.type == "overloaded_error" else f"server error ({code})"
        return name, policy.backoff(attempt, random)
    reason = _PERMANENT.get(code, f"request rejected ({code})")
    if code == 400 and exc.api_message:
        reason = f"{reason}: {exc.api_message[:160]}"
    return reason, None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, ``retry-after`` in seconds or an HTTP date."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    # Cache writes and reads are billed input too.
    cached = (getattr(usage, "cache_creation_input_tokens", None) or 0) + (
        getattr(usage, "cache_read_input_tokens", None) or 0
    )
    return int(usage.input_tokens or 0) + int(cached), int(usage.output_tokens or 0)


def _tool_input(response: Any, tool_name: str) -> dict[str, Any] | None:
    for block in getattr(response, "content", None) or []:
        if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == tool_name:
            value = getattr(block, "input", None)
            return value if isinstance(value, dict) else None
    return None


def _settle(budget: TokenBudget | None, reserved: int, input_tokens: int, output_tokens: int) -> None:
    if budget is None:
        return
    try:
        budget.settle(reserved, input_tokens=input_tokens, output_tokens=output_tokens)
    except StoreUnavailable as exc:
        log.warning("token budget unavailable: usage not recorded", extra={
            "error": str(exc), "input_tokens": input_tokens, "output_tokens": output_tokens,
        })


def _timeout_of(client: Any) -> float | None:
    timeout = getattr(client, "timeout", None)
    if isinstance(timeout, (int, float)) and math.isfinite(timeout):
        return float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if isinstance(read, (int, float)) else None


def estimate_text_tokens(text: str) -> int:
    """About 4 characters a token: good enough for budgets and reservations."""
    return math.ceil(len(text) / 4)
