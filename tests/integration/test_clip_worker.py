"""The Embed stage on moto S3, and the GPU worker against a real (moto-interpreted) Step Functions
callback task: a ``lambda:invoke.waitForTaskToken`` Task with HeartbeatSeconds hands out the task
token the way the ECS task's container overrides do on AWS."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import numpy as np
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.server import ThreadedMotoServer
from PIL import Image

from pagemill.clip.embed import embed_images, load_embeddings
from pagemill.clip.model import ClipModel
from pagemill.clip.preprocess import preprocess_bytes
from pagemill.errors import SourceMissing
from pagemill_tools.clip_testmodel import NAME, ensure_test_model
from tests.support.moto_aws import fake_credentials

ROOT = Path(__file__).resolve().parents[2]
WORKER_PATH = ROOT / "containers" / "clip-gpu" / "worker.py"
REGION = "us-east-1"
BUCKET = "work"
IMAGES_KEY = "documents/d1/embed/images.json"
OUT_PREFIX = "documents/d1/embed/"
LIMIT = 40_000_000
# The Task's; the worker beats every 0.2 s. Ten beats to an allowance: CI's loaded two cores once
# left a 1 s allowance without one (the execution timed out mid-task).
HEARTBEAT_SECONDS = 2
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def load_worker_module() -> Any:
    spec = importlib.util.spec_from_file_location("clip_gpu_worker", WORKER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


worker = load_worker_module()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_test_model(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def model(model_dir: Path) -> ClipModel:
    return ClipModel.load(model_dir)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_credentials(monkeypatch, REGION)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (320, 240), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([127 + 100 * np.sin(x / (9 + c + seed) + y / (11 + seed)) for c in range(3)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def upload_images(s3: Any, images: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    """Store images as the Extract stage does and write the Embed stage's input list."""
    listing = []
    for sha, data in images:
        key = f"documents/d1/images/{sha}.img"
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        listing.append({"sha256": sha, "s3_key": key})
    s3.put_object(Bucket=BUCKET, Key=IMAGES_KEY, Body=json.dumps(listing).encode())
    return listing


# --- the Embed stage's S3 contract ---------------------------------------------------------------


def test_embed_images_writes_vectors_index_and_skips(s3: Any, model: ClipModel) -> None:
    # GIVEN a document's images in several formats, one listed twice, one corrupt, one too large
    good = [("a" * 64, image_bytes(1)), ("b" * 64, image_bytes(2, "JPEG")), ("c" * 64, image_bytes(3, "PNG", mode="P")),
            ("d" * 64, image_bytes(4, "JPEG2000")), ("e" * 64, image_bytes(5, "TIFF", mode="CMYK"))]
    bad = [("f" * 64, b"%PDF-1.7 not an image"), ("9" * 64, image_bytes(6, size=(2000, 1000)))]
    upload_images(s3, good + bad + [good[0]])
    progress: list[tuple[int, int]] = []
    # WHEN the stage embeds them in batches of 2 with a pixel limit the large one exceeds
    result = embed_images(
        s3, bucket=BUCKET, images_key=IMAGES_KEY, out_prefix=OUT_PREFIX, model=model, batch_size=2,
        max_image_pixels=1_000_000, on_progress=lambda done, total: progress.append((done, total)),
    )
    # THEN the result names the objects written, and counts what was embedded and skipped
    assert result == {"embeddings_key": OUT_PREFIX + "embeddings.npy", "index_key": OUT_PREFIX + "embeddings.json",
                      "count": 5, "skipped": 2}
    index = json.loads(s3.get_object(Bucket=BUCKET, Key=result["index_key"])["Body"].read())
    assert index["model"] == NAME and index["dim"] == 512
    assert index["sha256"] == [sha for sha, _ in good]
    assert {s["sha256"]: s["reason"].split(":")[0] for s in index["skipped"]} == {
        "f" * 64: "not an image format Pillow can read", "9" * 64: "too many pixels"}
    matrix = np.load(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=result["embeddings_key"])["Body"].read()))
    assert matrix.dtype == np.float32 and matrix.shape == (5, 512)
    # AND each row is the model's vector for that image, in index order
    expected = model.embed_images(np.stack([preprocess_bytes(data, max_pixels=LIMIT) for _, data in good]))
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
    # AND progress was reported up to the last of the 7 distinct images
    assert progress[-1] == (7, 7)


