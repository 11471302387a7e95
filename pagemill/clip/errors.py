"""Errors of the embed step. The class name is the Step Functions error name (see pagemill.errors)."""

from __future__ import annotations

from pagemill.errors import InternalError, PagemillError, WorkerInterrupted

__all__ = ["ClipModelError", "ImageRejected", "TaskAbandoned", "WorkerInterrupted", "WorkerMisconfigured"]


class ImageRejected(PagemillError):
    """One image cannot be embedded (undecodable, too many pixels). Recorded as skipped in the
    embeddings index; it never fails the job, so it is deliberately not an InputError (that family
    names whole-document failures the state machine must not retry)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClipModelError(InternalError):
    """The model directory is missing files or holds a graph of the wrong shape: a deployment defect."""


class WorkerMisconfigured(InternalError):
    """The GPU worker was started without a required setting (container overrides are wrong)."""


class TaskAbandoned(PagemillError):
    """Step Functions rejected a heartbeat: the task timed out or the execution ended, so nobody
    waits for this worker's result any more."""

