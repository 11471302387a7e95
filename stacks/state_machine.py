"""The document state machine: one execution per uploaded object version.

    Plan → AlreadyProcessed? ─ duplicate ─► AlreadyProcessed
                             └─ new ──► ExtractPages (Distributed Map of ExtractBatch) → Write → Done
    a failed Plan, ExtractPages or Write ──► RecordFailure → DocumentFailed

State names are what the Step Functions console shows. Every Lambda task has a timeout and
retries transient errors and crashes with full-jitter backoff; input errors (a bad PDF) are
deterministic, never retried, and go straight to RecordFailure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.config import PipelineConfig
from stacks.functions import PipelineFunctions
from stacks.storage import DOCUMENTS_PREFIX

# A dependency was briefly unavailable: retry with backoff. After Lambda's own errors come
# pagemill's TransientError family (pagemill.errors, pagemill.clip.errors; the infrastructure
# tests keep the two in step).
TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "TransientError",
    "DatabaseUnavailable",
    "StorageUnavailable",
    "WorkerInterrupted",
)
# The invocation ran out of time or memory, or its process died: worth one more try.
CRASH_ERRORS = ("States.Timeout", "Sandbox.Timedout", "Runtime.ExitError", "Runtime.OutOfMemory")

TRANSIENT_ATTEMPTS = 5
RECORD_FAILURE_ATTEMPTS = 8  # a failure must be recorded: this task tries hardest
# A task waits this much longer than its function may run, so a slow invocation ends with the
# function's own Sandbox.Timedout (and its logs) rather than racing the task's States.Timeout.
TASK_TIMEOUT_MARGIN = Duration.seconds(30)


def _transient_retry(max_attempts: int) -> dict[str, Any]:
    return {
        "errors": list(TRANSIENT_ERRORS),
        "interval": Duration.seconds(2),
        "backoff_rate": 2.0,
        "max_attempts": max_attempts,
        "max_delay": Duration.seconds(30),
        "jitter_strategy": sfn.JitterType.FULL,
    }


def _crash_retry() -> dict[str, Any]:
    return {
        "errors": list(CRASH_ERRORS),
        "interval": Duration.seconds(5),
        "backoff_rate": 2.0,
        "max_attempts": 2,
        "max_delay": Duration.seconds(60),
        "jitter_strategy": sfn.JitterType.FULL,
    }


def _invoke(
    scope: Construct,
    name: str,
    function: lambda_.Function,
    *,
    payload: sfn.TaskInput,
    result_selector: Mapping[str, Any],
    result_path: str | None = None,
    transient_attempts: int = TRANSIENT_ATTEMPTS,
) -> tasks.LambdaInvoke:
    """A Lambda task with the pipeline's timeout and retry policy."""
    task = tasks.LambdaInvoke(
        scope,
        name,
        lambda_function=function,
        payload=payload,
        payload_response_only=False,
        retry_on_service_exceptions=False,  # the explicit retries below cover Lambda's errors
        result_selector=dict(result_selector),
        result_path=result_path,
        task_timeout=sfn.Timeout.duration(function.timeout.plus(TASK_TIMEOUT_MARGIN)),
    )
    task.add_retry(**_transient_retry(transient_attempts))
    task.add_retry(**_crash_retry())
    return task


