"""The GPU container's entrypoint: one Embed task of a Step Functions execution
(``ecs:runTask.waitForTaskToken``), from the task token to SendTaskSuccess or SendTaskFailure.

Environment (the state machine's container overrides, plus the image's own):
  TASK_TOKEN, IMAGES_BUCKET, IMAGES_KEY, OUT_PREFIX   the task (see pagemill.clip.embed)
  PAGEMILL_CLIP_DIR                                   model directory (the image sets /opt/clip)
  BATCH_SIZE          default 128 on CUDA, 16 on CPU
  HEARTBEAT_SECONDS   default 20; the Task's HeartbeatSeconds should be a few times this
  PAGEMILL_*          pagemill's settings, as for the Lambdas (PAGEMILL_MAX_IMAGE_PIXELS is used)

Nothing hangs: heartbeats run on their own thread from the first second (model loading included);
a heartbeat that Step Functions rejects (task timed out, execution over) stops the work; any
failure is reported with its error class name; SIGTERM (spot reclaim, scale-in, StopTask) is
reported as WorkerInterrupted, which the state machine retries, and the process exits 143.
Exit codes: 0 success, 1 failed (reported, or the task was abandoned), 2 no task token, 143 SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pagemill.clip.embed import embed_images
from pagemill.clip.errors import TaskAbandoned, WorkerInterrupted, WorkerMisconfigured
from pagemill.clip.model import CUDA, ClipModel
from pagemill.pipeline.timings import span_since
from pagemill.records import dump
from pagemill.settings import Settings

log = logging.getLogger("pagemill.clip.worker")

EXIT_OK, EXIT_FAILED, EXIT_NO_TOKEN, EXIT_SIGTERM = 0, 1, 2, 143
GPU_BATCH_SIZE, CPU_BATCH_SIZE = 128, 16
# Step Functions' answer to a heartbeat or result for a task nobody waits for any more.
_TASK_GONE = {"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"}
_MAX_CAUSE = 4000  # SendTaskFailure allows 32,768 characters; a cause is one line

ModelLoader = Callable[[Path], ClipModel]


@dataclass(frozen=True)
class WorkerConfig:
    images_bucket: str
    images_key: str
    out_prefix: str
    model_dir: Path
    batch_size: int | None
    heartbeat_seconds: float
    max_image_pixels: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerConfig:
        missing = [n for n in ("IMAGES_BUCKET", "IMAGES_KEY", "OUT_PREFIX", "PAGEMILL_CLIP_DIR") if not env.get(n)]
        if missing:
            raise WorkerMisconfigured(f"not set: {', '.join(missing)}")
        try:
            batch_size = int(env["BATCH_SIZE"]) if env.get("BATCH_SIZE") else None
            heartbeat = float(env.get("HEARTBEAT_SECONDS") or 20)
            # The same PAGEMILL_* settings as the Lambdas (PAGEMILL_MAX_IMAGE_PIXELS here).
            max_pixels = Settings.from_env(env).max_image_pixels
        except ValueError as exc:
            raise WorkerMisconfigured(f"bad setting in the environment: {exc}") from exc
        if (batch_size is not None and batch_size < 1) or heartbeat <= 0:
            raise WorkerMisconfigured("BATCH_SIZE and HEARTBEAT_SECONDS must be positive")
        return cls(
            images_bucket=env["IMAGES_BUCKET"], images_key=env["IMAGES_KEY"], out_prefix=env["OUT_PREFIX"],
            model_dir=Path(env["PAGEMILL_CLIP_DIR"]), batch_size=batch_size, heartbeat_seconds=heartbeat,
            max_image_pixels=max_pixels,
        )


def run_worker(env: Mapping[str, str], *, sfn: Any, s3: Any, model_loader: ModelLoader = ClipModel.load) -> int:
    """Do one task and report it to Step Functions; returns the process exit code."""
    token = env.get("TASK_TOKEN")
    if not token:
        log.error("TASK_TOKEN is not set: nothing to report to, the state machine's overrides are wrong")
        return EXIT_NO_TOKEN
    task = _Task(sfn, token)
    with _SigtermGuard() as sigterm:
        try:
            with sigterm.interruptible():
                config = WorkerConfig.from_env(env)
                with _Heartbeat(sfn, token, config.heartbeat_seconds) as heartbeat:
                    result = _work(config, s3=s3, model_loader=model_loader, heartbeat=heartbeat)
        except TaskAbandoned as exc:
            # Step Functions has moved on; a SendTaskFailure would be refused the same way.
            log.error("task abandoned by Step Functions; stopping", extra={"reason": str(exc)})
            return EXIT_FAILED
        except WorkerInterrupted as exc:
            task.fail(exc)
            return EXIT_SIGTERM
        except Exception as exc:
            # The process edge: whatever went wrong is reported, or the execution would wait
            # for its heartbeat timeout to learn nothing.
            log.exception("embed task failed", extra={"error": type(exc).__name__})
            task.fail(exc)
            return EXIT_FAILED
        return EXIT_OK if task.succeed(result) else EXIT_FAILED


def _work(config: WorkerConfig, *, s3: Any, model_loader: ModelLoader, heartbeat: _Heartbeat) -> dict[str, Any]:
    began = time.time()
    started = time.monotonic()
    model = model_loader(config.model_dir)
    heartbeat.check()
    batch_size = config.batch_size or (GPU_BATCH_SIZE if model.provider == CUDA else CPU_BATCH_SIZE)
    log.info("embedding", extra={
        "provider": model.provider, "model": model.name, "batch_size": batch_size, "images_key": config.images_key,
        "model_load_seconds": round(time.monotonic() - started, 3),
    })

    def progress(done: int, total: int) -> None:
        log.info("progress", extra={"done": done, "total": total})
        heartbeat.check()

    result = embed_images(
        s3, bucket=config.images_bucket, images_key=config.images_key, out_prefix=config.out_prefix,
        model=model, batch_size=batch_size, max_image_pixels=config.max_image_pixels, on_progress=progress,
    )
    # The Embed state's span, in the answer as a Lambda stage's is in its result (pagemill.pipeline.timings).
    return {**result, "span": dump(span_since("Embed", began))}


class _Task:
    """The task token's two final answers. Either may be refused (the task already timed out):
    that is logged, never raised, because there is nobody left to tell."""

    def __init__(self, sfn: Any, token: str) -> None:
        self._sfn = sfn
        self._token = token

    def succeed(self, result: dict[str, Any]) -> bool:
        try:
            self._sfn.send_task_success(taskToken=self._token, output=json.dumps(result))
        except (ClientError, BotoCoreError) as exc:
            log.error("SendTaskSuccess refused", extra={"error": _aws_code(exc), "cause": str(exc)})
            return False
        log.info("task succeeded", extra=result)
        return True

    def fail(self, exc: BaseException) -> None:
        error = type(exc).__name__
        cause = " ".join(str(exc).split())[:_MAX_CAUSE] or error
        try:
            self._sfn.send_task_failure(taskToken=self._token, error=error[:256], cause=cause)
        except (ClientError, BotoCoreError) as send_exc:
            log.error("SendTaskFailure refused", extra={"error": _aws_code(send_exc), "cause": str(send_exc)})
            return
        log.info("task failure reported", extra={"error": error, "cause": cause})


class _Heartbeat:
    """SendTaskHeartbeat every ``seconds`` on a daemon thread, from entry until exit. Transient
    errors are logged and retried on the next beat; a refusal that means the task is gone is kept
    and raised as TaskAbandoned by ``check()``, which the work calls between batches."""

    def __init__(self, sfn: Any, token: str, seconds: float) -> None:
        self._sfn = sfn
        self._token = token
        self._seconds = seconds
        self._stop = threading.Event()
        self._gone: str | None = None
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._seconds + 30)

    def check(self) -> None:
        if self._gone is not None:
            raise TaskAbandoned(f"SendTaskHeartbeat answered {self._gone}")

    def _run(self) -> None:
        while True:
            try:
                self._sfn.send_task_heartbeat(taskToken=self._token)
            except (ClientError, BotoCoreError) as exc:
                code = _aws_code(exc)
                if code in _TASK_GONE:
                    self._gone = code
                    log.error("heartbeat refused: Step Functions gave up on this task", extra={"error": code})
                    return
                log.warning("heartbeat failed; retrying", extra={"error": code, "cause": str(exc)})
            if self._stop.wait(self._seconds):
                return


class _SigtermGuard:
    """While installed, SIGTERM raises WorkerInterrupted in the main thread, but only inside
    ``interruptible()`` (the work): once the work is done, sending its result is quicker than
    being stopped, and a report cut short by an exception would be lost. Outside the main thread
    (in-process tests) signals cannot be handled and this does nothing."""

    def __init__(self) -> None:
        self._armed = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _SigtermGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def _on_sigterm(self, signum: int, frame: object) -> None:
        if self._armed:
            self._armed = False
            raise WorkerInterrupted("received SIGTERM (spot reclaim, scale-in or StopTask) before the work finished")
        log.warning("SIGTERM after the work finished; reporting its result first")


def _aws_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "ClientError")
    return type(exc).__name__


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the record's ``extra`` keys (CloudWatch Logs Insights reads it)."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in self._STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def main(model_loader: ModelLoader = ClipModel.load) -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # Bounded calls: a hung connection must not outlive the task's heartbeat.
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    return run_worker(
        os.environ, sfn=boto3.client("stepfunctions", config=config), s3=boto3.client("s3", config=config),
        model_loader=model_loader,
    )


if __name__ == "__main__":
    sys.exit(main())
