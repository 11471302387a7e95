"""The exit codes of `pagemill run`, `redrive` and `status`, by the worst outcome among the
documents (documented in their --help and the README)."""

from __future__ import annotations

from collections.abc import Iterable

SUCCEEDED = 0
FAILED = 1  # any document failed, was cancelled or interrupted (or, for status, is not found)
USAGE = 2  # no such input, bad arguments (click's own code for usage errors)
PARTIAL = 3  # none failed, at least one partial: finished, something missing (see its warnings)
INTERRUPTED = 130  # the run was stopped by Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention)


def for_statuses(statuses: Iterable[str]) -> int:
    """``running`` counts as fine (status of a live document); anything unknown as a failure."""
    found = set(statuses)
    if found <= {"succeeded", "running"}:
        return SUCCEEDED
    return PARTIAL if found <= {"succeeded", "running", "partial"} else FAILED
