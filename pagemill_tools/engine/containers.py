"""ECS RunTask, locally: the container's entrypoint (``worker.py`` of its source folder) runs as a
process with the task definition's environment plus the RunTask container overrides, the task
token included, so it heartbeats and completes the Step Functions task exactly as on AWS. The
process ends with the engine (``parent_watch``); after ``close`` no task is started."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    HeartbeatEndpoint,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from pagemill_tools.engine.template import ACCOUNT, REGION, ContainerSpec

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _ecs_operation(action: str) -> Any:
    model = boto3.session.Session().client("ecs", region_name=REGION).meta.service_model
    by_lower = {name.lower(): name for name in model.operation_names}
    return model.operation_model(by_lower[action.lower().replace("_", "")])


# moto 5.2.5's ECS integration passes the state's PascalCase parameters to boto3 unconverted (its
# base class normalisation is a no-op for ECS); these are the conversions its other services do.
def _normalise_parameters(self: Any, parameters: dict, boto_service_name: Any = None, service_action_name: Any = None) -> None:
    self._to_boto_request(parameters, _ecs_operation(service_action_name or self.resource.api_action).input_shape)


def _normalise_response(self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None) -> None:
    self._from_boto_response(response, _ecs_operation(service_action_name or self.resource.api_action).output_shape)


# moto arms a task's heartbeat timer only after RunTask returns. A worker that is quicker than that
# (locally it is a process on the same machine) would meet two races that AWS does not have:
def _notify_heartbeat(self: CallbackEndpoint) -> bool:
    # a beat before the timer is armed was refused as InvalidToken, which the worker takes for
    # "Step Functions gave up" and stops; on AWS the token is live from the moment the task is
    # scheduled, so it is accepted (the timer starts full anyway);
    heartbeat = self._heartbeat_endpoint
    if heartbeat is not None:
        heartbeat.notify()
    return True


def _setup_heartbeat_endpoint(self: CallbackEndpoint, heartbeat_seconds: int) -> HeartbeatEndpoint:
    # and a result sent before the timer is armed never woke the heartbeat wait, which then
    # reported a heartbeat timeout for a task that had already succeeded.
    endpoint = HeartbeatEndpoint(heartbeat_seconds=heartbeat_seconds)
    self._heartbeat_endpoint = endpoint
    if self.get_outcome() is not None:
        endpoint.notify()
    return endpoint


def stop_once_started(self: ExecutionWorker, stop_date: Any, error: str | None, cause: str | None) -> None:
    # moto's worker builds its environment in its own thread, so a StopExecution that follows
    # StartExecution at once (a cancel right after an upload) found none and failed; on AWS an
    # execution can be stopped from the moment it exists. The thread sets it as it starts.
    deadline = time.monotonic() + 10
    while self.env is None and time.monotonic() < deadline:
        time.sleep(0.01)
    self.env.set_stop(stop_date=stop_date, cause=cause, error=error)


_moto_set_error = Environment.set_error


def error_unless_stopped(self: Environment, error: Any) -> None:
    # On AWS a stopped execution ends ABORTED. moto records an error raised after the stop over
    # it (a Distributed Map whose child executions the stop ended fails), and the execution
    # ended FAILED now and then when stopped mid-map (seen once in a full test run).
    with self._state_mutex:
        if not isinstance(self._program_state, ProgramStopped):
            _moto_set_error(self, error)


INTERPRETER_FIXES = (
    (ExecutionWorker, "stop", stop_once_started),
    (Environment, "set_error", error_unless_stopped),
    (StateTaskServiceEcs, "_normalise_parameters", _normalise_parameters),
    (StateTaskServiceEcs, "_normalise_response", _normalise_response),
    (CallbackEndpoint, "notify_heartbeat", _notify_heartbeat),
    (CallbackEndpoint, "setup_heartbeat_endpoint", _setup_heartbeat_endpoint),
)


class LocalContainers:
    """Its bound ``run_task``/``describe_tasks`` replace moto's ECS backend methods (a bound method
    set on the class is not re-bound, so they take the backend's arguments without the backend)."""

    def __init__(self, specs: dict[str, ContainerSpec], *, base_env: dict[str, str], log_path: Path) -> None:
        self.specs = specs
        self.base_env = base_env
        self.log_path = log_path
        self._lock = threading.Lock()
        self._closed = False
        self.tasks: dict[str, tuple[dict[str, Any], subprocess.Popen[bytes]]] = {}

    def run_task(self, cluster_str: str, task_definition_str: str, count: int,
                 overrides: dict[str, Any] | None, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        # The state names the task definition by family (what CDK passes), an ARN or a family:revision.
        name = task_definition_str.rsplit("/", 1)[-1].split(":", 1)[0]
        spec = self.specs.get(name)
        if self._closed:
            raise RuntimeError("the local engine is shutting down: no task is started")
        if spec is None:
            raise KeyError(f"no local container for task definition {task_definition_str!r}")
        env = {**os.environ, **self.base_env, **spec.environment}
        # The entrypoint's watch is this package: importable there as it is here.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        for container in (overrides or {}).get("containerOverrides", []):
            env.update({e["name"]: e["value"] for e in container.get("environment", [])})
        cluster = cluster_str.rsplit("/", 1)[-1]
        started = []
        for _ in range(count):
            arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{uuid.uuid4().hex}"
            with open(self.log_path, "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "pagemill_tools.engine.parent_watch", str(spec.source_dir / "worker.py")],
                    env=env, stdout=log, stderr=log,
                )
            description = {
                "taskArn": arn,
                "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}",
                "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{name}:1",
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
                "launchType": "EC2",
                "containers": [],
            }
            with self._lock:
                self.tasks[arn] = (description, process)
            started.append(description)
        return started

    def describe_tasks(self, cluster_str: str, tasks: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            found = [(d, p) for arn, (d, p) in self.tasks.items() if arn in tasks or arn.rsplit("/", 1)[-1] in tasks]
        out = []
        for description, process in found:
            if process.poll() is not None:
                description = {**description, "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
                               "stopCode": "EssentialContainerExited"}
            out.append(description)
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            processes = [p for _, p in self.tasks.values()]
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
