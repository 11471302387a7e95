"""Schema migrations at deploy: a custom resource whose handler (lambdas/migrate) applies
pagemill/db/migrations/*.sql with pagemill's migration runner.

The resource carries a hash of the migration files, so CloudFormation sends it an Update, and the
function runs again, exactly on the deploys that change them; a deploy without new migrations
leaves the database alone. The Provider framework answers CloudFormation (its function sits
outside the VPC), so the migration function needs no route to CloudFormation's response URL.
"""

from __future__ import annotations

import hashlib

from aws_cdk import CustomResource
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct, IDependable

from stacks import nag
from stacks.paths import MIGRATIONS_DIR

RESOURCE_TYPE = "Custom::PagemillSchema"


def migrations_hash() -> str:
    """sha256 over every migration's file name and content, in order."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


class SchemaMigrations(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        function: lambda_.IFunction,
        log_retention: logs.RetentionDays,
        after: list[IDependable],
    ) -> None:
        """``after``: what must exist before the function can reach the database (the instance,
        its proxy, the rotation, the network's endpoints)."""
        super().__init__(scope, id_)
        self.provider = cr.Provider(
            self, "Provider", on_event_handler=function,
            log_group=logs.LogGroup(self, "ProviderLogs", retention=log_retention),
        )
        self.resource = CustomResource(
            self, "Schema", service_token=self.provider.service_token, resource_type=RESOURCE_TYPE,
            properties={"MigrationsHash": migrations_hash()},
        )
        for dependency in after:
            self.resource.node.add_dependency(dependency)
        nag.accept(
            self.provider, "IAM4",
            "CDK's custom-resource Provider framework function: AWSLambdaBasicExecutionRole (its own logs only).",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        nag.accept(
            self.provider, "IAM5",
            "CDK's Provider framework invokes the migration function and its versions (ARN:*), nothing else.",
            f"Resource::<{nag.logical_id(function)}.Arn>:*",
        )
