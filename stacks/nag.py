"""The cdk-nag ``AwsSolutions`` findings this stack accepts, each with its reason, in one place.

app.py applies ``AwsSolutionsChecks`` to the app and tests/infrastructure/test_nag.py fails on
any finding that is neither fixed in the stack nor accepted here. Each acceptance sits on the
construct the finding is about; wildcard permissions (IAM5) are accepted by naming the exact
wildcard (``applies_to``), so a new wildcard grant is a new finding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import CfnElement, Stack
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

from stacks.storage import DOCUMENTS_PREFIX, UPLOADS_PREFIX

if TYPE_CHECKING:
    from stacks.pipeline_stack import PipelineStack

# Actions this stack grants on Resource "*", and why "*". test_nag checks every such statement
# against this list: that check is what keeps the ``Resource::*`` acceptances below honest.
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

_BUCKET_GRANT_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*")


def suppress_findings(stack: PipelineStack) -> None:
    """Accept, with reasons, the findings the stack keeps on purpose."""
    bucket_keys = _bucket_key_wildcards(stack)
    _accept(
        stack.storage.bucket, "S1",
        "Object access is by the pipeline's own roles; an access-log bucket would be a second bucket, and the "
        "local engine deploys the template's single bucket. Audit object access with CloudTrail S3 data events.",
    )
    _accept(
        stack.storage.dead_letter_queue, "SQS3",
        "This queue is the dead-letter queue (of the upload rule's target and the trigger's async invocations).",
    )
    _accept(
        stack.captions, "SMG4",
        "The Anthropic API key is issued in the Anthropic console; there is no API a rotation function could "
        "call to issue a new one. Rotate by putting a new value into the secret.",
    )
    _functions(stack, bucket_keys)
    _state_machine(stack, bucket_keys)
    _gpu(stack, bucket_keys)
    _database(stack)


def _functions(stack: PipelineStack, bucket_keys: RegexAppliesTo) -> None:
    for function in (c for c in stack.functions.node.find_all() if isinstance(c, lambda_.Function)):
        _accept(
            function, "L1",
            "Python 3.12 on purpose: each bundle's wheels are resolved for CPython 3.12 (stacks/functions.py "
            "RUNTIME and the pip --python-version); a newer runtime is a change of both, tested together.",
        )
        _accept(
            function, "IAM4",
            "AWSLambdaBasicExecutionRole grants only logs:CreateLogGroup/CreateLogStream/PutLogEvents; each "
            "function writes to its own log group, created by the stack with a retention.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        _accept(
            function, "IAM5",
            "Bucket.grant_read/grant_put action groups (GetObject* includes GetObjectVersion: a stage reads the "
            "exact object version that started the execution), on the key prefixes accepted separately.",
            *(f"Action::{action}" for action in _BUCKET_GRANT_ACTIONS),
        )
        _accept_bucket_keys(function, bucket_keys)
        _accept_wildcard_resource(function)


def _state_machine(stack: PipelineStack, bucket_keys: RegexAppliesTo) -> None:
    machine = stack.documents.state_machine
    _accept(
        machine, "SF1",
        "A Standard workflow: Step Functions keeps every execution's full event history (console, "
        "GetExecutionHistory) for 90 days. CloudWatch gets the ERROR level with execution data, for "
        "Logs Insights and alarms, not a paid second copy of every state transition.",
    )
    _accept(
        machine, "IAM5",
        "CDK's LambdaInvoke grant: each pipeline function and its versions and aliases (ARN:*), nothing else.",
        *(f"Resource::<{_logical_id(function)}.Arn>:*" for function in stack.functions.pipeline),
    )
    _accept(
        machine, "IAM5",
        "Distributed Map child executions are named by Step Functions at run time; the grant is limited to "
        "this state machine's executions.",
        RegexAppliesTo(regex=r"/^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:.*$/"),
    )
    _accept_bucket_keys(machine, bucket_keys)
    _accept_wildcard_resource(machine)


def _gpu(stack: PipelineStack, bucket_keys: RegexAppliesTo) -> None:
    gpu = stack.gpu
    _accept(
        gpu.auto_scaling_group, "AS3",
        "ECS managed scaling drives this group (0..gpu_max_instances); task failures and timeouts alarm "
        "through the Monitoring topic, instance launches and terminations need no separate notice.",
    )
    _accept(
        gpu.task_definition, "ECS2",
        "The one environment variable is the worker's heartbeat interval, not a secret; the task token and "
        "S3 keys arrive as per-task overrides.",
    )
    _accept(
        gpu.instance_role, "IAM5",
        "CDK's ECS capacity policy: ecs:Submit* (container and task state reports) on this cluster only.",
        "Action::ecs:Submit*",
    )
    _accept_wildcard_resource(gpu.instance_role)
    if gpu.task_definition.execution_role:  # made by CDK for the image pull and the log driver
        _accept_wildcard_resource(gpu.task_definition.execution_role)
    _accept_bucket_keys(gpu.task_role, bucket_keys)


def _database(stack: PipelineStack) -> None:
    """The database (stacks/database.py), the functions in the VPC, and the migrations' provider."""
    functions = stack.functions
    for function in functions.database_clients:
        _accept(
            function, "IAM4",
            "AWSLambdaVPCAccessExecutionRole: the network-interface actions Lambda needs to place the function "
            "in the VPC's isolated subnets (AWS authorizes ec2:CreateNetworkInterface and friends on '*' only).",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        )
    if stack.database:
        _accept(
            stack.database.instance, "RDS3",
            "Single-AZ by default for cost; database_multi_az=true adds a standby. Daily backups "
            "(database_backup_days) and a final snapshot cover data loss; during an outage Write fails with "
            "DatabaseUnavailable, which the state machine retries with backoff.",
        )
        _accept(
            stack.database.instance, "RDS11",
            "The default port 5432: only the proxy's and the rotation function's security groups reach the "
            "instance, in subnets without a route out; another port number hides nothing from either.",
        )
    provider = stack.migrations.provider
    _accept(
        provider, "IAM4",
        "CDK's custom-resource Provider framework function: AWSLambdaBasicExecutionRole (its own logs only).",
        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    )
    _accept(
        provider, "IAM5",
        "CDK's Provider framework invokes the migration function and its versions (ARN:*), nothing else.",
        f"Resource::<{_logical_id(functions.migrate)}.Arn>:*",
    )


