"""IAM grants CDK has no one-liner for."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_


def grant_secret_read(function: lambda_.Function, secret_arn: str) -> None:
    # Both spellings: a complete ARN (with Secrets Manager's 6-character suffix) and a partial one.
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret_arn, f"{secret_arn}-??????"],
        )
    )