def test_load_embeddings_round_trips(s3: Any, model: ClipModel) -> None:
    # GIVEN an embedded document
    upload_images(s3, [(str(i) * 64, image_bytes(i)) for i in range(3)])
    result = embed_images(s3, bucket=BUCKET, images_key=IMAGES_KEY, out_prefix=OUT_PREFIX, model=model,
                          batch_size=16, max_image_pixels=LIMIT)
    # WHEN the Write stage reads it back
    vectors = load_embeddings(s3, BUCKET, result["index_key"])
    # THEN every image hash maps to its unit vector
    assert sorted(vectors) == [str(i) * 64 for i in range(3)]
    assert all(v.shape == (512,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vectors.values())


def test_batch_size_does_not_change_vectors(s3: Any, model: ClipModel) -> None:
    # GIVEN eleven images
    upload_images(s3, [(f"{i:064x}", image_bytes(i)) for i in range(11)])
    # WHEN they are embedded one at a time and in one batch
    runs = []
    for batch_size, prefix in ((1, "one/"), (64, "all/")):
        result = embed_images(s3, bucket=BUCKET, images_key=IMAGES_KEY, out_prefix=prefix, model=model,
                              batch_size=batch_size, max_image_pixels=LIMIT)
        runs.append(load_embeddings(s3, BUCKET, result["index_key"]))
    # THEN the vectors agree
    assert runs[0].keys() == runs[1].keys()
    for sha in runs[0]:
        np.testing.assert_allclose(runs[0][sha], runs[1][sha], atol=1e-5)


def test_empty_image_list(s3: Any, model: ClipModel) -> None:
    # GIVEN a document without images WHEN it is embedded THEN an empty [0, 512] array is written
    upload_images(s3, [])
    result = embed_images(s3, bucket=BUCKET, images_key=IMAGES_KEY, out_prefix=OUT_PREFIX, model=model,
                          batch_size=4, max_image_pixels=LIMIT)
    assert result["count"] == 0
    assert load_embeddings(s3, BUCKET, result["index_key"]) == {}


def test_missing_image_object_fails_the_stage(s3: Any, model: ClipModel) -> None:
    # GIVEN a list naming an image that is not in the bucket (not the image's fault: a broken invariant)
    s3.put_object(Bucket=BUCKET, Key=IMAGES_KEY, Body=json.dumps([{"sha256": "x", "s3_key": "nope.png"}]))
    # WHEN it is embedded THEN the typed storage error surfaces, and nothing is written
    with pytest.raises(SourceMissing):
        embed_images(s3, bucket=BUCKET, images_key=IMAGES_KEY, out_prefix=OUT_PREFIX, model=model,
                     batch_size=4, max_image_pixels=LIMIT)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=OUT_PREFIX + "embeddings")


# --- the worker and Step Functions -------------------------------------------------------------


@dataclass
class CallbackTask:
    """A one-state machine whose Task waits for a task token, like the Embed state's ECS task."""

    sfn: Any
    tokens: queue.Queue[str]
    state_machine_arn: str

    def start(self) -> tuple[str, str]:
        execution_arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, input="{}")["executionArn"]
        return execution_arn, self.tokens.get(timeout=30)

    def wait(self, execution_arn: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60  # a safety net against a hung test, not a timing assertion
        while time.monotonic() < deadline:
            execution = self.sfn.describe_execution(executionArn=execution_arn)
            if execution["status"] in _TERMINAL:
                return execution
            time.sleep(0.1)
        raise AssertionError(f"{execution_arn} still running")

    def failure(self, execution_arn: str) -> dict[str, str]:
        events = self.sfn.get_execution_history(executionArn=execution_arn)["events"]
        (failed,) = [e["executionFailedEventDetails"] for e in events if e["type"] == "ExecutionFailed"]
        return failed


@pytest.fixture
def heartbeat_seconds() -> int:
    """The Task's HeartbeatSeconds; a test that needs no timeout raises it (a parameter of that name)."""
    return HEARTBEAT_SECONDS


@pytest.fixture
def callback_task(aws: None, s3: Any, heartbeat_seconds: int) -> Iterator[CallbackTask]:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="embed", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    function = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="start-embed-worker", Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    definition = {"StartAt": "Embed", "States": {"Embed": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": function, "Payload": {"token.$": "$$.Task.Token"}},
        "HeartbeatSeconds": heartbeat_seconds, "TimeoutSeconds": 60, "End": True,
    }}}
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="embed", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
    tokens: queue.Queue[str] = queue.Queue()

    def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, *args: Any) -> bytes:
        # What starting the ECS task does on AWS: hand the token to the worker.
        tokens.put(json.loads(body)["token"])
        return b"{}"

    with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
        yield CallbackTask(sfn, tokens, arn)


