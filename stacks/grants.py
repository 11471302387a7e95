"""IAM grants CDK has no one-liner for."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


def grant_secret_read(function: lambda_.Function, secret: secretsmanager.ISecret | str) -> None:
    """Read a secret of this stack (exact ARN) or one named by its ARN in the configuration."""
    if not isinstance(secret, str):
        secret.grant_read(function)
        return
    # Both spellings of a configured ARN: complete (with Secrets Manager's 6-character suffix) or partial.
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret, f"{secret}-??????"],
        )
    )


def pushed_repository(scope: Construct, id_: str, image: dict[str, str]) -> ecr.IRepository:
    """The ECR repository of an image already pushed (``PipelineConfig.gpu_image`` and the like),
    so that a grant to pull names that repository only."""
    partition = Stack.of(scope).partition
    return ecr.Repository.from_repository_attributes(
        scope, id_, repository_name=image["repository"],
        repository_arn=f"arn:{partition}:ecr:{image['region']}:{image['account']}:repository/{image['repository']}",
    )
