"""A local Lambda runtime: the real handler modules, each invocation in a worker process with
its function's timeout and memory limit enforced the way Lambda enforces them (the process is
killed, and the caller gets Lambda's error types: ``Sandbox.Timedout``, ``Runtime.OutOfMemory``,
``Runtime.ExitError``).

Workers are long-lived (warm starts, like Lambda execution environments) and shared by all
functions; a worker that was killed is replaced by a fresh one (a cold start). They end with the
engine, however it ends (``parent_watch``); after ``close`` an invocation fails at once and no
worker is started again.

On AWS each function scales on its own; here all share ``workers`` processes. Invocations waiting
for one are served in order of arrival, a Map's items (``FunctionSpec.map_item``: page batches,
caption batches) after the others: a document's one-off states (Plan, CollectImages, Write,
RecordFailure) wait for one running invocation at most, never behind the queue of another
document's page batches, which had them miss their state timeouts in a run of many documents.
"""

from __future__ import annotations

import heapq
import importlib.util
import itertools
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from pagemill_tools.engine.parent_watch import exit_with_parent

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
_CLOSED_POLL_S = 0.2  # how soon an invocation waiting for a worker notices the runtime closed
_INIT_LIMIT_S = 10.0  # Lambda's allowance for loading a function's module before its timeout starts
_CTX = multiprocessing.get_context("spawn")  # the parent runs threads (moto); fork would copy them


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    source_dir: Path
    handler: str  # "module.function", as in the Lambda's Handler property
    timeout_s: float
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)
    map_item: bool = False  # run for each item of a Map state: waits behind the other functions

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}"


@dataclass(frozen=True)
class Invocation:
    """What the caller gets back: the response payload and, for a failed invocation,
    Lambda's ``X-Amz-Function-Error`` value (the payload then holds errorType/errorMessage)."""

    payload: bytes
    function_error: str | None = None
    seconds: float = 0.0

    @property
    def error_type(self) -> str | None:
        if self.function_error is None:
            return None
        return json.loads(self.payload).get("errorType")


def function_name(name_or_arn: str) -> str:
    """A function's name from what an invocation may name it by: the name, or its ARN with or
    without a version or alias."""
    return name_or_arn.rsplit(":function:", 1)[-1].split(":", 1)[0]


def _failure(error_type: str, message: str) -> Invocation:
    return Invocation(json.dumps({"errorType": error_type, "errorMessage": message}).encode(), "Unhandled")


class _Worker:
    def __init__(self, base_env: dict[str, str], log_path: Path | None) -> None:
        self.conn, child = _CTX.Pipe()
        self.process = _CTX.Process(
            target=_worker_main, args=(child, base_env, str(log_path) if log_path else None), daemon=True
        )
        self.process.start()
        child.close()
        self.ps = psutil.Process(self.process.pid)
        self._killed = threading.Lock()

    def rss_mb(self) -> float:
        try:
            return self.ps.memory_info().rss / (1024 * 1024)
        except psutil.Error:
            return 0.0

    def kill(self) -> None:
        # Shutdown (main thread) and an invocation thread that saw the worker die may both
        # kill it; closing its pipe twice at once raised EBADF and turned Ctrl-C into exit 1.
        if not self._killed.acquire(blocking=False):
            return
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


@dataclass(eq=False)
class _Waiter:
    """An invocation waiting for a worker; ``_release`` hands it one."""

    worker: _Worker | None = None
    gave_up: bool = False
    ready: threading.Event = field(default_factory=threading.Event)