class SlowModel:
    """The real model, slowed to big-batch speed so the task outlives its HeartbeatSeconds several
    times over; ``after_batch(n)`` lets a test act while the worker is mid-task."""

    def __init__(
        self, model: ClipModel, seconds_per_batch: float, after_batch: Callable[[int], object] | None = None,
    ) -> None:
        self._model = model
        self._seconds = seconds_per_batch
        self._after_batch = after_batch
        self.batches = 0
        self.name, self.dim, self.provider = model.name, model.dim, model.provider

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(self._seconds)
        self.batches += 1
        if self._after_batch:
            self._after_batch(self.batches)
        return self._model.embed_images(pixels)


def worker_env(token: str, model_dir: Path, **extra: str) -> dict[str, str]:
    return {"TASK_TOKEN": token, "IMAGES_BUCKET": BUCKET, "IMAGES_KEY": IMAGES_KEY, "OUT_PREFIX": OUT_PREFIX,
            "PAGEMILL_CLIP_DIR": str(model_dir), "HEARTBEAT_SECONDS": "0.2", **extra}


def test_heartbeats_keep_the_task_alive_and_success_completes_it(
    callback_task: CallbackTask, s3: Any, model: ClipModel, model_dir: Path,
) -> None:
    # GIVEN a task whose model takes 2.5 s to load and 0.5 s per batch: 4.5 s, over twice the
    # Task's HeartbeatSeconds
    upload_images(s3, [(f"{i:064x}", image_bytes(i)) for i in range(8)])
    execution_arn, token = callback_task.start()

    def slow_load(path: Path) -> SlowModel:
        time.sleep(2.5)
        return SlowModel(ClipModel.load(path), 0.5)

    # WHEN the worker runs it
    code = worker.run_worker(worker_env(token, model_dir, BATCH_SIZE="2"), sfn=callback_task.sfn, s3=s3,
                             model_loader=slow_load)
    # THEN the execution succeeded with the worker's result as its output
    execution = callback_task.wait(execution_arn)
    assert code == worker.EXIT_OK
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    span = output.pop("span")
    assert output == {"embeddings_key": OUT_PREFIX + "embeddings.npy", "index_key": OUT_PREFIX + "embeddings.json",
                      "count": 8, "skipped": 0}
    assert len(load_embeddings(s3, BUCKET, output["index_key"])) == 8
    # AND its answer carries the Embed state's span, model load included
    assert span["state"] == "Embed" and span["ended"] - span["started"] >= 2.5
    # AND (the premise) the task outlived HeartbeatSeconds: only heartbeats kept it alive
    assert (execution["stopDate"] - execution["startDate"]).total_seconds() > 2 * HEARTBEAT_SECONDS


@pytest.mark.parametrize(
    ("env", "error"),
    [({"IMAGES_KEY": "documents/d1/embed/missing.json"}, "SourceMissing"),
     ({"PAGEMILL_CLIP_DIR": "/nonexistent/clip"}, "ClipModelError"),
     ({"BATCH_SIZE": "lots"}, "WorkerMisconfigured")],
    ids=["input-missing", "model-missing", "bad-setting"],
)
def test_failure_is_reported_with_its_error_class(
    callback_task: CallbackTask, s3: Any, model_dir: Path, env: dict[str, str], error: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a task that cannot succeed
    caplog.set_level(logging.INFO, logger="pagemill.clip.worker")
    upload_images(s3, [("a" * 64, image_bytes(1))])
    execution_arn, token = callback_task.start()
    # WHEN the worker runs it
    code = worker.run_worker({**worker_env(token, model_dir), **env}, sfn=callback_task.sfn, s3=s3)
    # THEN it exits non-zero and the execution failed with the typed error, at once
    assert code == worker.EXIT_FAILED
    assert callback_task.wait(execution_arn)["status"] == "FAILED"
    failure = callback_task.failure(execution_arn)
    assert failure["error"] == error
    # AND the cause sent with it is one line (moto 5.2.5 drops SendTaskFailure's cause, so it is
    # read from the worker's log)
    (reported,) = [r for r in caplog.records if r.getMessage() == "task failure reported"]
    assert reported.error == error and reported.cause and "\n" not in reported.cause


def test_worker_stops_when_step_functions_gives_up(
    callback_task: CallbackTask, s3: Any, model: ClipModel, model_dir: Path,
) -> None:
    # GIVEN a running task whose execution is stopped while the worker is still embedding
    upload_images(s3, [(f"{i:064x}", image_bytes(i)) for i in range(20)])
    execution_arn, token = callback_task.start()

    def stop_execution(batches: int) -> None:
        if batches == 1:
            callback_task.sfn.stop_execution(executionArn=execution_arn, error="Operator", cause="stopped")

    slow = SlowModel(model, 0.3, after_batch=stop_execution)
    # WHEN the worker's next heartbeat is refused
    code = worker.run_worker(worker_env(token, model_dir, BATCH_SIZE="1"), sfn=callback_task.sfn, s3=s3,
                             model_loader=lambda path: slow)
    # THEN it stops between batches, exits non-zero, and writes no result
    assert code == worker.EXIT_FAILED
    # (AWS reports ABORTED; moto's interpreter goes on waiting and records the heartbeat timeout)
    assert callback_task.wait(execution_arn)["status"] in {"ABORTED", "FAILED"}
    assert slow.batches < 20
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=OUT_PREFIX + "embeddings")