class DocumentStateMachine(Construct):
    """The Standard state machine that takes one uploaded PDF from Plan to Write, or to a
    recorded failure."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        functions: PipelineFunctions,
        bucket: s3.IBucket,
        config: PipelineConfig,
    ) -> None:
        super().__init__(scope, id_)
        self._functions = functions
        self._bucket = bucket
        self._config = config
        self.log_group = logs.LogGroup(self, "Logs", retention=config.log_retention)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition()),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.minutes(config.execution_timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ERROR, include_execution_data=True),
        )
        # ExtractPages' ItemReader reads the batch manifest that Plan wrote under documents/.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{DOCUMENTS_PREFIX}*")])
        )

    def _definition(self) -> sfn.IChainable:
        record_failure = self._record_failure()
        plan = self._plan()
        stages = self._work_stages()
        for state in (plan, *stages):
            state.add_catch(record_failure, errors=[sfn.Errors.ALL], result_path=f"$.failed.{state.state_id}")

        work = sfn.Chain.start(stages[0])
        for stage in stages[1:]:
            work = work.next(stage)
        work = work.next(sfn.Succeed(self, "Done"))

        already_processed = (
            sfn.Choice(self, "AlreadyProcessed?")
            .when(sfn.Condition.boolean_equals("$.plan.duplicate", True), sfn.Succeed(self, "AlreadyProcessed"))
            .otherwise(work)
        )
        return sfn.Chain.start(plan).next(already_processed)

    def _work_stages(self) -> list[tasks.LambdaInvoke | sfn.DistributedMap]:
        """The states a new document goes through after Plan, in order; each fails to RecordFailure."""
        return [self._extract_pages(), self._write()]

    def _plan(self) -> tasks.LambdaInvoke:
        return _invoke(
            self,
            "Plan",
            self._functions.plan,
            payload=sfn.TaskInput.from_object(
                {"source": sfn.JsonPath.object_at("$.source"), "execution_arn": sfn.JsonPath.execution_id}
            ),
            result_selector={
                "document_id": sfn.JsonPath.string_at("$.Payload.document_id"),
                "page_count": sfn.JsonPath.number_at("$.Payload.page_count"),
                "batch_count": sfn.JsonPath.number_at("$.Payload.batch_count"),
                "manifest_key": sfn.JsonPath.string_at("$.Payload.manifest_key"),
                "duplicate": sfn.JsonPath.object_at("$.Payload.duplicate"),
            },
            result_path="$.plan",
        )

    def _extract_pages(self) -> sfn.DistributedMap:
        extract_pages = sfn.DistributedMap(
            self,
            "ExtractPages",
            # The bucket is given by name so that CDK does not grant s3:GetObject on the whole
            # bucket; the role gets the manifests' prefix only (below).
            item_reader=sfn.S3JsonItemReader(
                bucket_name_path=self._bucket.bucket_name, key=sfn.JsonPath.string_at("$.plan.manifest_key")
            ),
            max_concurrency=self._config.map_concurrency,
            map_execution_type=sfn.StateMachineType.STANDARD,
            tolerated_failure_count=0,
            result_path=sfn.JsonPath.DISCARD,
        )
        extract_pages.item_processor(
            _invoke(
                self,
                "ExtractBatch",
                self._functions.extract_batch,
                payload=sfn.TaskInput.from_json_path_at("$"),
                result_selector={
                    "result_key": sfn.JsonPath.string_at("$.Payload.result_key"),
                    "pages": sfn.JsonPath.number_at("$.Payload.pages"),
                },
            )
        )
        return extract_pages

    def _write(self) -> tasks.LambdaInvoke:
        return _invoke(
            self,
            "Write",
            self._functions.write,
            payload=sfn.TaskInput.from_object(
                {
                    "document_id": sfn.JsonPath.string_at("$.plan.document_id"),
                    "manifest_key": sfn.JsonPath.string_at("$.plan.manifest_key"),
                    "execution_arn": sfn.JsonPath.execution_id,
                    "started_at": sfn.JsonPath.execution_start_time,
                }
            ),
            result_selector={
                "pages": sfn.JsonPath.number_at("$.Payload.pages"),
                "chunks": sfn.JsonPath.number_at("$.Payload.chunks"),
                "images": sfn.JsonPath.number_at("$.Payload.images"),
            },
            result_path="$.written",
        )

    def _record_failure(self) -> sfn.IChainable:
        record = _invoke(
            self,
            "RecordFailure",
            self._functions.record_failure,
            payload=sfn.TaskInput.from_object(
                {"state": sfn.JsonPath.entire_payload, "execution_arn": sfn.JsonPath.execution_id}
            ),
            result_selector={
                "error": sfn.JsonPath.string_at("$.Payload.error"),
                "reason": sfn.JsonPath.string_at("$.Payload.reason"),
            },
            result_path="$.recorded",
            transient_attempts=RECORD_FAILURE_ATTEMPTS,
        )
        return record.next(
            sfn.Fail(self, "DocumentFailed", error_path="$.recorded.error", cause_path="$.recorded.reason")
        )
