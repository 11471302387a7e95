"""The circuit breaker's state machine and the token budget, in memory with an injected clock.
(The same state machine on DynamoDB, under concurrency, is in tests/integration/test_captions.py.)"""

from __future__ import annotations

import threading

import pytest

from pagemill.captions.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    InMemoryBreakerStore,
)
from pagemill.captions.budget import InMemoryTokenBudget
from pagemill.captions.client import RetryPolicy, retry_after_seconds


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def breaker(clock: Clock, *, threshold: int = 3, window: float = 60.0, cooldown: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(
        InMemoryBreakerStore(), failure_threshold=threshold, window_seconds=window, cooldown_seconds=cooldown,
        clock=clock,
    )


def test_closed_breaker_allows_and_opens_at_the_threshold() -> None:
    # GIVEN a closed breaker with a threshold of 3
    clock = Clock()
    b = breaker(clock)
    assert b.allow()

    # WHEN 2 failures happen, THEN it still allows; WHEN the 3rd happens, THEN it opens
    b.record_failure()
    b.record_failure()
    assert b.allow() and b.state().state == CLOSED and b.state().failures == 2
    b.record_failure()
    assert b.state().state == OPEN
    assert not b.allow()


def test_failures_outside_the_window_do_not_add_up() -> None:
    # GIVEN two failures, then a pause longer than the window
    clock = Clock()
    b = breaker(clock, threshold=3, window=60)
    b.record_failure()
    b.record_failure()
    clock.advance(61)

    # WHEN two more failures happen
    b.record_failure()
    b.record_failure()

    # THEN only the new window's failures count: still closed
    assert b.state().state == CLOSED
    assert b.state().failures == 2
    assert b.allow()


def test_a_success_closes_and_forgets_failures() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record_failure()
    b.record_failure()
    b.record_success()
    assert b.state().failures == 0
    b.record_failure()
    b.record_failure()
    assert b.state().state == CLOSED


def test_open_breaker_refuses_until_the_cooldown_then_grants_one_trial() -> None:
    # GIVEN an open breaker with a 30 s cool-down
    clock = Clock()
    b = breaker(clock, threshold=1, cooldown=30)
    b.record_failure()

    # WHEN asked during the cool-down THEN no
    clock.advance(29)
    assert not b.allow()

    # WHEN asked after it THEN exactly one caller gets the trial; the others get no
    clock.advance(2)
    answers = [b.allow() for _ in range(5)]
    assert answers == [True, False, False, False, False]
    assert b.state().state == HALF_OPEN


def test_trial_success_closes_and_trial_failure_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, cooldown=30)

    # GIVEN a trial that fails
    b.record_failure()
    clock.advance(31)
    assert b.allow()
    b.record_failure()
    # THEN it is open again, counted from the trial's failure
    assert b.state().state == OPEN
    clock.advance(29)
    assert not b.allow()

    # GIVEN the next trial, which succeeds THEN the breaker is closed for everyone
    clock.advance(2)
    assert b.allow()
    b.record_success()
    assert b.state().state == CLOSED
    assert all(b.allow() for _ in range(3))


def test_a_trial_that_never_reports_is_granted_again_after_a_cooldown() -> None:
    # GIVEN a half-open breaker whose trial caller died without reporting
    clock = Clock()
    b = breaker(clock, threshold=1, cooldown=30)
    b.record_failure()
    clock.advance(31)
    assert b.allow()

    # WHEN another cool-down passes THEN one new trial is granted
    clock.advance(10)
    assert not b.allow()
    clock.advance(21)
    assert b.allow()
    assert not b.allow()


def test_late_failures_while_open_do_not_extend_the_cooldown() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, cooldown=30)
    b.record_failure()
    clock.advance(20)
    b.record_failure()  # a request sent before the breaker opened
    clock.advance(11)
    assert b.allow()


def test_in_memory_breaker_grants_one_trial_among_threads() -> None:
    # GIVEN an open breaker past its cool-down and 16 threads asking at once
    clock = Clock()
    b = breaker(clock, threshold=1, cooldown=30)
    b.record_failure()
    clock.advance(31)
    start = threading.Barrier(16)
    answers: list[bool] = []

    def ask() -> None:
        start.wait()
        answers.append(b.allow())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # THEN exactly one of them may send the trial request
    assert sorted(answers) == [False] * 15 + [True]


def test_breaker_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(InMemoryBreakerStore(), failure_threshold=0, window_seconds=1, cooldown_seconds=1)


# --- token budget --------------------------------------------------------------------------


def test_budget_reserves_within_the_limit_and_settles_to_actual_usage() -> None:
    # GIVEN a budget of 1000 tokens
    budget = InMemoryTokenBudget(1000)

    # WHEN a call reserves 600 THEN a second reservation of 600 is refused while it is in flight
    assert budget.reserve(600)
    assert not budget.reserve(600)

    # WHEN the first call settles at 300 tokens THEN 600 fits again
    budget.settle(600, input_tokens=250, output_tokens=50)
    usage = budget.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.reserved, usage.calls) == (250, 50, 0, 1)
    assert budget.reserve(600)
    assert not budget.reserve(101)


def test_budget_released_reservation_counts_no_call() -> None:
    budget = InMemoryTokenBudget(100)
    assert budget.reserve(100)
    budget.settle(100, input_tokens=0, output_tokens=0)
    assert budget.usage().calls == 0
    assert budget.usage().reserved == 0
    assert budget.reserve(100)


# --- retry timing --------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=5.0)
    assert [policy.backoff(n, lambda: 1.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(3, lambda: 0.25) == 1.0


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None


# --- settings ------------------------------------------------------------------------------


def test_caption_settings_come_from_the_environment_and_are_validated() -> None:
    from pagemill.settings import Settings

    settings = Settings.from_env({
        "PAGEMILL_CAPTION_PROVIDER": "bedrock", "PAGEMILL_CAPTION_TIMEOUT_SECONDS": "12",
        "PAGEMILL_BREAKER_FAILURE_THRESHOLD": "3", "PAGEMILL_CAPTIONS_TABLE": "captions",
    })
    assert (settings.caption_provider, settings.caption_timeout_seconds) == ("bedrock", 12.0)
    assert (settings.breaker_failure_threshold, settings.captions_table) == (3, "captions")
    for name, value in [
        ("PAGEMILL_CAPTION_PROVIDER", "openai"), ("PAGEMILL_CAPTION_MAX_ATTEMPTS", "0"),
        ("PAGEMILL_CAPTION_TIMEOUT_SECONDS", "0"), ("PAGEMILL_BREAKER_COOLDOWN_SECONDS", "-1"),
    ]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: value})
