"""The database on AWS, asserted on the synthesized template: RDS PostgreSQL in isolated subnets
behind RDS Proxy, the secret and its rotation, the network paths, the functions that reach it,
the migrations custom resource and the alarms; and the bring-your-own-database mode."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pagemill.db import connect
from tests.infrastructure.conftest import BYO_SECRET, construct_template
from tests.infrastructure.queries import Context, as_list, handler_of, of_type, role_statements

pytestmark = pytest.mark.xdist_group("infrastructure")

DATABASE_HANDLERS = {
    "handler.plan", "handler.write", "handler.record_failure", "handler.settle", "handler.on_event", "handler.api",
    "handler.reembed_batch", "handler.build_index",
}


def _one(resources: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (item,) = of_type(resources, kind).items()
    return item


def _group_id(ref: dict[str, Any]) -> str:
    assert ref["Fn::GetAtt"][1] == "GroupId", ref
    return ref["Fn::GetAtt"][0]


def _ingress(resources: dict[str, Any], group: str) -> list[tuple[str | None, Any, Any]]:
    """(source group, from port, to port) of every inbound rule of ``group``, inline or separate."""
    rules = list(resources[group]["Properties"].get("SecurityGroupIngress", []))
    rules += [
        r["Properties"] for r in of_type(resources, "AWS::EC2::SecurityGroupIngress").values()
        if _group_id(r["Properties"]["GroupId"]) == group
    ]
    assert all("CidrIp" not in r and "CidrIpv6" not in r for r in rules), rules
    return [(_group_id(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in rules]


def _isolated_subnets(resources: dict[str, Any]) -> list[dict[str, str]]:
    """The subnets without a route to the internet gateway (and without public IPs)."""
    routed = {
        assoc["Properties"]["SubnetId"]["Ref"]
        for assoc in of_type(resources, "AWS::EC2::SubnetRouteTableAssociation").values()
        if any(
            route["Properties"]["RouteTableId"] == assoc["Properties"]["RouteTableId"]
            and "GatewayId" in route["Properties"]
            for route in of_type(resources, "AWS::EC2::Route").values()
        )
    }
    isolated = [
        {"Ref": k} for k, v in of_type(resources, "AWS::EC2::Subnet").items()
        if k not in routed and not v["Properties"]["MapPublicIpOnLaunch"]
    ]
    assert len(isolated) == 2, isolated
    return isolated


def _functions_by_handler(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        handler_of(f): f for f in of_type(resources, "AWS::Lambda::Function").values()
        if "pagemill:source" in f.get("Metadata", {})
    }


# --- the instance ------------------------------------------------------------------------------


def test_postgres_17_in_isolated_subnets_private_encrypted_backed_up(resources: dict[str, Any]) -> None:
    _, instance = _one(resources, "AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert props["Engine"] == "postgres" and props["EngineVersion"].startswith("17.")
    assert props["DBInstanceClass"] == "db.t4g.medium"
    assert props["PubliclyAccessible"] is False
    assert props["StorageEncrypted"] is True
    assert (props["StorageType"], props["AllocatedStorage"], props["MaxAllocatedStorage"]) == ("gp3", "20", 100)
    assert props["BackupRetentionPeriod"] == 7
    assert props["DeletionProtection"] is True
    assert props["MultiAZ"] is False
    assert (instance["DeletionPolicy"], instance["UpdateReplacePolicy"]) == ("Snapshot", "Snapshot")
    assert props["DBName"] == "pagemill"
    # AND its subnet group is the isolated subnets
    _, subnet_group = _one(resources, "AWS::RDS::DBSubnetGroup")
    assert props["DBSubnetGroupName"] == {"Ref": _one(resources, "AWS::RDS::DBSubnetGroup")[0]}
    assert sorted(subnet_group["Properties"]["SubnetIds"], key=str) == sorted(_isolated_subnets(resources), key=str)
    # AND its parameters fix max_connections (the proxy's pool and the alarms follow) and TLS
    _, parameters = _one(resources, "AWS::RDS::DBParameterGroup")
    assert parameters["Properties"]["Family"] == "postgres17"
    # the library's server settings, as the embedded server runs with them
    assert parameters["Properties"]["Parameters"] == {
        "max_connections": "200", "rds.force_ssl": "1", **connect.SERVER_SETTINGS,
    }
    # AND no NAT gateway anywhere (cost)
    assert not of_type(resources, "AWS::EC2::NatGateway")


def test_proxy_requires_tls_authenticates_with_the_secret_and_pools_a_share(resources: dict[str, Any]) -> None:
    proxy_id, proxy = _one(resources, "AWS::RDS::DBProxy")
    props = proxy["Properties"]
    assert props["EngineFamily"] == "POSTGRESQL"
    assert props["RequireTLS"] is True
    secret_ref = {"Ref": _one(resources, "AWS::SecretsManager::SecretTargetAttachment")[0]}
    assert props["Auth"] == [{"AuthScheme": "SECRETS", "IAMAuth": "DISABLED", "SecretArn": secret_ref}]
    assert sorted(props["VpcSubnetIds"], key=str) == sorted(_isolated_subnets(resources), key=str)
    assert props["DBProxyName"].startswith("Pagemill-")  # unique per stack (CDK's default is "Proxy")
    _, targets = _one(resources, "AWS::RDS::DBProxyTargetGroup")
    instance_id, _ = _one(resources, "AWS::RDS::DBInstance")
    assert targets["Properties"]["DBProxyName"] == {"Ref": proxy_id}
    assert targets["Properties"]["DBInstanceIdentifiers"] == [{"Ref": instance_id}]
    assert targets["Properties"]["ConnectionPoolConfigurationInfo"] == {
        "ConnectionBorrowTimeout": 30, "MaxConnectionsPercent": 80, "MaxIdleConnectionsPercent": 20,
    }


def test_only_the_proxy_and_the_rotation_reach_the_database_and_only_the_functions_the_proxy(
    resources: dict[str, Any],
) -> None:
    _, instance = _one(resources, "AWS::RDS::DBInstance")
    (instance_group,) = (_group_id(g) for g in instance["Properties"]["VPCSecurityGroups"])
    _, proxy = _one(resources, "AWS::RDS::DBProxy")
    (proxy_group,) = (_group_id(g) for g in proxy["Properties"]["VpcSecurityGroupIds"])
    _, rotation = _one(resources, "AWS::SecretsManager::RotationSchedule")
    rotation_group = _group_id(rotation["Properties"]["HostedRotationLambda"]["VpcSecurityGroupIds"])
    functions = _functions_by_handler(resources)
    (clients_group,) = {
        _group_id(g) for h in DATABASE_HANDLERS for g in functions[h]["Properties"]["VpcConfig"]["SecurityGroupIds"]
    }
    port = {"Fn::GetAtt": [_one(resources, "AWS::RDS::DBInstance")[0], "Endpoint.Port"]}
    instance_sources = {source for source, low, high in _ingress(resources, instance_group) if low == high}
    assert instance_sources == {proxy_group, rotation_group}
    for source, low, high in _ingress(resources, instance_group):
        assert low == high and low in (5432, port), (source, low)
    assert _ingress(resources, proxy_group) == [(clients_group, 5432, 5432)]
    # AND neither the instance nor the proxy may open connections anywhere else
    for group in (instance_group, proxy_group):
        for egress in resources[group]["Properties"].get("SecurityGroupEgress", []):
            assert egress["CidrIp"] == "255.255.255.255/32", egress  # CDK's "disallow all" marker
    proxy_egress = [
        r["Properties"] for r in of_type(resources, "AWS::EC2::SecurityGroupEgress").values()
        if _group_id(r["Properties"]["GroupId"]) == proxy_group
    ]
    assert {_group_id(r["DestinationSecurityGroupId"]) for r in proxy_egress} == {instance_group}


def test_credentials_are_generated_and_rotated_every_30_days(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    secret_id, secret = next(
        (k, v) for k, v in of_type(resources, "AWS::SecretsManager::Secret").items()
        if "GenerateSecretString" in v["Properties"]
        and '"username":"pagemill"' in v["Properties"]["GenerateSecretString"].get("SecretStringTemplate", "")
    )
    assert secret["Properties"]["GenerateSecretString"]["GenerateStringKey"] == "password"
    _, instance = _one(resources, "AWS::RDS::DBInstance")
    assert secret_id in json.dumps(instance["Properties"]["MasterUserPassword"])
    _, rotation = _one(resources, "AWS::SecretsManager::RotationSchedule")
    props = rotation["Properties"]
    assert props["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    hosted = props["HostedRotationLambda"]
    assert hosted["RotationType"] == "PostgreSQLSingleUser"
    subnets = hosted["VpcSubnetIds"]["Fn::Join"][1]
    assert sorted((s for s in subnets if s != ","), key=str) == sorted(_isolated_subnets(resources), key=str)
    # AND the hosted rotation's transform is declared
    assert template["Transform"].startswith("AWS::SecretsManager-")


def test_endpoints_let_the_isolated_functions_reach_s3_secrets_manager_step_functions_and_bedrock(resources: dict[str, Any]) -> None:
    endpoints = {
        e["Properties"]["ServiceName"]["Fn::Join"][1][-1]: e["Properties"]
        for e in of_type(resources, "AWS::EC2::VPCEndpoint").values()
    }
    # (Bedrock's runtime: cdk.json embeds chunks with Titan, and the API embeds queries from the VPC)
    assert set(endpoints) == {".s3", ".secretsmanager", ".states", ".bedrock-runtime"}
    assert endpoints[".s3"]["VpcEndpointType"] == "Gateway"
    # the gateway serves the isolated subnets' route tables
    isolated = {s["Ref"] for s in _isolated_subnets(resources)}
    isolated_tables = {
        json.dumps(a["Properties"]["RouteTableId"])
        for a in of_type(resources, "AWS::EC2::SubnetRouteTableAssociation").values()
        if a["Properties"]["SubnetId"]["Ref"] in isolated
    }
    assert isolated_tables <= {json.dumps(t) for t in endpoints[".s3"]["RouteTableIds"]}
    secrets = endpoints[".secretsmanager"]
    assert secrets["VpcEndpointType"] == "Interface" and secrets["PrivateDnsEnabled"] is True
    assert sorted(secrets["SubnetIds"], key=str) == sorted(_isolated_subnets(resources), key=str)
    (endpoint_group,) = (_group_id(g) for g in secrets["SecurityGroupIds"])
    functions = _functions_by_handler(resources)
    clients = _group_id(functions["handler.write"]["Properties"]["VpcConfig"]["SecurityGroupIds"][0])
    _, rotation = _one(resources, "AWS::SecretsManager::RotationSchedule")
    rotation_group = _group_id(rotation["Properties"]["HostedRotationLambda"]["VpcSecurityGroupIds"])
    assert sorted(_ingress(resources, endpoint_group)) == sorted([(clients, 443, 443), (rotation_group, 443, 443)])
    states = endpoints[".states"]
    assert states["VpcEndpointType"] == "Interface" and states["PrivateDnsEnabled"] is True
    bedrock = endpoints[".bedrock-runtime"]
    assert bedrock["VpcEndpointType"] == "Interface" and bedrock["PrivateDnsEnabled"] is True
    (bedrock_group,) = (_group_id(g) for g in bedrock["SecurityGroupIds"])
    assert (clients, 443, 443) in _ingress(resources, bedrock_group)
    # AND of the functions in the VPC only the HTTP API's calls Step Functions (why it has an endpoint)
    for handler in DATABASE_HANDLERS - {"handler.api"}:
        role_id = functions[handler]["Properties"]["Role"]["Fn::GetAtt"][0]
        actions = [a for s in role_statements(resources, role_id) for a in as_list(s["Action"])]
        assert not [a for a in actions if a.startswith("states:")], handler


def test_only_the_database_functions_run_in_the_vpc_and_connect_through_the_proxy(resources: dict[str, Any]) -> None:
    functions = _functions_by_handler(resources)
    in_vpc = {h for h, f in functions.items() if "VpcConfig" in f["Properties"]}
    assert in_vpc == DATABASE_HANDLERS
    secret_ref = {"Ref": _one(resources, "AWS::SecretsManager::SecretTargetAttachment")[0]}
    proxy_id, _ = _one(resources, "AWS::RDS::DBProxy")
    for handler in DATABASE_HANDLERS:
        props = functions[handler]["Properties"]
        assert sorted(props["VpcConfig"]["SubnetIds"], key=str) == sorted(_isolated_subnets(resources), key=str)
        variables = props["Environment"]["Variables"]
        assert variables["DATABASE_SECRET_ARN"] == secret_ref, handler
        assert variables["PAGEMILL_DATABASE_HOST"] == {"Fn::GetAtt": [proxy_id, "Endpoint"]}, handler
        role_id = props["Role"]["Fn::GetAtt"][0]
        assert any(
            "secretsmanager:GetSecretValue" in as_list(s["Action"]) and secret_ref in as_list(s["Resource"])
            for s in role_statements(resources, role_id)
        ), handler
    for handler in set(functions) - DATABASE_HANDLERS:
        variables = functions[handler]["Properties"]["Environment"]["Variables"]
        assert "DATABASE_SECRET_ARN" not in variables and "PAGEMILL_DATABASE_HOST" not in variables, handler


def test_migrations_run_at_deploy_after_the_database_with_the_migrations_hash(resources: dict[str, Any]) -> None:
    from stacks.migrations import migrations_hash

    _, schema = _one(resources, "Custom::PagemillSchema")
    assert schema["Properties"]["MigrationsHash"] == migrations_hash()
    assert len(migrations_hash()) == 64
    # AND it waits for the instance, the proxy and its targets, the rotation and the endpoint
    for kind in (
        "AWS::RDS::DBInstance", "AWS::RDS::DBProxy", "AWS::RDS::DBProxyTargetGroup",
        "AWS::SecretsManager::RotationSchedule",
    ):
        assert _one(resources, kind)[0] in schema["DependsOn"], kind
    secrets_endpoint = next(
        k for k, e in of_type(resources, "AWS::EC2::VPCEndpoint").items()
        if e["Properties"]["VpcEndpointType"] == "Interface"
    )
    assert secrets_endpoint in schema["DependsOn"]
    # AND the provider's function invokes the migration function (handler.on_event of lambdas/migrate)
    provider_id = schema["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    migrate_id = next(
        k for k, f in of_type(resources, "AWS::Lambda::Function").items()
        if handler_of(f) == "handler.on_event"
    )
    migrate = resources[migrate_id]
    assert migrate["Metadata"]["pagemill:source"] == "lambdas/migrate"
    provider = resources[provider_id]["Properties"]
    assert provider["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"] == {"Fn::GetAtt": [migrate_id, "Arn"]}
    assert "VpcConfig" not in provider  # it answers CloudFormation's response URL: outside the VPC


def test_the_migrations_hash_follows_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stacks import migrations

    # GIVEN a copy of the migrations
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, copy)
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", copy)
    before = migrations.migrations_hash()
    # WHEN a migration is added THEN the hash changes (CloudFormation sends an Update)
    (copy / "9999_added.sql").write_text("select 1;\n")
    added = migrations.migrations_hash()
    assert added != before
    # AND a change to an existing one changes it too; the same files give the same hash
    first = sorted(copy.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- changed\n")
    assert migrations.migrations_hash() not in (before, added)
    assert migrations.migrations_hash() == migrations.migrations_hash()


def test_database_alarms_page_the_topic(resources: dict[str, Any]) -> None:
    (topic_id,) = of_type(resources, "AWS::SNS::Topic")
    instance_id, _ = _one(resources, "AWS::RDS::DBInstance")
    proxy_id, _ = _one(resources, "AWS::RDS::DBProxy")
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"] for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/RDS"
    }
    assert set(alarms) == {"CPUUtilization", "DatabaseConnections", "FreeableMemory", "ClientConnections"}
    for name in ("CPUUtilization", "DatabaseConnections", "FreeableMemory"):
        assert alarms[name]["Dimensions"] == [{"Name": "DBInstanceIdentifier", "Value": {"Ref": instance_id}}], name
    assert alarms["ClientConnections"]["Dimensions"] == [{"Name": "ProxyName", "Value": {"Ref": proxy_id}}]
    assert (alarms["CPUUtilization"]["Threshold"], alarms["CPUUtilization"]["Statistic"]) == (80, "Average")
    # 90 % of the proxy's pool: 80 % of max_connections 200
    assert alarms["DatabaseConnections"]["Threshold"] == 144
    assert alarms["FreeableMemory"]["Threshold"] == 256 * 2**20
    assert alarms["FreeableMemory"]["ComparisonOperator"] == "LessThanOrEqualToThreshold"
    assert alarms["ClientConnections"]["Threshold"] == 200
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
        assert alarm["AlarmDescription"].startswith("pagemill: "), name
        if name != "FreeableMemory":
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", name


def test_outputs_say_how_to_reach_the_database(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    proxy_id, _ = _one(template["Resources"], "AWS::RDS::DBProxy")
    assert outputs["DatabaseProxyEndpoint"]["Value"] == {"Fn::GetAtt": [proxy_id, "Endpoint"]}
    secret_id, _ = _one(template["Resources"], "AWS::SecretsManager::SecretTargetAttachment")
    assert outputs["DatabaseSecretArn"]["Value"] == {"Ref": secret_id}


# --- bring your own database ---------------------------------------------------------------


def test_bring_your_own_database_creates_none_and_still_migrates(
    synthesize: Callable[..., Any], tmp_path: Path
) -> None:
    # GIVEN database_secret_arn
    template = synthesize(tmp_path, database_secret_arn=BYO_SECRET).to_json()
    resources = template["Resources"]
    # THEN no database, proxy, rotation, isolated subnets or interface endpoint
    for kind in (
        "AWS::RDS::DBInstance", "AWS::RDS::DBProxy", "AWS::SecretsManager::RotationSchedule",
        "AWS::RDS::DBSubnetGroup",
    ):
        assert not of_type(resources, kind), kind
    assert [e["Properties"]["VpcEndpointType"] for e in of_type(resources, "AWS::EC2::VPCEndpoint").values()] == [
        "Gateway"
    ]
    assert all(s["Properties"]["MapPublicIpOnLaunch"] for s in of_type(resources, "AWS::EC2::Subnet").values())
    assert "Transform" not in template
    assert not {"DatabaseProxyEndpoint", "DatabaseSecretArn"} & set(template["Outputs"])
    # AND the database functions, outside any VPC, read that secret and no host override
    functions = _functions_by_handler(resources)
    for handler, function in functions.items():
        props = function["Properties"]
        assert "VpcConfig" not in props, handler
        variables = props["Environment"]["Variables"]
        assert (variables.get("DATABASE_SECRET_ARN") == BYO_SECRET) == (handler in DATABASE_HANDLERS), handler
        assert "PAGEMILL_DATABASE_HOST" not in variables
    # AND the schema is still migrated at deploy, with no database resource to wait for
    _, schema = _one(resources, "Custom::PagemillSchema")
    assert "DependsOn" not in schema
    assert not [a for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
                if a["Properties"].get("Namespace") == "AWS/RDS"]


def test_database_settings_reach_the_stack(tmp_path: Path) -> None:
    from stacks.database import Database
    from stacks.network import Network

    built: list[Database] = []

    def database_part(stack: Any, config: Any) -> None:
        network = Network(stack, "Network", isolated_subnets=True, log_retention=config.log_retention)
        built.append(Database(stack, "Database", network=network, config=config))

    # GIVEN other settings, as `cdk deploy -c key=value` passes them (strings), for the database alone
    resources = construct_template(
        tmp_path, database_part, database_instance_class="r7g.large", database_storage_gib="50", database_max_storage_gib="400",
        database_max_connections="1000", database_multi_az="true", database_backup_days="14",
        database_deletion_protection="false",
    ).to_json()["Resources"]
    _, instance = _one(resources, "AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert props["DBInstanceClass"] == "db.r7g.large"
    assert (props["AllocatedStorage"], props["MaxAllocatedStorage"]) == ("50", 400)
    assert props["MultiAZ"] is True
    assert props["BackupRetentionPeriod"] == 14
    assert props["DeletionProtection"] is False
    assert instance["DeletionPolicy"] == "Snapshot"  # a final snapshot either way
    _, parameters = _one(resources, "AWS::RDS::DBParameterGroup")
    assert parameters["Properties"]["Parameters"]["max_connections"] == "1000"
    # AND the connections alarm it asks Monitoring for (which pages the topic: above) follows
    (connections,) = [a for a in built[0].alarms() if a.id_ == "DatabaseConnections"]
    assert connections.threshold == 720  # 90 % of 80 % of 1000


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"database_instance_class": "db.t4g.medium"}, "without the 'db.' prefix"),
        ({"database_storage_gib": 10}, "'database_storage_gib' must be between 20 and 65536"),
        ({"database_storage_gib": 50, "database_max_storage_gib": 40}, "'database_max_storage_gib' must be between 50"),
        ({"database_max_connections": 5}, "'database_max_connections' must be between 20 and 5000"),
        ({"database_backup_days": 0}, "'database_backup_days' must be between 1 and 35"),
        ({"database_multi_az": "yes"}, "'database_multi_az' must be true or false"),
        ({"database_deletion_protection": 1}, "'database_deletion_protection' must be true or false"),
    ],
)
def test_database_settings_are_validated_with_clear_messages(context: dict[str, Any], message: str) -> None:
    from stacks.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        PipelineConfig.from_context(Context(**context))


def test_database_booleans_read_json_and_command_line_spellings() -> None:
    from stacks.config import PipelineConfig

    assert PipelineConfig.from_context(Context(database_multi_az=True)).database_multi_az is True
    assert PipelineConfig.from_context(Context(database_multi_az="True")).database_multi_az is True
    config = PipelineConfig.from_context(Context(database_deletion_protection="false"))
    assert config.database_deletion_protection is False
    assert PipelineConfig.from_context(Context()).database_deletion_protection is True
