"""The HTTP API and console on AWS: API Gateway (HTTP API) → the API Lambda (lambdas/api).

Every route needs IAM authorization (SigV4; no anonymous access); CORS answers the console's
origins only; the default stage throttles and writes access logs; ``alarms()`` are what pages on
5xx and latency. The function may put objects under uploads/ only, read what the pipeline wrote
under documents/, start, stop and redrive executions of this state machine only, and reaches
PostgreSQL through the proxy like the pipeline's database functions (PipelineFunctions builds it)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import RegexAppliesTo
from constructs import Construct

from pagemill import keys
from stacks import nag
from stacks.alarms import AlarmSpec
from stacks.config import PipelineConfig

ANY = "*"  # stands for a file name or a document id in the keys' IAM patterns
# One log line per request: who, what, how it ended, how long it took.
_ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","caller":"$context.identity.userArn",'
    '"time":"$context.requestTime","method":"$context.httpMethod","path":"$context.path",'
    '"status":"$context.status","latencyMs":"$context.responseLatency",'
    '"integrationError":"$context.integrationErrorMessage","bytes":"$context.responseLength"}'
)
# p95 latency that pages: well under the function's timeout (API Gateway's limit is 30 s).
LATENCY_ALARM_MS = 5000
_CORS_HEADERS = ["authorization", "content-type", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"]


class HttpApi(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        function: lambda_.Function,
        bucket: s3.IBucket,
        state_machine: sfn.StateMachine,
        config: PipelineConfig,
    ) -> None:
        super().__init__(scope, id_)
        self._grant(function, bucket, state_machine)
        function.add_environment("STATE_MACHINE_ARN", state_machine.state_machine_arn)

        origins = config.api_cors_origin_list
        self.api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=f"{Aws.STACK_NAME}-api",
            description="pagemill: upload, progress, stats, cancel, redrive, search, and the console",
            default_authorizer=authorizers.HttpIamAuthorizer(),
            default_integration=integrations.HttpLambdaIntegration("Api", function),
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=origins, allow_methods=[apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST],
                allow_headers=_CORS_HEADERS, max_age=Duration.hours(1),
            ) if origins else None,
            create_default_stage=False,
        )
        access_logs = logs.LogGroup(self, "AccessLogs", retention=config.log_retention)
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst),
        )
        self.stage.node.default_child.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn, format=_ACCESS_LOG_FORMAT,
        )
        nag.accept(
            function, "IAM5",
            "The HTTP API describes, stops and redrives the executions of this state machine, and reads the item "
            "counts of their ExtractPages map runs: their names exist only at run time, so the grant names this "
            "state machine's executions and map runs, nothing wider.",
            RegexAppliesTo(regex=rf"/^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                                 rf"(execution|mapRun):<{nag.logical_id(state_machine)}\.Name>[:/]\*$/"),
        )
        CfnOutput(Stack.of(self), "ApiUrl", value=self.stage.url,
                  description="The HTTP API and console (IAM-signed requests)")

    def alarms(self) -> list[AlarmSpec]:
        """Any 5xx, and p95 latency over LATENCY_ALARM_MS, for Monitoring."""
        five_minutes = Duration.minutes(5)
        return [
            AlarmSpec(
                "Api5xx", self.stage.metric_server_error(period=five_minutes, statistic="Sum"), 1,
                "pagemill: the HTTP API answered with a 5xx: see its access logs and the API function's log",
            ),
            AlarmSpec(
                "ApiLatency", self.stage.metric_latency(period=five_minutes, statistic="p95"), LATENCY_ALARM_MS,
                f"pagemill: the HTTP API's p95 latency reached {LATENCY_ALARM_MS} ms over 5 minutes",
            ),
        ]

    @staticmethod
    def _grant(function: lambda_.Function, bucket: s3.IBucket, state_machine: sfn.StateMachine) -> None:
        bucket.grant_put(function, f"{keys.UPLOADS_PREFIX}{ANY}")
        # Progress (the manifest, batch results), images and audio; HeadBucket for /health.
        bucket.grant_read(function, f"{keys.DOCUMENTS_PREFIX}{ANY}")
        stack = Stack.of(function)
        name = state_machine.state_machine_name
        executions, map_runs = (
            stack.format_arn(service="states", resource=kind, resource_name=f"{name}{sep}{ANY}",
                             arn_format=ArnFormat.COLON_RESOURCE_NAME)
            for kind, sep in (("execution", ":"), ("mapRun", "/"))
        )
        state_machine.grant_start_execution(function)
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["states:DescribeStateMachine", "states:ListMapRuns"], resources=[state_machine.state_machine_arn],
        ))
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution",
                     "states:RedriveExecution"],
            resources=[executions],
        ))
        function.add_to_role_policy(iam.PolicyStatement(actions=["states:DescribeMapRun"], resources=[map_runs]))