# --- the worker as a process (what ECS runs) -----------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import importlib.util, sys, time
    from pagemill.clip.model import ClipModel

    spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
    worker = importlib.util.module_from_spec(spec)
    sys.modules["worker"] = worker
    spec.loader.exec_module(worker)

    def load_forever(path):
        # A model load that does not end: the worker is mid-task, heartbeating, when the test acts.
        ClipModel.load(path)
        print("loaded", file=sys.stderr, flush=True)
        while True:
            time.sleep(0.05)

    sys.exit(worker.main(model_loader=load_forever))
    """
)


@pytest.fixture
def worker_process(callback_task: CallbackTask, model_dir: Path, tmp_path: Path) -> Iterator[Any]:
    """Starts the worker entrypoint in a subprocess that reaches moto through a local server."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    processes: list[subprocess.Popen[str]] = []
    stdout = open(tmp_path / "stdout.log", "w")  # noqa: SIM115 - closed below, after the processes

    def start(token: str) -> subprocess.Popen[str]:
        env = {**os.environ, **worker_env(token, model_dir), "AWS_ENDPOINT_URL": f"http://{host}:{port}",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
        process = subprocess.Popen(
            [sys.executable, str(driver), str(WORKER_PATH)], env=env, text=True,
            stdout=stdout, stderr=subprocess.PIPE,
        )
        processes.append(process)
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.strip() == "loaded", f"worker did not start: {line}{process.stderr.read()}"
        return process

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stderr:
                process.stderr.close()
        stdout.close()
        server.stop()


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "stdout.log").read_text().splitlines() if line.strip()]


# A heartbeat allowance the worker process's start-up (interpreter, imports, model) cannot miss on a
# loaded machine: this test is about SIGTERM, not about timeouts.
@pytest.mark.parametrize("heartbeat_seconds", [30])
def test_sigterm_reports_worker_interrupted(callback_task: CallbackTask, worker_process: Any, tmp_path: Path) -> None:
    # GIVEN a worker process in the middle of its task
    execution_arn, token = callback_task.start()
    process = worker_process(token)
    # WHEN ECS stops it (spot reclaim, scale-in)
    process.send_signal(signal.SIGTERM)
    # THEN it reports WorkerInterrupted, which the state machine retries, and exits 143
    assert process.wait(timeout=30) == 143
    assert callback_task.wait(execution_arn)["status"] == "FAILED"
    assert callback_task.failure(execution_arn)["error"] == "WorkerInterrupted"
    # AND its stdout is JSON logs: the failure's cause, and the ONNX provider it got
    logs = {line["message"]: line for line in log_lines(tmp_path)}
    assert "SIGTERM" in logs["task failure reported"]["cause"]
    assert logs["CLIP model loaded"]["provider"] == "CPUExecutionProvider"


def test_killed_worker_times_out_the_task(callback_task: CallbackTask, worker_process: Any) -> None:
    # GIVEN a worker process in the middle of its task, heartbeating
    execution_arn, token = callback_task.start()
    process = worker_process(token)
    # WHEN it dies without a word (SIGKILL, OOM, instance lost)
    process.kill()
    process.wait()
    # THEN the missing heartbeats fail the execution (moto says States.Timeout, AWS States.HeartbeatTimeout)
    assert callback_task.wait(execution_arn)["status"] == "FAILED"
    assert callback_task.failure(execution_arn)["error"] in {"States.Timeout", "States.HeartbeatTimeout"}


def test_missing_task_token_exits_without_reporting(s3: Any, model_dir: Path) -> None:
    # GIVEN a worker started without a task token WHEN it runs THEN it exits 2 without work
    env = worker_env("", model_dir)
    assert worker.run_worker(env, sfn=boto3.client("stepfunctions", region_name=REGION), s3=s3) == worker.EXIT_NO_TOKEN

