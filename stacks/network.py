"""The stack's one VPC, shared by the GPU instances and the database.

    2 AZs ─ public subnets:   GPU instances (public IPs, no inbound rule)
          └ isolated subnets: PostgreSQL, RDS Proxy, and the functions that talk to PostgreSQL
                              (only when the stack has its own database)

No NAT gateway (about 32 USD a month per AZ, idle or not): nothing in the VPC needs the internet.
The GPU worker reaches AWS APIs through its public address; the functions in the isolated subnets
reach S3 through a gateway endpoint (free), and Secrets Manager and Step Functions (the HTTP API's
function starts, describes and stops executions) through interface endpoints; and, when chunks are
embedded by Titan, Bedrock's runtime (the HTTP API embeds search queries, ReembedBatch chunks).

Rejected connections are logged (VPC flow logs, REJECT only: what someone tried and was refused,
at a fraction of the volume of all traffic).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

MAX_AZS = 2  # an RDS subnet group needs two
HTTPS = 443


class Network(Construct):
    def __init__(
        self, scope: Construct, id_: str, *, isolated_subnets: bool, log_retention: logs.RetentionDays,
        bedrock_runtime: bool = False,
    ) -> None:
        """``bedrock_runtime``: the functions in the isolated subnets call Bedrock (InvokeModel)."""
        super().__init__(scope, id_)
        subnets = [ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)]
        if isolated_subnets:
            subnets.append(
                ec2.SubnetConfiguration(name="Database", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=MAX_AZS,
            nat_gateways=0,
            subnet_configuration=subnets,
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            # Nothing uses the default security group; restricting it would take a custom-resource Lambda.
            restrict_default_security_group=False,
        )
        self.vpc.add_flow_log(
            "RejectedFlows",
            traffic_type=ec2.FlowLogTrafficType.REJECT,
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                logs.LogGroup(self, "RejectedFlowLogs", retention=log_retention)
            ),
        )
        self.public_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        self.isolated_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.interface_endpoints: list[ec2.InterfaceVpcEndpoint] = []
        if isolated_subnets:
            # Closed by default: allow_aws_apis_from opens them to the groups that need them.
            services = [
                ("SecretsManager", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER),
                ("StepFunctions", ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS),
            ]
            if bedrock_runtime:
                services.append(("BedrockRuntime", ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME))
            self.interface_endpoints = [
                self.vpc.add_interface_endpoint(
                    name, service=service, subnets=self.isolated_subnets, open=False, private_dns_enabled=True
                )
                for name, service in services
            ]

    def allow_aws_apis_from(self, group: ec2.ISecurityGroup, description: str) -> None:
        """Let ``group`` (functions in the isolated subnets) call the interface endpoints' APIs."""
        if not self.interface_endpoints:
            raise ValueError("this network has no isolated subnets, hence no interface endpoints")
        for endpoint in self.interface_endpoints:
            endpoint.connections.allow_from(group, ec2.Port.tcp(HTTPS), description)
