"""The document state machine: one execution per uploaded object version.

    Plan → HowToExtract? ─ duplicate ───► AlreadyProcessed
                         ├─ one batch ──► ExtractOnlyBatch (its images collected too) ──┐
                         └─ more ───────► ExtractPages (Distributed Map of              ├─► Enrich → Write → Done
                                                        ExtractBatch) → CollectImages ──┘
    Enrich (Parallel):  HowToEmbed? ─ none ───► NoImagesToEmbed
                                    ├ lambda ─► EmbedOnLambda  (CPU ONNX Runtime)
                                    └ gpu ────► EmbedOnGpu     (ECS task on the GPU service, task token)
                        HowToCaption? ─ none ─► NoCaptions
                                      └ map ──► CaptionImages (Distributed Map of CaptionBatch) → CaptionsDone
                                                 └ failed ─► CaptionsFailed (images recorded as skipped)
                        HowToUnderstand? ─ none ─► NoUnderstanding
                                         └ lambda ─► UnderstandDocument (failed ─► UnderstandingFailed)
                                                     → HowToSpeak? ─ none ─► NoSpeech
                                                                   └ lambda ─► SpeakSummary → SummarySpoken
                                                                                (failed ─► SpeechFailed)
                        EmbedChunks (failed ─► ChunkVectorsFailed)   unless text_embedder is off
    a failed Plan, ExtractOnlyBatch, ExtractPages, CollectImages, Enrich or Write ──► RecordFailure → DocumentFailed

State names are what the Step Functions console shows. Every task has a timeout and retries
transient errors and crashes with full-jitter backoff; input errors (a bad PDF) and pagemill's
internal defects are deterministic, never retried, and go straight to RecordFailure. Each timed
task's result carries its span (when it started and ended) and Write is handed them all for
documents.timings; a map discards its items' results, so their spans are in S3 instead
(pagemill.pipeline.timings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import RegexAppliesTo
from constructs import Construct

from pagemill import keys
from stacks import nag
from stacks.config import GPU_TASK_TIMEOUT_SECONDS, PipelineConfig
from stacks.events import execution_status_pattern
from stacks.functions import PipelineFunctions
from stacks.gpu import GpuEmbedding

# pagemill's TransientError family (pagemill.errors, pagemill.clip.errors; the infrastructure
# tests keep the two in step): a dependency was briefly unavailable, or a worker was stopped.
LIBRARY_TRANSIENT_ERRORS = (
    "TransientError",
    "DatabaseUnavailable",
    "StorageUnavailable",
    "StoreUnavailable",
    "WorkerInterrupted",
    "SpeechUnavailable",
)
# A dependency was briefly unavailable: retry with backoff. Lambda's own errors, then pagemill's.
TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    *LIBRARY_TRANSIENT_ERRORS,
)
# The invocation ran out of time or memory, or its process died: worth one more try.
CRASH_ERRORS = ("States.Timeout", "Sandbox.Timedout", "Runtime.ExitError", "Runtime.OutOfMemory")

TRANSIENT_ATTEMPTS = 5
RECORD_FAILURE_ATTEMPTS = 8  # a failure must be recorded: this task tries hardest
# A task waits this much longer than its function may run, so a slow invocation ends with the
# function's own Sandbox.Timedout (and its logs) rather than racing the task's States.Timeout.
TASK_TIMEOUT_MARGIN = Duration.seconds(30)

# The GPU worker went quiet (no heartbeat: the instance or the container died; a missed heartbeat
# is States.HeartbeatTimeout on AWS and States.Timeout in moto) or reported a transient failure.
# The worker's permanent failures (ClipModelError, WorkerMisconfigured: deployment defects) are
# reported under their own names and are not retried.
GPU_WORKER_ERRORS = ("States.HeartbeatTimeout", "States.Timeout", *LIBRARY_TRANSIENT_ERRORS)
# RunTask itself failed, e.g. no capacity in the AZs right now or an API limit: wait for capacity.
GPU_RUN_TASK_ERRORS = ("ECS.AmazonECSException",)
# An intrinsic whose value is JSON null.
JSON_NULL = "States.StringToJson('null')"


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


def payload_fields(**kinds: type) -> dict[str, str]:
    """A Lambda task's ResultSelector that keeps these fields of the function's result, each a
    str, int, dict or list (a string, a number, an object or an array in the state)."""
    at = {str: sfn.JsonPath.string_at, int: sfn.JsonPath.number_at, dict: sfn.JsonPath.object_at,
          list: sfn.JsonPath.list_at}
    return {name: at[kind](f"$.Payload.{name}") for name, kind in kinds.items()}


def with_span(selector: Mapping[str, Any]) -> dict[str, Any]:
    """A timed task's ResultSelector: ``selector`` and the span its handler put in the result."""
    return {**selector, "span": sfn.JsonPath.object_at("$.Payload.span")}


