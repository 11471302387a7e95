"""The pagemill stack: composes storage, functions, the GPU service and the state machine from one config."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from stacks.captions import CaptionState
from stacks.config import PipelineConfig
from stacks.functions import PipelineFunctions
from stacks.gpu import GpuEmbedding
from stacks.monitoring import Monitoring
from stacks.nag import suppress_findings
from stacks.state_machine import DocumentStateMachine
from stacks.storage import Storage


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        storage = Storage(self, "Storage")
        captions = CaptionState(self, "Captions", config=config)
        functions = PipelineFunctions(self, "Functions", bucket=storage.bucket, captions=captions, config=config)
        gpu = GpuEmbedding(self, "Gpu", bucket=storage.bucket, config=config)
        documents = DocumentStateMachine(
            self, "Documents", functions=functions, gpu=gpu, bucket=storage.bucket, config=config
        )

        monitoring = Monitoring(
            self, "Monitoring", state_machine=documents.state_machine, dead_letter_queue=storage.dead_letter_queue,
            alarm_email=config.alarm_email, watch=functions.watch,
            stuck_after=Duration.minutes(config.stuck_after_minutes),
            functions={
                "Plan": functions.plan, "ExtractBatch": functions.extract_batch,
                "CollectImages": functions.collect_images, "Embed": functions.embed,
                "CaptionBatch": functions.caption_batch, "Understand": functions.understand,
                "Write": functions.write, "RecordFailure": functions.record_failure, "Trigger": functions.trigger,
                "Watch": functions.watch,
            },
        )

        # The trigger starts executions; the upload rule invokes the trigger.
        functions.trigger.add_environment("STATE_MACHINE_ARN", documents.state_machine.state_machine_arn)
        documents.state_machine.grant_start_execution(functions.trigger)
        functions.watch.add_environment("STATE_MACHINE_ARN", documents.state_machine.state_machine_arn)
        documents.state_machine.grant(functions.watch, "states:ListExecutions")
        storage.trigger_on_upload(functions.trigger)

        self.storage = storage
        self.captions = captions
        self.monitoring = monitoring
        self.functions = functions
        self.gpu = gpu
        self.documents = documents
        CfnOutput(self, "BucketName", value=storage.bucket.bucket_name, description="Upload PDFs under uploads/")
        CfnOutput(self, "StateMachineArn", value=documents.state_machine.state_machine_arn)
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn, description="Alarms and failed documents")
        suppress_findings(self)
