"""How a construct accepts a cdk-nag ``AwsSolutions`` finding, with its reason, next to the
resources it is about.

app.py applies ``AwsSolutionsChecks`` to the app and tests/infrastructure/test_nag.py fails on
any finding that is neither fixed in the stack nor accepted by the construct that owns it.
Wildcard permissions (IAM5) are accepted by naming the exact wildcard (``applies_to``), so a new
wildcard grant is a new finding. Acceptances walk the construct's children when they are made:
a construct makes them last, once its resources and grants exist.
"""

from __future__ import annotations

from aws_cdk import CfnElement, Stack
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

from pagemill import keys

# Actions this stack grants on Resource "*", and why "*". test_nag checks every such statement
# against this list: that check is what keeps the ``Resource::*`` acceptances honest.
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray has no resource-level permissions",
    "xray:GetSamplingTargets": "X-Ray has no resource-level permissions",
    "logs:CreateLogDelivery": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:GetLogDelivery": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:UpdateLogDelivery": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:DeleteLogDelivery": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:ListLogDeliveries": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:PutResourcePolicy": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:DescribeResourcePolicies": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "logs:DescribeLogGroups": "Step Functions' vended log delivery: AWS documents these on '*' only",
    "ecs:DescribeTasks": "the GPU task's id exists only once RunTask returns (CDK's EcsRunTask grant)",
    "ecs:StopTask": "the GPU task's id exists only once RunTask returns (CDK's EcsRunTask grant)",
    "ecr:GetAuthorizationToken": "ECR's registry login has no resource-level permissions",
    "ecs:DiscoverPollEndpoint": "the ECS agent's endpoint discovery has no resource-level permissions",
    "ecs:Poll": "the ECS agent; CDK conditions it on this cluster's ARN",
    "ecs:StartTelemetrySession": "the ECS agent; CDK conditions it on this cluster's ARN",
    "logs:CreateLogStream": "the ECS agent's own logs (CDK's default instance policy)",
    "logs:PutLogEvents": "the ECS agent's own logs (CDK's default instance policy)",
}

BUCKET_GRANT_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*")


def accept(construct: IConstruct, rule: str, reason: str, *applies_to: str | RegexAppliesTo) -> None:
    """Accept the finding ``AwsSolutions-<rule>`` on ``construct`` and its children."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=f"AwsSolutions-{rule}", reason=reason, applies_to=list(applies_to) or None)],
        apply_to_children=True,
    )


def accept_bucket_keys(construct: IConstruct, bucket: s3.IBucket) -> None:
    """Grants on object keys under uploads/ or documents/ of the pipeline's bucket."""
    prefixes = "|".join(p.rstrip("/") for p in (keys.UPLOADS_PREFIX, keys.DOCUMENTS_PREFIX))
    accept(
        construct, "IAM5",
        "Object keys carry the document id (documents/<id>/...) or the uploaded file's name (uploads/...), "
        "known only at run time; each grant is the narrowest prefix, or fixed file name, its stage uses.",
        RegexAppliesTo(regex=rf"/^Resource::<{logical_id(bucket)}\.Arn>\/({prefixes})\/.*$/"),
    )


def accept_wildcard_resource(construct: IConstruct) -> None:
    accept(
        construct, "IAM5",
        "Only actions that AWS authorizes on '*' (stacks/nag.py WILDCARD_RESOURCE_ACTIONS, checked by test_nag).",
        "Resource::*",
    )


def logical_id(construct: IConstruct) -> str:
    resource = construct.node.default_child
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to name")
    return Stack.of(construct).get_logical_id(resource)
