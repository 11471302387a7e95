"""The local engine: the synthesized state machine on moto's Step Functions interpreter, with S3
in moto, Lambda invocations routed to the real handlers in worker processes, and PostgreSQL real.

moto runs in this process (the interpreter's own S3 calls are intercepted in-process, its Lambda
tasks go straight to the runtime);
a threaded moto server on loopback serves the same backends to the worker processes, which reach
it through ``AWS_ENDPOINT_URL`` like any boto3 client reaches AWS.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.ecs.models import EC2ContainerServiceBackend
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

from pagemill import keys
from pagemill.aws.trigger import start_for_object
from pagemill.operate.progress import document_progress, read_history
from pagemill.pipeline.context import document_id_for, file_sha256
from pagemill.records import SourceObject
from pagemill.settings import DeployedSettings, env_name
from pagemill_tools.clip_testmodel import ensure_test_model
from pagemill_tools.engine.containers import INTERPRETER_FIXES, LocalContainers
from pagemill_tools.engine.interpreter_cache import interpreter_caches
from pagemill_tools.engine.interrupt import StopRequest
from pagemill_tools.engine.lambda_runtime import LambdaRuntime
from pagemill_tools.engine.runbook import WRITE_EVERY_S, DocumentRun, RunBook
from pagemill_tools.engine.synth import PROJECT_ROOT, synthesize
from pagemill_tools.engine.template import REGION, LocalDeployment, load_deployment

log = logging.getLogger(__name__)

_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


# How many runs' progress the watch reads a second, at most (ended runs are always read at once).
PROGRESS_READS_PER_S = 10.0
# The watch looks again when an execution ends, but not sooner than this after its last look.
MIN_LOOK_S = 0.02
# Containers made between two young collections while the engine runs (CPython's default: 700).
# moto's interpreter makes and drops thousands per state, and the heap it keeps grows with every
# execution (their histories): at the default, the full collections this sets off took about an
# eighth of the engine's CPU for one-page documents (bench/RESULTS.md, "issue 16, sixth round").
YOUNG_COLLECTION_EVERY = 10_000


@dataclass(frozen=True)
class EngineOptions:
    home: Path
    database_url: str
    workers: int = os.cpu_count() or 2
    # Environment set on every function over its own (settings overrides such as captions off).
    function_env: dict[str, str] = field(default_factory=dict)
    # CDK context overrides (``cdk synth -c``), e.g. a short GPU heartbeat timeout.
    context: dict[str, Any] = field(default_factory=dict)
    # Captions run when an API key is configured (in the environment or function_env) unless this.
    no_captions: bool = False


NO_API_KEY = "captions skipped: no API key (set ANTHROPIC_API_KEY to caption images and read documents)"
CAPTIONS_OFF = "captions off (--no-captions)"


def caption_environment(environ: Mapping[str, str], *, no_captions: bool) -> tuple[dict[str, str], str | None]:
    """The functions' environment for captions locally, and a note for the summary when they are
    off: they run when an API key is configured (ANTHROPIC_BASE_URL honoured), unless
    ``--no-captions``; without a key they are skipped, which is not an error."""
    if no_captions:
        return {"PAGEMILL_CAPTION_PROVIDER": "off"}, CAPTIONS_OFF
    if environ.get("PAGEMILL_CAPTION_PROVIDER") in ("bedrock", "off"):
        return {"PAGEMILL_CAPTION_PROVIDER": environ["PAGEMILL_CAPTION_PROVIDER"]}, None
    if not environ.get("ANTHROPIC_API_KEY"):
        return {"PAGEMILL_CAPTION_PROVIDER": "off"}, NO_API_KEY
    passed = {k: environ[k] for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL") if environ.get(k)}
    return {"PAGEMILL_CAPTION_PROVIDER": "anthropic", **passed}, None


# Deployed settings the engine reads from the environment itself (caption_environment,
# speech_environment, the local text embedder's override below).
_DECIDED_HERE = frozenset({"caption_provider", "speech", "text_embedder"})


def settings_context(environ: Mapping[str, str]) -> dict[str, str]:
    """Deployed settings exported as PAGEMILL_<NAME>, as context overrides: locally the environment
    changes them for a run as ``cdk deploy -c name=value`` does on AWS, checked at synth, and the
    template carries them wherever the stack uses them (without this the template's own value,
    cdk.json's, shadowed an exported PAGEMILL_MARKDOWN_MODE in every function)."""
    return {
        f.name: environ[env_name(f.name)]
        for f in dataclasses.fields(DeployedSettings)
        if f.name not in _DECIDED_HERE and env_name(f.name) in environ
    }


def speech_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Locally summaries are spoken by espeak-ng (Polly is the stack's), unless PAGEMILL_SPEECH=off."""
    return {"PAGEMILL_SPEECH": "off" if environ.get("PAGEMILL_SPEECH") == "off" else "local"}


class LocalEngine:
    """Context manager: deploys the synthesized stack into moto and runs documents through it."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.deployment: LocalDeployment | None = None
        self.runtime: LambdaRuntime | None = None
        self._mock: Any = None
        self._server: ThreadedMotoServer | None = None
        self._patches: list[Any] = []
        self.containers: LocalContainers | None = None
        self.state_machine_arn = ""
        self.reembed_state_machine_arn: str | None = None
        self.runbook: RunBook | None = None
        # Set by the interpreter when an execution ends, which it adds to the ended: the watch
        # need neither wait out its poll nor list the executions to learn of it.
        self._execution_ended = threading.Event()
        self._ended: set[str] = set()
        self._gc_threshold = gc.get_threshold()  # the process's, given back at exit

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalEngine:
        home = self.options.home
        context = {**settings_context(os.environ), **self.options.context}
        template, stack_name = synthesize(home / "synth", context=context)
        self.deployment = load_deployment(template, stack_name, PROJECT_ROOT)
        self._mock = mock_aws(
            config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )
        self._mock.start()
        gc.set_threshold(YOUNG_COLLECTION_EVERY, *self._gc_threshold[1:])
        try:
            self._start(home)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, home: Path) -> None:
        assert self.deployment is not None
        # The werkzeug server logs every request the workers make; that is noise here.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # The interpreter logs every failed execution at ERROR; the run reports failures itself.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        # Before CreateStateMachine, whose validation parse is then the only one (none at all when
        # an earlier engine parsed the same definition).
        self._patches = [mock.patch.object(owner, name, cache) for owner, name, cache in interpreter_caches(home / "asl")]
        for patch in self._patches:
            patch.start()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.runbook = RunBook(self.options.database_url, self.sfn)
        bucket = self.deployment.bucket_name
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for table, key in self.deployment.tables.items():
            dynamodb.create_table(
                TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            )
        self.state_machine_arn = self.sfn.create_state_machine(
            name=self.deployment.state_machine_name,
            definition=json.dumps(self.deployment.definition),
            roleArn=self.deployment.role_arn,
            type="STANDARD",
        )["stateMachineArn"]
        # The reembed state machine runs on the same functions (tests; `pagemill reembed` locally
        # makes its calls in one process).
        if self.deployment.reembed is not None:
            self.reembed_state_machine_arn = self.sfn.create_state_machine(
                name=self.deployment.reembed.name, definition=json.dumps(self.deployment.reembed.definition),
                roleArn=self.deployment.reembed.role_arn, type="STANDARD",
            )["stateMachineArn"]
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"lambda-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
        base_env = {
            **_CREDENTIALS,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "DATABASE_URL": self.options.database_url,
            # No X-Ray daemon locally; logs and metrics still go to the function log.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        overrides = {
            # The deployed Embed function downloads the model into /tmp/clip; locally no CLIP
            # weights are installable, so the generated CLIP-shaped model stands in, loaded by the
            # production code path. PAGEMILL_CLIP_DIR points at a real export.
            "PAGEMILL_CLIP_DIR": os.environ.get("PAGEMILL_CLIP_DIR")
            or str(ensure_test_model(self.options.home / "clip-test-model")),
            # The deployed EmbedChunks calls Titan on Bedrock; locally the offline model in the
            # wordllama wheel embeds (bench/RESULTS.md, "Retrieval"), unless told otherwise.
            "PAGEMILL_TEXT_EMBEDDER": os.environ.get("PAGEMILL_TEXT_EMBEDDER") or "wordllama",
        }
        captions, _ = caption_environment(
            {**os.environ, **self.options.function_env}, no_captions=self.options.no_captions
        )
        speech = speech_environment({**os.environ, **self.options.function_env})
        overrides.update({**captions, **speech, **self.options.function_env})
        base_env.update(overrides)  # the GPU container reads them too
        functions = {
            name: replace(spec, environment={**spec.environment, **overrides})
            for name, spec in self.deployment.functions.items()
        }
        self.runtime = LambdaRuntime(functions, workers=self.options.workers, base_env=base_env, log_path=self.log_path)
        runtime = self.runtime

        def invoke_for_a_state(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
            # A Lambda task's invocation (the only way the pipeline invokes a function), straight
            # to the runtime: the Invoke API's answer as boto3 parses it, without a boto3 request
            # that moto turns back into a call (its client, signing and a werkzeug request cost
            # the engine about 3 ms of CPU each, five times per small document).
            result = runtime.invoke(parameters["FunctionName"], parameters.get("Payload") or b"{}")
            response = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
                        "Payload": lambda_eval_utils._from_payload(io.BytesIO(result.payload))}
            if result.function_error:
                response["FunctionError"] = result.function_error
            return response

        self.containers = LocalContainers(self.deployment.containers, base_env=base_env, log_path=self.log_path)
        patches = [
            mock.patch.object(lambda_eval_utils, "_invoke_lambda_function", invoke_for_a_state),
            # moto cannot place ECS tasks; RunTask starts the container's worker as a process.
            mock.patch.object(EC2ContainerServiceBackend, "run_task", self.containers.run_task),
            mock.patch.object(EC2ContainerServiceBackend, "describe_tasks", self.containers.describe_tasks),
            *(mock.patch.object(owner, name, fix) for owner, name, fix in INTERPRETER_FIXES),
            mock.patch.object(BaseExecutionWorkerCommunication, "terminated", self._terminated()),
        ]
        for patch in patches:
            patch.start()
            self._patches.append(patch)

    def _terminated(self) -> Callable[[BaseExecutionWorkerCommunication], None]:
        moto_terminated = BaseExecutionWorkerCommunication.terminated
        event, ended = self._execution_ended, self._ended

        def terminated(communication: BaseExecutionWorkerCommunication) -> None:
            moto_terminated(communication)  # the execution's status first, then the news
            ended.add(communication.execution.exec_arn)
            event.set()

        return terminated

    def __exit__(self, *exc: object) -> None:
        if self.runbook is not None:
            self.runbook.close()
        for patch in self._patches:
            patch.stop()
        if self.containers is not None:
            self.containers.close()
        if self.runtime is not None:
            self.runtime.close()
        if self._server is not None:
            self._server.stop()
        if self._mock is not None:
            self._mock.stop()
        gc.set_threshold(*self._gc_threshold)

    # --- running documents -------------------------------------------------------------------

    def submit(self, path: Path, key: str | None = None) -> DocumentRun:
        """Upload like a user would (uploads/<name>) and start the execution as the trigger does."""
        assert self.deployment is not None
        key = key or f"{keys.UPLOADS_PREFIX}{path.name}"
        with open(path, "rb") as f:
            version = self.s3.put_object(Bucket=self.deployment.bucket_name, Key=key, Body=f).get("VersionId")
        source = SourceObject(bucket=self.deployment.bucket_name, key=key, version_id=version)
        outcome = start_for_object(self.sfn, self.state_machine_arn, source)
        run = DocumentRun(
            path=path, source=source, document_id=document_id_for(file_sha256(path)),
            execution_arn=outcome.execution_arn,
        )
        assert self.runbook is not None
        self.runbook.submitted(run)
        return run

    def start_event(self, source: SourceObject) -> str:
        """What the trigger does for an EventBridge event (used to show redelivery is harmless)."""
        return start_for_object(self.sfn, self.state_machine_arn, source).execution_arn

    def wait(
        self, runs: Iterable[DocumentRun], *, on_progress: Callable[[DocumentRun], None] | None = None,
        poll_seconds: float = 0.25, stop: StopRequest | None = None,
    ) -> None:
        """Watch the runs to their end, renewing their leases; on a ``stop`` request (Ctrl-C,
        SIGTERM) interrupt those still going and return."""
        assert self.runbook is not None
        pending = list(runs)
        next_beat = next_listing = 0.0
        running: set[str] = set()
        progress_at: dict[str, float] = {}
        with stop.watching() if stop is not None else nullcontext():
            while pending:
                if stop is not None and stop.reason:
                    self.interrupt(pending, stop.reason)
                    return
                now = time.monotonic()
                # `pagemill cancel` from another process records a cancellation; stop those here
                # (looked for as often as progress is written, not at every poll).
                if now >= next_beat:
                    next_beat = now + WRITE_EVERY_S
                    for arn, reason in self.runbook.heartbeat([r.execution_arn for r in pending]).items():
                        self.sfn.stop_execution(executionArn=arn, error="Cancelled", cause=reason)
                # The interpreter tells which runs ended; a listing of those still running, once a
                # poll, catches an end it did not tell (every run given here had started, so one
                # missing from an older listing had ended by then). Polling every run each time
                # cost the engine's process about a CPU-second per document when many documents
                # run at once (bench/RESULTS.md, "issue 16"), and listing at each end, whose cost
                # grows with the executions the engine has run, a tenth of its CPU.
                self._execution_ended.clear()  # before reading the ended: a later end wakes the next wait
                if now >= next_listing:
                    next_listing = now + poll_seconds
                    listed = self._running_executions()
                    running = running if listed is None else listed
                # A run's progress (an S3 listing and a DescribeExecution) is read less often the
                # more runs are in flight, so that all of them together cost a bounded number of
                # reads a second: with 80 one-page documents queued on two workers, reading each
                # once a second was a third of the engine's CPU per document.
                progress_every = max(WRITE_EVERY_S, len(pending) / PROGRESS_READS_PER_S)
                for run in list(pending):
                    ended = run.execution_arn in self._ended or run.execution_arn not in running
                    # A run's first read is due one period after it is first seen (it has just
                    # started: there is nothing to read yet), or at its end.
                    if ended or now >= progress_at.setdefault(run.execution_arn, now + progress_every):
                        progress_at[run.execution_arn] = now + progress_every
                        self._refresh(run)
                    if on_progress:
                        on_progress(run)
                    self.runbook.observed(run, terminal=run.status in _TERMINAL)
                    if run.status in _TERMINAL:
                        pending.remove(run)
                        self._ended.discard(run.execution_arn)
                        self._deliver_status_change(run)
                if pending:
                    # Until an execution ends (a small document's run is over in about 0.1 s: a
                    # whole poll's wait would double it) or the poll is due.
                    time.sleep(MIN_LOOK_S)
                    self._execution_ended.wait(poll_seconds - MIN_LOOK_S)

    def _running_executions(self) -> set[str] | None:
        """None when the listing's pages moved under it: moto's next token names an execution,
        and one that ended between two pages is no longer found (the caller keeps its last
        listing; a run taken for ended that still runs is only described once more)."""
        paginator = self.sfn.get_paginator("list_executions")
        pages = paginator.paginate(stateMachineArn=self.state_machine_arn, statusFilter="RUNNING")
        try:
            return {e["executionArn"] for page in pages for e in page["executions"]}
        except self.sfn.exceptions.InvalidToken:
            return None

    def interrupt(self, runs: Iterable[DocumentRun], reason: str) -> None:
        """Stop these runs now: their documents cancelled with ``reason`` (a Write in flight
        commits before that or not at all), their executions stopped, every worker ended."""
        assert self.runbook is not None and self.runtime is not None and self.containers is not None
        runs = list(runs)
        for run in runs:
            self.runbook.cancel(run.execution_arn, reason)
        for run in runs:
            self._refresh(run)
            if run.status not in _TERMINAL:
                self.sfn.stop_execution(executionArn=run.execution_arn, error="Cancelled", cause=reason)
        self.runtime.close()
        self.containers.close()
        for run in runs:
            self._refresh(run)
            self.runbook.observed(run, terminal=True)
        log.warning("run interrupted", extra={"reason": reason, "executions": [r.execution_arn for r in runs]})

    def _deliver_status_change(self, run: DocumentRun) -> None:
        """What EventBridge does on AWS when an execution ends: its "Execution Status Change" event
        to the rules' Lambda targets (Settle: a document whose execution ended without recording
        it must not say "running"). Locally one attempt; a failure is logged, as AWS's DLQ would keep it."""
        assert self.deployment is not None and self.runtime is not None
        for rule in self.deployment.execution_rules:
            if run.status not in rule.statuses:
                continue
            event = {
                "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
                "detail": {
                    "executionArn": run.execution_arn, "stateMachineArn": self.state_machine_arn,
                    "status": run.status, "error": run.error, "cause": run.cause,
                },
            }
            result = self.runtime.invoke(rule.function, json.dumps(event).encode())
            if result.function_error:
                log.error("execution status change not delivered", extra={
                    "function": rule.function, "execution_arn": run.execution_arn,
                    "error": result.payload.decode(errors="replace")[:500],
                })

    def _refresh(self, run: DocumentRun) -> None:
        assert self.deployment is not None and self.runbook is not None
        description = self.sfn.describe_execution(executionArn=run.execution_arn)
        run.status = description["status"]
        if run.status in _TERMINAL:
            end = description.get("stopDate") or datetime.now(description["startDate"].tzinfo)
            run.seconds = (end - description["startDate"]).total_seconds()
            run.error, run.cause = description.get("error"), description.get("cause")
        # A document whose execution succeeded has every page done: one database read instead of
        # reading its manifest and listing its batch results (S3 requests through moto, about a
        # tenth of the engine's CPU for a one-page document).
        pages = self.runbook.page_count(run.document_id) if run.status == "SUCCEEDED" else None
        if pages is not None:
            run.page_count = run.pages_done = pages
            return
        progress = document_progress(self.s3, self.deployment.bucket_name, run.document_id, page_count=run.page_count)
        run.page_count, run.pages_done = progress.page_count, progress.pages_done

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's events, oldest first."""
        return read_history(self.sfn, execution_arn)[::-1]

    def state_seconds(self, execution_arn: str) -> dict[str, float]:
        """Seconds spent in each top-level state, from the execution history."""
        entered: dict[str, datetime] = {}
        spent: dict[str, float] = {}
        for event in self.history(execution_arn):
            if event["type"].endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                entered.setdefault(name, event["timestamp"])
            elif event["type"].endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                if name in entered:
                    spent[name] = spent.get(name, 0.0) + (event["timestamp"] - entered.pop(name)).total_seconds()
        return spent

    def visited_states(self, execution_arn: str) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(execution_arn)
            if e["type"].endswith("StateEntered")
        ]
