"""The bucket (uploads in, documents' work and results out) and the upload trigger:
EventBridge "Object Created" for ``uploads/*.pdf`` → the trigger function."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from pagemill.keys import UPLOADS_PREFIX
from stacks import nag

# EventBridge wildcards are case-sensitive: accept the two spellings people actually use.
UPLOAD_KEY_PATTERNS = (f"{UPLOADS_PREFIX}*.pdf", f"{UPLOADS_PREFIX}*.PDF")


class Storage(Construct):
    """One versioned, encrypted, private bucket. Every object version is kept for a while, so an
    execution always reads exactly the version that triggered it."""

    def __init__(self, scope: Construct, id_: str, *, noncurrent_version_days: int = 30) -> None:
        super().__init__(scope, id_)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
        # EventBridge notifications as a plain bucket property. (``event_bridge_enabled=True`` would
        # do the same through a custom resource with a Lambda function of its own.)
        bucket_resource: s3.CfnBucket = self.bucket.node.default_child
        bucket_resource.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
        # Upload events that could not be handed to the trigger, or that the trigger failed on
        # after its retries: kept here for inspection and redrive, never lost silently.
        self.dead_letter_queue = sqs.Queue(
            self,
            "TriggerDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        nag.accept(
            self.bucket, "S1",
            "Object access is by the pipeline's own roles; an access-log bucket would be a second bucket, and the "
            "local engine deploys the template's single bucket. Audit object access with CloudTrail S3 data events.",
        )
        nag.accept(
            self.dead_letter_queue, "SQS3",
            "This queue is the dead-letter queue (of the upload rule's target and the trigger's async invocations).",
        )

    def trigger_on_upload(self, function: lambda_.IFunction) -> events.Rule:
        """Invoke ``function`` once per object version created under ``uploads/`` ending in .pdf."""
        rule = events.Rule(
            self,
            "UploadRule",
            description="A PDF was uploaded: start its document pipeline execution",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.bucket.bucket_name]},
                    "object": {"key": events.Match.any_of(*(events.Match.wildcard(p) for p in UPLOAD_KEY_PATTERNS))},
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=8,
                max_event_age=Duration.hours(6),
            )
        )
        # EventBridge invokes asynchronously: an event the function itself fails on is retried by
        # Lambda, then lands in the same queue.
        function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )
        return rule
