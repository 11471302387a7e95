"""The pagemill stack: composes storage, network, database, functions, the GPU service, the state
machine, the HTTP API and monitoring from one config, and wires them where they meet. Each construct owns its
resources, grants and cdk-nag acceptances; none imports another's module but for its type."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from stacks.api import HttpApi
from stacks.captions import CaptionState
from stacks.config import PipelineConfig
from stacks.database import Database, DatabaseAccess
from stacks.functions import PipelineFunctions
from stacks.gpu import GpuEmbedding
from stacks.migrations import SchemaMigrations
from stacks.monitoring import Monitoring
from stacks.network import Network
from stacks.reembed import ReembedStateMachine
from stacks.state_machine import DocumentStateMachine
from stacks.storage import Storage


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        storage = Storage(self, "Storage")
        captions = CaptionState(self, "Captions", config=config)
        # Bring your own database (database_secret_arn), or the stack's own, in the VPC.
        database: Database | None = None
        network = Network(
            self, "Network", isolated_subnets=not config.database_secret_arn, log_retention=config.log_retention,
            bedrock_runtime=config.text_embedder == "titan",
        )
        if config.database_secret_arn:
            access = DatabaseAccess(secret=config.database_secret_arn)
        else:
            database = Database(self, "Database", network=network, config=config)
            access = database.access
        functions = PipelineFunctions(
            self, "Functions", bucket=storage.bucket, captions=captions, database=access, config=config
        )
        SchemaMigrations(
            self, "Migrations", function=functions.migrate, log_retention=config.log_retention,
            after=[database, network] if database else [],
        )
        gpu = GpuEmbedding(self, "Gpu", bucket=storage.bucket, network=network, config=config)
        documents = DocumentStateMachine(
            self, "Documents", functions=functions, gpu=gpu, bucket=storage.bucket, config=config
        )

        # The trigger starts executions; the upload rule invokes the trigger.
        functions.trigger.add_environment("STATE_MACHINE_ARN", documents.state_machine.state_machine_arn)
        documents.state_machine.grant_start_execution(functions.trigger)
        functions.watch.add_environment("STATE_MACHINE_ARN", documents.state_machine.state_machine_arn)
        documents.state_machine.grant(functions.watch, "states:ListExecutions")
        storage.trigger_on_upload(functions.trigger)
        documents.settle_ended_executions(functions.settle, dead_letter_queue=storage.dead_letter_queue)

        # `pagemill reembed --aws`: after the text embedder changed, every chunk gets a vector of the new one.
        reembed = ReembedStateMachine(self, "Reembed", functions=functions, config=config) \
            if config.text_embedder != "off" else None

        api = HttpApi(
            self, "Api", function=functions.api, bucket=storage.bucket, state_machine=documents.state_machine,
            config=config,
        )

        monitoring = Monitoring(
            self, "Monitoring", state_machine=documents.state_machine, dead_letter_queue=storage.dead_letter_queue,
            alarm_email=config.alarm_email, watch=functions.watch,
            stuck_after=Duration.minutes(config.stuck_after_minutes), functions=functions.by_name,
            alarms=[*(database.alarms() if database else ()), *api.alarms()],
        )

        CfnOutput(self, "BucketName", value=storage.bucket.bucket_name, description="Upload PDFs under uploads/")
        CfnOutput(self, "StateMachineArn", value=documents.state_machine.state_machine_arn)
        if reembed:
            CfnOutput(self, "ReembedStateMachineArn", value=reembed.state_machine.state_machine_arn,
                      description="pagemill reembed --aws starts it")
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn, description="Alarms and failed documents")
        if database:
            CfnOutput(self, "DatabaseProxyEndpoint", value=database.proxy.endpoint,
                      description="PostgreSQL for the functions (TLS; from inside the VPC)")
            CfnOutput(self, "DatabaseSecretArn", value=database.secret.secret_arn,
                      description="PostgreSQL username and password (rotated every 30 days)")
