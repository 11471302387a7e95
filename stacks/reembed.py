"""The reembed state machine: `pagemill reembed --aws` after the text embedder changed.

    ReembedBatch ─► AllReembedded? ─ chunks remain ─► ReembedBatch
                                   └ none ─────────► BuildChunkIndex ─► Reembedded

ReembedBatch (in the database's VPC) gives up to ``max_chunks`` chunks a vector of the configured
model, a committed transaction per batch, and says how many chunks still lack one; the loop ends
when none do, and the model's HNSW index is built once, after the load (pagemill.db.chunk_vectors:
the same calls `pagemill reembed` makes locally). A failed or stopped execution loses no batch: a
new one goes on from where it stopped. Tasks time out and retry like the document state machine's;
an embedding outage (EmbeddingUnavailable) is waited out a few times, minutes apart.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import nag
from stacks.config import PipelineConfig
from stacks.functions import PipelineFunctions
from stacks.state_machine import lambda_task, payload_fields

# Chunks one ReembedBatch invocation re-embeds at most: about 8 minutes of Titan at 4 requests in
# flight (~40 chunks/s), seconds of the offline model. A million chunks is 50 iterations.
MAX_CHUNKS_PER_INVOCATION = 20_000
BATCH_SIZE = 256
# A million chunks on Titan take about 7 hours (one request per chunk, 4 in flight).
EXECUTION_TIMEOUT = Duration.hours(24)
OUTAGE_ERRORS = ("EmbeddingUnavailable",)


class ReembedStateMachine(Construct):
    def __init__(
        self, scope: Construct, id_: str, *, functions: PipelineFunctions, config: PipelineConfig
    ) -> None:
        super().__init__(scope, id_)
        batch_function, index_function = functions.reembed_batch, functions.build_chunk_index
        if batch_function is None or index_function is None:
            raise ValueError("chunk embeddings are off: there is nothing to re-embed")
        self._functions = (batch_function, index_function)
        batch = lambda_task(
            self, "ReembedBatch", batch_function,
            payload=sfn.TaskInput.from_object({"max_chunks": MAX_CHUNKS_PER_INVOCATION, "batch_size": BATCH_SIZE}),
            result_selector=payload_fields(model=str, embedded=int, remaining=int), result_path="$.batch",
        )
        # Bedrock throttled or down past the function's own retries: wait minutes, not seconds.
        batch.add_retry(errors=list(OUTAGE_ERRORS), interval=Duration.minutes(2), backoff_rate=2.0, max_attempts=3,
                        jitter_strategy=sfn.JitterType.FULL)
        index = lambda_task(
            self, "BuildChunkIndex", index_function, payload=sfn.TaskInput.from_object({}),
            result_selector=payload_fields(model=str, index_seconds=int), result_path="$.index",
        )
        definition = batch.next(
            sfn.Choice(self, "AllReembedded?")
            .when(sfn.Condition.number_greater_than("$.batch.remaining", 0), batch)
            .otherwise(index.next(sfn.Succeed(self, "Reembedded")))
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=config.log_retention)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ERROR, include_execution_data=True),
        )
        self.state_machine.node.default_child.add_metadata("pagemill:state-machine", "reembed")
        self._accept_findings()

    def _accept_findings(self) -> None:
        machine = self.state_machine
        nag.accept(
            machine, "SF1",
            "A Standard workflow: Step Functions keeps every execution's full event history for 90 days; "
            "CloudWatch gets the ERROR level with execution data.",
        )
        nag.accept(
            machine, "IAM5",
            "CDK's LambdaInvoke grant: each reembed function and its versions and aliases (ARN:*), nothing else.",
            *(f"Resource::<{nag.logical_id(function)}.Arn>:*" for function in self._functions),
        )
        nag.accept_wildcard_resource(machine)
