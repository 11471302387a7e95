"""Typed errors.

The class name *is* the Step Functions error name: Lambda reports an unhandled exception's
class name as ``errorType``, which is what Retry/Catch match on. So the state machine retries
the ``TransientError`` family and never the ``InputError`` family.
"""


class PagemillError(Exception):
    """Base class. ``retryable`` tells whether trying again can succeed."""

    retryable = False


class InputError(PagemillError):
    """The document itself is bad. Deterministic: retrying gives the same answer."""


class NotAPdf(InputError):
    pass


class EmptyFile(InputError):
    pass


class EncryptedPdf(InputError):
    pass


class MalformedPdf(InputError):
    pass


class NoPages(InputError):
    pass


class PageLimitExceeded(InputError):
    pass


class FileTooLarge(InputError):
    pass


class SourceMissing(InputError):
    """The uploaded object (or that version of it) no longer exists."""


class TransientError(PagemillError):
    """A dependency was briefly unavailable; the same call may succeed later."""

    retryable = True


class DatabaseUnavailable(TransientError):
    pass


class StorageUnavailable(TransientError):
    pass


class StoreUnavailable(TransientError):
    """The caption circuit breaker's or token budget's table could not be read or written."""


class WorkerInterrupted(TransientError):
    """A worker was told to stop (SIGTERM: spot reclaim, scale-in, StopTask) before it finished;
    the same input on a fresh worker can succeed."""


class SpeechUnavailable(TransientError):
    """The speech service refused for now (throttling, a service error, no answer in time)."""


class SpeechFailed(PagemillError):
    """The speech engine could not speak the summary (an unknown voice, a refused text, the engine
    missing or crashing). Deterministic: never retried; the document goes on without audio."""


class InternalError(PagemillError):
    """A defect or a broken invariant in pagemill itself (e.g. a batch result is missing)."""


class ExecutionCancelled(PagemillError):
    """The execution was cancelled (``pagemill cancel``): work it still had in flight must not
    change its document. Never retried; the execution is already stopped."""


class OperationError(PagemillError):
    """An operator's request (``pagemill status / cancel / redrive``) that cannot be done as asked."""


class UnknownDocument(OperationError):
    pass


class NotRunning(OperationError):
    pass


class NotRedrivable(OperationError):
    pass


class StackNotFound(OperationError):
    pass


def transient_error_names() -> list[str]:
    """Every error name the state machine must retry (the infrastructure test checks this)."""
    return sorted({TransientError.__name__, *(c.__name__ for c in _subclasses(TransientError))})


def input_error_names() -> list[str]:
    return sorted(c.__name__ for c in _subclasses(InputError))


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out