# A branch's outcome when its task did not answer (not run, or failed and caught): no span.
NO_SPAN = {"span": sfn.JsonPath.string_at(JSON_NULL)}

# $.images: the document's distinct images and where they go, from CollectImages or from
# ExtractOnlyBatch (which collects a document's only batch's images itself). embed_on: "none" |
# "lambda" | "gpu"; caption_on: "none" | "map"; understand_on: "none" | "lambda".
IMAGES_COLLECTED = with_span(payload_fields(
    image_count=int, images_key=str, embed_on=str, caption_on=str, caption_batches_key=str, captions_prefix=str,
    understand_on=str,
))


def _document() -> sfn.TaskInput:
    """The payload of a task that reads the document's batches: its id, its manifest's key, and the
    one batch of a document of one batch (read without the manifest)."""
    return sfn.TaskInput.from_object(
        {"document_id": sfn.JsonPath.string_at("$.plan.document_id"),
         "manifest_key": sfn.JsonPath.string_at("$.plan.manifest_key"),
         "only_batch": sfn.JsonPath.object_at("$.plan.only_batch")}
    )


def lambda_task(
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
        gpu: GpuEmbedding,
        bucket: s3.IBucket,
        config: PipelineConfig,
    ) -> None:
        super().__init__(scope, id_)
        self._functions = functions
        self._gpu = gpu
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
        # What the local engine runs (the stack has a second state machine: stacks/reembed.py).
        self.state_machine.node.default_child.add_metadata("pagemill:state-machine", "documents")
        # ExtractPages' ItemReader reads the batch manifest that Plan wrote under documents/.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{keys.DOCUMENTS_PREFIX}*")])
        )
        # The GPU worker answers EmbedOnGpu's task token (SendTaskSuccess/Failure/Heartbeat on
        # this state machine; CDK runs the task and passes its roles itself).
        self.state_machine.grant_task_response(gpu.task_role)
        self._accept_findings()

    def _accept_findings(self) -> None:
        machine = self.state_machine
        nag.accept(
            machine, "SF1",
            "A Standard workflow: Step Functions keeps every execution's full event history (console, "
            "GetExecutionHistory) for 90 days. CloudWatch gets the ERROR level with execution data, for "
            "Logs Insights and alarms, not a paid second copy of every state transition.",
        )
        nag.accept(
            machine, "IAM5",
            "CDK's LambdaInvoke grant: each pipeline function and its versions and aliases (ARN:*), nothing else.",
            *(f"Resource::<{nag.logical_id(function)}.Arn>:*" for function in self._functions.pipeline),
        )
        nag.accept(
            machine, "IAM5",
            "Distributed Map child executions are named by Step Functions at run time; the grant is limited to "
            "this state machine's executions.",
            RegexAppliesTo(regex=r"/^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:.*$/"),
        )
        nag.accept_bucket_keys(machine, self._bucket)
        nag.accept_wildcard_resource(machine)

    def settle_ended_executions(self, function: lambda_.IFunction, *, dead_letter_queue: sqs.IQueue) -> events.Rule:
        """An execution stopped or timed out as a whole ends without its Catch, so RecordFailure
        never runs; a failed one may have failed in RecordFailure itself: ``function`` settles its
        document (cancelled, or failed with the reason) when it is still running."""
        return events.Rule(
            self,
            "SettleEndedExecutions",
            description="A document execution was stopped, timed out or failed: settle its document's status",
            event_pattern=execution_status_pattern(self.state_machine, "ABORTED", "TIMED_OUT", "FAILED"),
            targets=[targets.LambdaFunction(
                function, dead_letter_queue=dead_letter_queue, retry_attempts=8, max_event_age=Duration.hours(6),
            )],
        )

    def _definition(self) -> sfn.IChainable:
        record_failure = self._record_failure()
        plan = self._plan()
        extract_pages, extract_only_batch, collect_images = (
            self._extract_pages(), self._extract_only_batch(), self._collect_images()
        )
        enrich, write = self._enrich(), self._write()
        for state in (plan, extract_pages, extract_only_batch, collect_images, enrich, write):
            state.add_catch(record_failure, errors=[sfn.Errors.ALL], result_path=f"$.failed.{state.state_id}")

        enrich.next(write).next(sfn.Succeed(self, "Done"))
        # Both leave $.images: the document's images and where they go (IMAGES_COLLECTED).
        extract_pages.next(collect_images).next(enrich)
        extract_only_batch.next(enrich)

        how_to_extract = (
            sfn.Choice(self, "HowToExtract?")
            .when(sfn.Condition.boolean_equals("$.plan.duplicate", True), sfn.Succeed(self, "AlreadyProcessed"))
            # A document of one batch skips the Distributed Map: no Map Run to start (its child
            # execution, its ItemReader's read of the manifest) and none held open against the
            # account's 1,000 (a hard quota that a Map Run per small document would make the cap
            # on documents extracting at once); the same function and policies.
            .when(sfn.Condition.number_equals("$.plan.batch_count", 1), extract_only_batch)
            .otherwise(extract_pages)
        )
        return sfn.Chain.start(plan).next(how_to_extract)

    def _plan(self) -> tasks.LambdaInvoke:
        return lambda_task(
            self,
            "Plan",
            self._functions.plan,
            payload=sfn.TaskInput.from_object(
                {"source": sfn.JsonPath.object_at("$.source"), "execution_arn": sfn.JsonPath.execution_id}
            ),
            result_selector=with_span(payload_fields(
                document_id=str, page_count=int, batch_count=int, manifest_key=str, duplicate=dict, only_batch=dict
            )),
            result_path="$.plan",
        )

    def _extract_pages(self) -> sfn.DistributedMap:
        return self._map_over_items(
            "ExtractPages", "$.plan.manifest_key", self._config.map_concurrency,
            self._extract_batch("ExtractBatch", sfn.TaskInput.from_json_path_at("$"),
                                result_selector=payload_fields(result_key=str, pages=int)),
            tolerated_failure_count=0,
        )

    def _extract_only_batch(self) -> tasks.LambdaInvoke:
        # Its batch's result stays in S3 as the map's items' do; the invocation answers what
        # CollectImages would (pagemill.pipeline.extract_batch), in the same place.
        return self._extract_batch(
            "ExtractOnlyBatch", sfn.TaskInput.from_json_path_at("$.plan.only_batch"),
            result_selector=IMAGES_COLLECTED, result_path="$.images",
        )

    def _extract_batch(
        self, name: str, payload: sfn.TaskInput, *, result_selector: Mapping[str, Any], result_path: str | None = None
    ) -> tasks.LambdaInvoke:
        return lambda_task(
            self, name, self._functions.extract_batch, payload=payload, result_selector=result_selector,
            result_path=result_path,
        )

    def _map_over_items(
        self, id_: str, items_key_path: str, max_concurrency: int, item: sfn.IChainable, **tolerance: int
    ) -> sfn.DistributedMap:
        """A Distributed Map of ``item`` over the JSON array in the work bucket at ``items_key_path``."""
        distributed_map = sfn.DistributedMap(
            self,
            id_,
            # The bucket is given by name so that CDK does not grant s3:GetObject on the whole
            # bucket; the role gets the documents' prefix only (below).
            item_reader=sfn.S3JsonItemReader(
                bucket_name_path=self._bucket.bucket_name, key=sfn.JsonPath.string_at(items_key_path)
            ),
            max_concurrency=max_concurrency,
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_path=sfn.JsonPath.DISCARD,
            **tolerance,
        )
        distributed_map.item_processor(item)
        return distributed_map

    def _collect_images(self) -> tasks.LambdaInvoke:
        return lambda_task(
            self, "CollectImages", self._functions.collect_images, payload=_document(),
            result_selector=IMAGES_COLLECTED, result_path="$.images",
        )

    def _enrich(self) -> sfn.Parallel:
        """The document's images, enriched. A Parallel so that captioning can run beside embedding;
        its result is ``$.enrich.embeddings``: {"index_key": str | null, "count": int, "span": {...} | null}."""
        how_to_embed = (
            sfn.Choice(self, "HowToEmbed?")
            .when(sfn.Condition.string_equals("$.images.embed_on", "none"), self._no_images_to_embed())
            .when(sfn.Condition.string_equals("$.images.embed_on", "lambda"), self._embed_on_lambda())
            .when(sfn.Condition.string_equals("$.images.embed_on", "gpu"), self._embed_on_gpu())
            # No default: any other answer is a defect and fails as States.NoChoiceMatched.
        )
        enrich = sfn.Parallel(
            self,
            "Enrich",
            result_selector={
                "embeddings": sfn.JsonPath.object_at("$[0]"),
                "captions": sfn.JsonPath.object_at("$[1]"),
                "understanding": sfn.JsonPath.object_at("$[2]"),
                **({"chunk_vectors": sfn.JsonPath.object_at("$[3]")} if self._functions.embed_chunks else {}),
            },
            result_path="$.enrich",
        )
        enrich.branch(how_to_embed)
        enrich.branch(self._captions())
        enrich.branch(self._understanding())
        if self._functions.embed_chunks:
            enrich.branch(self._chunk_vectors(self._functions.embed_chunks))
        return enrich

    def _chunk_vectors(self, function: lambda_.Function) -> sfn.IChainable:
        """{"key", "model", "chunks", "error", "span"}: the chunk vectors for search. An embedding service
        that gives none is an answer (error set), not a failure; a crash past the retries is
        caught the same way. Never fails the document: its chunks are written without vectors."""
        embed_chunks = lambda_task(
            self,
            "EmbedChunks",
            function,
            payload=_document(),
            result_selector=with_span(payload_fields(key=str, model=str, chunks=int, error=str)),
        )
        embed_chunks.add_catch(
            sfn.Pass(
                self,
                "ChunkVectorsFailed",
                parameters={
                    "key": sfn.JsonPath.string_at(JSON_NULL),
                    "model": sfn.JsonPath.string_at(JSON_NULL),
                    "chunks": 0,
                    "error": sfn.JsonPath.string_at("$.chunk_vectors_failed.Error"),
                    **NO_SPAN,
                },
            ),
            errors=[sfn.Errors.ALL],
            result_path="$.chunk_vectors_failed",
        )
        return embed_chunks

    def _captions(self) -> sfn.IChainable:
        """{"prefix": str | null, "error": str | null}: where the caption batches' results are
        (null: captions off). Model API trouble is handled inside CaptionBatch (per image, with
        the shared breaker); a batch that still fails is tolerated, and a failing map is caught:
        its images are recorded as skipped by Write, and the document goes on."""
        caption_images = self._map_over_items(
            "CaptionImages", "$.images.caption_batches_key", self._config.caption_concurrency,
            lambda_task(
                self,
                "CaptionBatch",
                self._functions.caption_batch,
                payload=sfn.TaskInput.from_json_path_at("$"),
                result_selector=payload_fields(captioned=int, skipped=int),
            ),
            tolerated_failure_percentage=100,
        )
        prefix = sfn.JsonPath.string_at("$.images.captions_prefix")
        failed = sfn.Pass(
            self,
            "CaptionsFailed",
            parameters={"prefix": prefix, "error": sfn.JsonPath.string_at("$.captions_failed.Error")},
        )
        caption_images.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.captions_failed")
        caption_images.next(
            sfn.Pass(self, "CaptionsDone", parameters={"prefix": prefix, "error": sfn.JsonPath.string_at(JSON_NULL)})
        )
        return (
            sfn.Choice(self, "HowToCaption?")
            .when(
                sfn.Condition.string_equals("$.images.caption_on", "none"),
                sfn.Pass(
                    self,
                    "NoCaptions",
                    parameters={"prefix": sfn.JsonPath.string_at(JSON_NULL), "error": sfn.JsonPath.string_at(JSON_NULL)},
                ),
            )
            .when(sfn.Condition.string_equals("$.images.caption_on", "map"), caption_images)
        )

    def _understanding(self) -> sfn.IChainable:
        """{"key": str | null, "error": str | null, "speech": {...} | null, "span": {...} | null}: the
        model's reading of the document (type, summary, products), or why there is none, its
        summary spoken (see _speech), and UnderstandDocument's span. Never fails the document."""
        understand = lambda_task(
            self,
            "UnderstandDocument",
            self._functions.understand,
            payload=_document(),
            result_selector=with_span({
                "key": sfn.JsonPath.string_at("$.Payload.understanding_key"),
                "speak_on": sfn.JsonPath.string_at("$.Payload.speak_on"),  # "none" | "lambda"
            }),
            result_path="$.understood",
        )
        understand.add_catch(
            sfn.Pass(
                self,
                "UnderstandingFailed",
                parameters={
                    "key": sfn.JsonPath.string_at(JSON_NULL),
                    "error": sfn.JsonPath.string_at("$.understanding_failed.Error"),
                    "speech": sfn.JsonPath.string_at(JSON_NULL),
                    **NO_SPAN,
                },
            ),
            errors=[sfn.Errors.ALL],
            result_path="$.understanding_failed",
        )
        understand.next(self._speech())
        no_understanding = sfn.Pass(
            self,
            "NoUnderstanding",
            parameters={
                "key": sfn.JsonPath.string_at(JSON_NULL), "error": sfn.JsonPath.string_at(JSON_NULL),
                "speech": sfn.JsonPath.string_at(JSON_NULL), **NO_SPAN,
            },
        )
        return (
            sfn.Choice(self, "HowToUnderstand?")
            .when(sfn.Condition.string_equals("$.images.understand_on", "none"), no_understanding)
            .when(sfn.Condition.string_equals("$.images.understand_on", "lambda"), understand)
        )

    def _speech(self) -> sfn.IChainable:
        """After UnderstandDocument: its summary spoken when there is one and speech is on. The
        branch's result gets "speech": SpeakSummary's result (key, format, seconds, voice, ...),
        {"error", "cause"} when it failed after its retries (Write makes that a warning: the
        document is partial, never failed), or null when nothing was to be spoken; and
        UnderstandDocument's span. SpeakSummary's span is in its result, "speech"."""
        key = sfn.JsonPath.string_at("$.understood.key")
        no_error = sfn.JsonPath.string_at(JSON_NULL)
        understood = {"span": sfn.JsonPath.object_at("$.understood.span")}
        speak = lambda_task(
            self,
            "SpeakSummary",
            self._functions.speak_summary,
            payload=sfn.TaskInput.from_object(
                {"document_id": sfn.JsonPath.string_at("$.plan.document_id"), "understanding_key": key}
            ),
            result_selector={"audio": sfn.JsonPath.object_at("$.Payload")},
            result_path="$.spoken",
        )
        speak.add_catch(
            sfn.Pass(
                self,
                "SpeechFailed",
                parameters={"key": key, "error": no_error, "speech": {
                    "error": sfn.JsonPath.string_at("$.speech_failed.Error"),
                    "cause": sfn.JsonPath.string_at("$.speech_failed.Cause"),
                }, **understood},
            ),
            errors=[sfn.Errors.ALL],
            result_path="$.speech_failed",
        )
        speak.next(sfn.Pass(
            self, "SummarySpoken",
            parameters={"key": key, "error": no_error, "speech": sfn.JsonPath.object_at("$.spoken.audio"), **understood},
        ))
        return (
            sfn.Choice(self, "HowToSpeak?")
            .when(sfn.Condition.string_equals("$.understood.speak_on", "lambda"), speak)
            .otherwise(sfn.Pass(
                self, "NoSpeech",
                parameters={"key": key, "error": no_error, "speech": sfn.JsonPath.string_at(JSON_NULL), **understood},
            ))
        )

    def _no_images_to_embed(self) -> sfn.Pass:
        # {"index_key": null, "count": 0, "span": null}. A literal null cannot be written from Python (jsii drops
        # None), so the intrinsic makes it: States.StringToJson('null') is null, on AWS and in moto.
        return sfn.Pass(
            self,
            "NoImagesToEmbed",
            parameters={"index_key": sfn.JsonPath.string_at(JSON_NULL), "count": 0, **NO_SPAN},
        )

    def _embed_on_lambda(self) -> tasks.LambdaInvoke:
        return lambda_task(
            self,
            "EmbedOnLambda",
            self._functions.embed,
            payload=sfn.TaskInput.from_object(
                {
                    "document_id": sfn.JsonPath.string_at("$.plan.document_id"),
                    "images_key": sfn.JsonPath.string_at("$.images.images_key"),
                }
            ),
            result_selector=with_span(payload_fields(index_key=str, count=int)),
        )

    def _embed_on_gpu(self) -> tasks.EcsRunTask:
        """One ECS task on the GPU capacity provider; the worker answers the task token itself
        (SendTaskSuccess with {"index_key", "count", "span", ...}, SendTaskFailure with its error class)
        and beats every few seconds, so a dead instance or container is noticed within
        HeartbeatSeconds."""
        gpu = self._gpu
        environment = {
            "TASK_TOKEN": sfn.JsonPath.task_token,
            "IMAGES_BUCKET": self._bucket.bucket_name,
            "IMAGES_KEY": sfn.JsonPath.string_at("$.images.images_key"),
            # JsonPath.format puts the document id where keys.embeddings_prefix has "{}".
            "OUT_PREFIX": sfn.JsonPath.format(
                keys.embeddings_prefix("{}"), sfn.JsonPath.string_at("$.plan.document_id")
            ),
        }
        task = tasks.EcsRunTask(
            self,
            "EmbedOnGpu",
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            cluster=gpu.cluster,
            task_definition=gpu.task_definition,
            launch_target=tasks.EcsEc2LaunchTarget(
                # A capacity provider strategy, so RunTask carries no LaunchType: ECS scales the
                # group out from zero for a task that waits (PROVISIONING) for a GPU.
                capacity_provider_options=tasks.CapacityProviderOptions.custom(
                    [
                        ecs.CapacityProviderStrategy(
                            capacity_provider=gpu.capacity_provider.capacity_provider_name, weight=1
                        )
                    ]
                )
            ),
            container_overrides=[
                tasks.ContainerOverride(
                    container_definition=gpu.container,
                    environment=[tasks.TaskEnvironmentVariable(name=k, value=v) for k, v in environment.items()],
                )
            ],
            heartbeat_timeout=sfn.Timeout.duration(Duration.seconds(self._config.gpu_heartbeat_seconds)),
            task_timeout=sfn.Timeout.duration(Duration.seconds(GPU_TASK_TIMEOUT_SECONDS)),
            result_selector={
                "index_key": sfn.JsonPath.string_at("$.index_key"),
                "count": sfn.JsonPath.number_at("$.count"),
                "span": sfn.JsonPath.object_at("$.span"),
            },
        )
        task.add_retry(
            errors=list(GPU_WORKER_ERRORS),
            interval=Duration.seconds(10),
            backoff_rate=2.0,
            max_attempts=3,
            max_delay=Duration.seconds(120),
            jitter_strategy=sfn.JitterType.FULL,
        )
        task.add_retry(
            errors=list(GPU_RUN_TASK_ERRORS),
            interval=Duration.seconds(30),
            backoff_rate=2.0,
            max_attempts=4,
            max_delay=Duration.seconds(300),
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _write(self) -> tasks.LambdaInvoke:
        return lambda_task(
            self,
            "Write",
            self._functions.write,
            payload=sfn.TaskInput.from_object(
                {
                    "document_id": sfn.JsonPath.string_at("$.plan.document_id"),
                    "manifest_key": sfn.JsonPath.string_at("$.plan.manifest_key"),
                    "only_batch": sfn.JsonPath.object_at("$.plan.only_batch"),
                    "embeddings_index_key": sfn.JsonPath.string_at("$.enrich.embeddings.index_key"),
                    "captions": sfn.JsonPath.object_at("$.enrich.captions"),
                    "understanding": sfn.JsonPath.object_at("$.enrich.understanding"),
                    "speech": sfn.JsonPath.object_at("$.enrich.understanding.speech"),
                    **(
                        {"chunk_vectors": sfn.JsonPath.object_at("$.enrich.chunk_vectors")}
                        if self._functions.embed_chunks else {}
                    ),
                    "execution_arn": sfn.JsonPath.execution_id,
                    "started_at": sfn.JsonPath.execution_start_time,
                    # By where they are kept (a span names its state); the branches' are in their
                    # outcomes (understanding, speech, chunk_vectors).
                    "spans": {
                        "plan": sfn.JsonPath.object_at("$.plan.span"),
                        "images": sfn.JsonPath.object_at("$.images.span"),
                        "embeddings": sfn.JsonPath.object_at("$.enrich.embeddings.span"),
                    },
                }
            ),
            # status: succeeded or partial, and the warnings' codes (their messages are in the row):
            # `pagemill status --aws` and the DocumentPartial rule read them.
            result_selector=payload_fields(pages=int, chunks=int, images=int, status=str, warnings=list),
            result_path="$.written",
        )

    def _record_failure(self) -> sfn.IChainable:
        record = lambda_task(
            self,
            "RecordFailure",
            self._functions.record_failure,
            payload=sfn.TaskInput.from_object(
                {"state": sfn.JsonPath.entire_payload, "execution_arn": sfn.JsonPath.execution_id}
            ),
            result_selector=payload_fields(error=str, reason=str),
            result_path="$.recorded",
            transient_attempts=RECORD_FAILURE_ATTEMPTS,
        )
        return record.next(
            sfn.Fail(self, "DocumentFailed", error_path="$.recorded.error", cause_path="$.recorded.reason")
        )