def _bucket_key_wildcards(stack: PipelineStack) -> RegexAppliesTo:
    """Grants on object keys under uploads/ or documents/ of the pipeline's bucket."""
    bucket = _logical_id(stack.storage.bucket)
    prefixes = "|".join(p.rstrip("/") for p in (UPLOADS_PREFIX, DOCUMENTS_PREFIX))
    return RegexAppliesTo(regex=rf"/^Resource::<{bucket}\.Arn>\/({prefixes})\/.*$/")


def _accept_bucket_keys(construct: IConstruct, bucket_keys: RegexAppliesTo) -> None:
    _accept(
        construct, "IAM5",
        "Object keys carry the document id (documents/<id>/...) or the uploaded file's name (uploads/...), "
        "known only at run time; each grant is the narrowest prefix, or fixed file name, its stage uses.",
        bucket_keys,
    )


def _accept_wildcard_resource(construct: IConstruct) -> None:
    _accept(
        construct, "IAM5",
        "Only actions that AWS authorizes on '*' (stacks/nag.py WILDCARD_RESOURCE_ACTIONS, checked by test_nag).",
        "Resource::*",
    )


def _accept(construct: IConstruct, rule: str, reason: str, *applies_to: str | RegexAppliesTo) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=f"AwsSolutions-{rule}", reason=reason, applies_to=list(applies_to) or None)],
        apply_to_children=True,
    )


def _logical_id(construct: IConstruct) -> str:
    resource = construct.node.default_child
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to name")
    return Stack.of(construct).get_logical_id(resource)
