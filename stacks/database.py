"""The stack's PostgreSQL: RDS for PostgreSQL 17 with pgvector, behind RDS Proxy, in the VPC's
isolated subnets, credentials generated into Secrets Manager and rotated.

    Plan / Write / RecordFailure / Migrate ──5432, TLS──► RDS Proxy ──5432──► RDS instance
       (group "Clients")                    (group "ProxyGroup")    (group "InstanceGroup")
    hosted rotation function ────────────────────────────5432──────────► RDS instance

Why an RDS instance, not Aurora Serverless v2: RDS Proxy in front of Aurora Serverless v2 is
billed per ACU with a minimum of 8 ACUs (about 88 USD a month for the proxy alone) and its pooled
connections keep the cluster from pausing, so the serverless cluster's appeal, costing little
while idle, is gone. A db.t4g.medium instance (about 47 USD a month) and its proxy (billed per
vCPU, minimum 2: about 22 USD) cost less, and PDFs arrive in batches a fixed instance handles.
pgvector 0.8 ships with every RDS PostgreSQL 17 minor version; migration 0001 creates it. New
instances start at ENGINE's minor version (a major version alone is not a valid version to create
with) and RDS applies later minor versions in the maintenance window; bump ENGINE when RDS
deprecates it.

Connections, the pool the seeds once exhausted: max_connections is set explicitly, so the proxy's
share (PROXY_MAX_CONNECTIONS_PERCENT) and the alarm thresholds are exact numbers. Every function
holds at most one connection per execution environment (pagemill.aws.clients.db_connection), to the
proxy, which multiplexes them onto its pool; the remaining connections are for the rotation
function and a person with psql.

Functions connect with the secret's username and password and the proxy's endpoint as host
(PAGEMILL_DATABASE_HOST over the secret's ``host``, which names the instance itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Names, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import nag
from stacks.alarms import AlarmSpec
from stacks.config import PipelineConfig
from stacks.network import Network

PORT = 5432
DATABASE_NAME = "pagemill"
USERNAME = "pagemill"
ENGINE = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_9)
# The proxy opens at most this share of max_connections, and keeps at most IDLE of it open idle.
PROXY_MAX_CONNECTIONS_PERCENT = 80
PROXY_MAX_IDLE_CONNECTIONS_PERCENT = 20
# A client waits this long for a pooled connection, then fails with a connection error that
# Step Functions retries with backoff (well under the functions' timeouts).
PROXY_BORROW_TIMEOUT = Duration.seconds(30)
ROTATION_PERIOD = Duration.days(30)
# pagemill.db.connect.SERVER_SETTINGS (infrastructure does not import the library; a test keeps
# them equal): a backend whose function was killed gives up its locks within seconds.
SERVER_SETTINGS = {"client_connection_check_interval": "5000"}
# Alarms: CPU busy for a whole period; connections near the proxy's share; the instance short of
# memory for its caches (and about to swap).
CPU_ALARM_PERCENT = 80
CONNECTIONS_ALARM_SHARE = 0.9
FREEABLE_MEMORY_ALARM_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class DatabaseAccess:
    """How a function reaches PostgreSQL: the secret it reads, the host over the secret's (the
    proxy), and, for the stack's own database, where in the VPC it runs."""

    secret: secretsmanager.ISecret | str  # the stack's own, or a configured ARN
    host: str | None = None
    vpc: ec2.IVpc | None = None
    subnets: ec2.SubnetSelection | None = None
    security_group: ec2.ISecurityGroup | None = None

    @property
    def environment(self) -> dict[str, str]:
        secret_arn = self.secret if isinstance(self.secret, str) else self.secret.secret_arn
        environment = {"DATABASE_SECRET_ARN": secret_arn}
        if self.host:
            environment["PAGEMILL_DATABASE_HOST"] = self.host
        return environment


