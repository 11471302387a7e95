"""ECS RunTask, locally: the container's entrypoint (``worker.py`` of its source folder) runs as a
process with the task definition's environment plus the RunTask container overrides, the task
token included, so it heartbeats and completes the Step Functions task exactly as on AWS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from pagemill.local.template import ACCOUNT, REGION, ContainerSpec


class LocalContainers:
    def __init__(self, specs: dict[str, ContainerSpec], *, base_env: dict[str, str], log_path: Path) -> None:
        self.specs = specs
        self.base_env = base_env
        self.log_path = log_path
        self._lock = threading.Lock()
        self.tasks: dict[str, tuple[dict[str, Any], subprocess.Popen[bytes]]] = {}

    def run_task(self, backend: Any, cluster_str: str, task_definition_str: str, count: int,
                 overrides: dict[str, Any] | None, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        name = task_definition_str.rsplit("/", 1)[-1].split(":", 1)[0]
        spec = self.specs.get(name)
        if spec is None:
            raise KeyError(f"no local container for task definition {task_definition_str!r}")
        env = {**os.environ, **self.base_env, **spec.environment}
        for container in (overrides or {}).get("containerOverrides", []):
            env.update({e["name"]: e["value"] for e in container.get("environment", [])})
        cluster = cluster_str.rsplit("/", 1)[-1]
        started = []
        for _ in range(count):
            arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{uuid.uuid4().hex}"
            with open(self.log_path, "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, str(spec.source_dir / "worker.py")], env=env, stdout=log, stderr=log,
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

    def describe_tasks(self, backend: Any, cluster_str: str, tasks: list[str]) -> list[dict[str, Any]]:
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
            processes = [p for _, p in self.tasks.values()]
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