class LambdaRuntime:
    """Runs invocations on a pool of ``workers`` processes. Thread-safe: Step Functions' map
    iterations call ``invoke`` from many threads; each blocks until a worker is free."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        *,
        workers: int,
        base_env: dict[str, str],
        log_path: Path | None = None,
    ) -> None:
        self.functions = functions
        self._base_env = base_env
        self._log_path = log_path
        self._idle: list[_Worker] = []
        self._waiting: list[tuple[bool, int, _Waiter]] = []  # a heap: (map item, arrival, waiter)
        self._arrivals = itertools.count()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.invocations: list[tuple[str, float, str | None]] = []  # (function, seconds, error type)
        for _ in range(max(1, workers)):
            self._release(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self._base_env, self._log_path)
        with self._lock:
            self._all.append(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            while self._waiting:
                _, _, waiter = heapq.heappop(self._waiting)
                if not waiter.gave_up:
                    waiter.worker = worker
                    waiter.ready.set()
                    return
            self._idle.append(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        if not self._closed.is_set():
            self._release(self._spawn())

    def _take(self, map_item: bool) -> _Worker | None:
        """An idle worker, waiting for one (see the module's docstring for the order); None once
        the runtime is closed."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            waiter = _Waiter()
            heapq.heappush(self._waiting, (map_item, next(self._arrivals), waiter))
        while not waiter.ready.wait(_CLOSED_POLL_S):
            if self._closed.is_set():
                with self._lock:
                    if waiter.worker is None:
                        waiter.gave_up = True
                        return None
        return waiter.worker

    def spec_for(self, function_name_or_arn: str) -> FunctionSpec:
        name = function_name(function_name_or_arn)
        try:
            return self.functions[name]
        except KeyError:
            raise KeyError(f"no local Lambda function named {name!r}") from None

    def invoke(self, function_name_or_arn: str, payload: bytes) -> Invocation:
        spec = self.spec_for(function_name_or_arn)
        started = time.monotonic()
        worker = self._take(spec.map_item)
        if worker is None:
            return self._record(spec, started, _exit_error("the local engine is shutting down"))
        request_id = str(uuid.uuid4())
        try:
            worker.conn.send((spec, payload, request_id))
        except (BrokenPipeError, OSError):
            self._replace(worker)
            return self._record(spec, started, _exit_error("worker pipe closed before the invocation"))
        # Like Lambda, the function's timeout starts once its module is loaded (the worker says
        # "started"); loading it (a cold start) has Lambda's init allowance on top.
        deadline = time.monotonic() + _INIT_LIMIT_S + spec.timeout_s
        while True:
            try:
                ready = worker.conn.poll(_POLL_SECONDS)
            except (EOFError, OSError):
                ready = False
            if ready:
                try:
                    status, body = worker.conn.recv()
                except (EOFError, OSError):
                    self._replace(worker)
                    return self._record(spec, started, _exit_error(_exit_reason(worker)))
                if status == "started":
                    deadline = time.monotonic() + spec.timeout_s
                    continue
                self._release(worker)
                if time.monotonic() > deadline:
                    # Finished between two looks, but late: Lambda would have stopped it.
                    return self._record(spec, started, _timed_out(request_id, spec))
                return self._record(
                    spec, started, Invocation(body, None if status == "ok" else "Unhandled")
                )
            if not worker.process.is_alive():
                failure = _exit_error(_exit_reason(worker))
            elif worker.rss_mb() > spec.memory_mb:
                failure = _failure(
                    "Runtime.OutOfMemory",
                    f"RequestId: {request_id} Error: Runtime exited with error: "
                    f"memory limit of {spec.memory_mb} MB exceeded",
                )
            elif time.monotonic() > deadline:
                failure = _timed_out(request_id, spec)
            else:
                continue
            self._replace(worker)
            return self._record(spec, started, failure)

    def _record(self, spec: FunctionSpec, started: float, result: Invocation) -> Invocation:
        seconds = time.monotonic() - started
        with self._lock:
            self.invocations.append((spec.name, seconds, result.error_type))
        return Invocation(result.payload, result.function_error, seconds)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all]

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.kill()


def _exit_reason(worker: _Worker) -> str:
    worker.process.join(timeout=1)
    code = worker.process.exitcode
    if code is not None and code < 0:
        return f"signal: {_signal_name(-code)}"
    return f"exit status {code}"


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name.removeprefix("SIG").lower()
    except ValueError:
        return str(signum)


def _timed_out(request_id: str, spec: FunctionSpec) -> Invocation:
    return _failure("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {spec.timeout_s:.2f} seconds")


def _exit_error(reason: str) -> Invocation:
    return _failure("Runtime.ExitError", f"Runtime exited with error: {reason}")


# --- worker process -----------------------------------------------------------------------


class _Context:
    """The subset of Lambda's context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _worker_main(conn: Connection, base_env: dict[str, str], log_path: str | None) -> None:
    exit_with_parent()
    if log_path:
        # Like CloudWatch Logs: the function's stdout/stderr (native library output too) go to a
        # log file, not into the caller's terminal.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    handlers: dict[tuple[str, str], Any] = {}
    function_env_keys: set[str] = set()
    os.environ.update(base_env)
    while True:
        try:
            spec, payload, request_id = conn.recv()
        except (EOFError, OSError):
            return
        # The previous function's variables go; the shared ones it had shadowed come back.
        for key in function_env_keys:
            if key in base_env:
                os.environ[key] = base_env[key]
            else:
                os.environ.pop(key, None)
        os.environ.update(spec.environment)
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = spec.name
        os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(spec.memory_mb)
        function_env_keys = set(spec.environment)
        try:
            key = (str(spec.source_dir), spec.handler)
            if key not in handlers:
                handlers[key] = _load_handler(spec)
            conn.send(("started", None))
            deadline = time.monotonic() + spec.timeout_s
            event = json.loads(payload) if payload else {}
            result = handlers[key](event, _Context(spec, request_id, deadline))
            conn.send(("ok", json.dumps(result).encode()))
        except Exception as exc:  # noqa: BLE001 - reported to the caller exactly as Lambda does
            body = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "requestId": request_id,
                "stackTrace": traceback.format_exception(exc),
            }
            conn.send(("error", json.dumps(body).encode()))
        sys.stdout.flush()
        sys.stderr.flush()


def _load_handler(spec: FunctionSpec) -> Any:
    module_name, attr = spec.handler.rsplit(".", 1)
    path = spec.source_dir / (module_name.replace(".", "/") + ".py")
    unique = f"_pagemill_lambda_{spec.source_dir.name}_{module_name}".replace(".", "_").replace("-", "_")
    module = sys.modules.get(unique)
    if module is None:
        module_spec = importlib.util.spec_from_file_location(unique, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load handler module {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[unique] = module
        module_spec.loader.exec_module(module)
    return getattr(module, attr)