class Database(Construct):
    def __init__(self, scope: Construct, id_: str, *, network: Network, config: PipelineConfig) -> None:
        super().__init__(scope, id_)
        vpc, subnets = network.vpc, network.isolated_subnets
        self.max_connections = config.database_max_connections

        self.clients = ec2.SecurityGroup(
            self, "Clients", vpc=vpc, description="pagemill functions that talk to PostgreSQL (through the proxy)",
            # Outbound: the proxy, the Secrets Manager endpoint and S3's gateway endpoint (a prefix
            # list); the isolated subnets have no route anywhere else.
            allow_all_outbound=True,
        )
        proxy_group = ec2.SecurityGroup(
            self, "ProxyGroup", vpc=vpc, description="pagemill RDS Proxy: from the functions, to the instance",
            allow_all_outbound=False,
        )
        instance_group = ec2.SecurityGroup(
            self, "InstanceGroup", vpc=vpc, description="pagemill PostgreSQL: from the proxy and the rotation only",
            allow_all_outbound=False,
        )
        rotation_group = ec2.SecurityGroup(
            self, "RotationGroup", vpc=vpc, description="pagemill secret rotation: to PostgreSQL and Secrets Manager",
            allow_all_outbound=True,
        )

        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=ENGINE,
            instance_type=ec2.InstanceType(config.database_instance_class),
            vpc=vpc,
            vpc_subnets=subnets,
            publicly_accessible=False,
            security_groups=[instance_group],
            port=PORT,
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(USERNAME),
            parameter_group=rds.ParameterGroup(
                self, "Parameters", engine=ENGINE, description="pagemill PostgreSQL",
                # rds.force_ssl is already on by default from PostgreSQL 15; stated, so it stays on.
                parameters={
                    "max_connections": str(config.database_max_connections), "rds.force_ssl": "1",
                    **SERVER_SETTINGS,
                },
            ),
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.database_storage_gib,
            max_allocated_storage=config.database_max_storage_gib,
            storage_encrypted=True,
            multi_az=config.database_multi_az,
            backup_retention=Duration.days(config.database_backup_days),
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            deletion_protection=config.database_deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        if self.instance.secret is None:  # from_generated_secret always makes one
            raise RuntimeError("the database instance has no generated secret")
        self.secret: secretsmanager.ISecret = self.instance.secret

        self.proxy = self.instance.add_proxy(
            "Proxy",
            # Unique in the account and region (CDK would name it "Proxy").
            db_proxy_name=Names.unique_resource_name(self, max_length=60, separator="-"),
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[proxy_group],
            secrets=[self.secret],
            require_tls=True,
            iam_auth=False,  # the functions authenticate with the secret's password
            max_connections_percent=PROXY_MAX_CONNECTIONS_PERCENT,
            max_idle_connections_percent=PROXY_MAX_IDLE_CONNECTIONS_PERCENT,
            borrow_timeout=PROXY_BORROW_TIMEOUT,
        )
        # (add_proxy opens the instance's group to the proxy's itself.)
        self.proxy.connections.allow_from(self.clients, ec2.Port.tcp(PORT), "pagemill functions to the proxy")

        # Single user: the rotation function changes the password of the user it logs in as;
        # RDS Proxy reads the secret again for new connections, so clients never see a stale one.
        self.secret.add_rotation_schedule(
            "Rotation",
            automatically_after=ROTATION_PERIOD,
            hosted_rotation=secretsmanager.HostedRotation.postgre_sql_single_user(
                vpc=vpc, vpc_subnets=subnets, security_groups=[rotation_group]
            ),
        )
        self.instance.connections.allow_from(rotation_group, ec2.Port.tcp(PORT), "secret rotation to PostgreSQL")
        network.allow_aws_apis_from(rotation_group, "secret rotation to Secrets Manager")
        network.allow_aws_apis_from(self.clients, "pagemill functions to Secrets Manager")

        self.access = DatabaseAccess(
            secret=self.secret, host=self.proxy.endpoint, vpc=vpc, subnets=subnets,
            security_group=self.clients,
        )
        nag.accept(
            self.instance, "RDS3",
            "Single-AZ by default for cost; database_multi_az=true adds a standby. Daily backups "
            "(database_backup_days) and a final snapshot cover data loss; during an outage Write fails with "
            "DatabaseUnavailable, which the state machine retries with backoff.",
        )
        nag.accept(
            self.instance, "RDS11",
            "The default port 5432: only the proxy's and the rotation function's security groups reach the "
            "instance, in subnets without a route out; another port number hides nothing from either.",
        )

    @property
    def proxy_connection_limit(self) -> int:
        return self.max_connections * PROXY_MAX_CONNECTIONS_PERCENT // 100

    def alarms(self) -> list[AlarmSpec]:
        """The instance's CPU, connections and memory, and the proxy's clients, for Monitoring."""
        near_limit = int(self.proxy_connection_limit * CONNECTIONS_ALARM_SHARE)
        # More clients than the database has connections: each borrow may now wait for another
        # client's transaction, and pinned sessions exhaust the pool.
        client_connections = cloudwatch.Metric(
            namespace="AWS/RDS", metric_name="ClientConnections",
            dimensions_map={"ProxyName": self.proxy.db_proxy_name}, statistic="Maximum",
        )
        return [
            AlarmSpec(
                "DatabaseCpu", self.instance.metric_cpu_utilization(statistic="Average"), CPU_ALARM_PERCENT,
                f"pagemill: PostgreSQL CPU is at {CPU_ALARM_PERCENT} % or more",
            ),
            AlarmSpec(
                "DatabaseConnections", self.instance.metric_database_connections(statistic="Maximum"), near_limit,
                f"pagemill: PostgreSQL has {near_limit} connections or more, near the proxy's pool of "
                f"{self.proxy_connection_limit} (max_connections {self.max_connections})",
            ),
            AlarmSpec(
                "DatabaseFreeableMemory", self.instance.metric_freeable_memory(statistic="Minimum"),
                FREEABLE_MEMORY_ALARM_BYTES,
                f"pagemill: PostgreSQL has {FREEABLE_MEMORY_ALARM_BYTES // 2**20} MiB of freeable memory or less",
                below=True,
            ),
            AlarmSpec(
                "DatabaseProxyClients", client_connections, self.max_connections,
                f"pagemill: RDS Proxy has {self.max_connections} client connections or more (max_connections)",
            ),
        ]
