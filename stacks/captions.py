"""What the caption functions share across invocations: the DynamoDB table of the circuit breaker
and the per-document token budgets, and the Anthropic API key's secret."""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import nag
from stacks.config import PipelineConfig
from stacks.grants import grant_secret_read

# pagemill.captions.breaker/budget: the partition key and the TTL attribute of every item (a test
# keeps them equal; infrastructure does not import the library).
TABLE_KEY = "pk"
TTL_ATTRIBUTE = "expires_at"


class CaptionState(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, id_)
        # Small, hot items (one per model, one per document in flight) that expire: on-demand
        # capacity, no backups worth keeping.
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=TABLE_KEY, type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The API key's secret: the one named in the context, or one made here (its value a random
        # placeholder the API rejects with 401, which becomes the skip reason) for the operator
        # to fill after the first deploy.
        self.api_key_arn: str | None = None
        self._created: secretsmanager.Secret | None = None
        anthropic = config.caption_provider == "anthropic"
        if anthropic and config.anthropic_secret_arn:
            self.api_key_arn = config.anthropic_secret_arn
        elif anthropic:
            self._created = secretsmanager.Secret(
                self, "ApiKey", description="Anthropic API key for pagemill captions (the key as plain text)"
            )
            self.api_key_arn = self._created.secret_arn
            CfnOutput(
                self, "ApiKeySecret", value=self._created.secret_name,
                description="aws secretsmanager put-secret-value --secret-id <this> --secret-string <key>",
            )
        nag.accept(
            self, "SMG4",
            "The Anthropic API key is issued in the Anthropic console; there is no API a rotation function could "
            "call to issue a new one. Rotate by putting a new value into the secret.",
        )

    def grant_api_key(self, function: lambda_.Function) -> None:
        secret = self._created or self.api_key_arn
        if secret is not None:
            grant_secret_read(function, secret)
