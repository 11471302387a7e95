"""GpuEmbedding in an otherwise empty stack (with the network): the capacity that scales from
zero, the instances, the task definition, and a pushed image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.infrastructure.conftest import (
    ROOT,
    construct_template,
    gpu_part,
    part_fixture,
)
from tests.infrastructure.queries import actions_of, of_type, the_one

template = part_fixture(gpu_part)


def test_gpu_group_scales_from_zero_through_the_capacity_provider(resources: dict[str, Any]) -> None:
    group = the_one(resources, "AWS::AutoScaling::AutoScalingGroup")
    assert (group["MinSize"], group["MaxSize"]) == ("0", "2")
    assert "DesiredCapacity" not in group  # managed scaling owns it
    assert group["NewInstancesProtectedFromScaleIn"] is True  # what managed termination protection needs
    provider = the_one(resources, "AWS::ECS::CapacityProvider")["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedScaling"]["TargetCapacity"] == 100
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    # AND the cluster uses it, with Container Insights
    (provider_id,) = of_type(resources, "AWS::ECS::CapacityProvider")
    assert {"Ref": provider_id} in the_one(resources, "AWS::ECS::ClusterCapacityProviderAssociations")["CapacityProviders"]
    assert {"Name": "containerInsights", "Value": "enabled"} in the_one(resources, "AWS::ECS::Cluster")["ClusterSettings"]


def test_gpu_instances_are_gpu_amis_with_imdsv2_and_an_encrypted_root(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    data = the_one(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert data["InstanceType"] == "g5.xlarge"
    image_parameter = template["Parameters"][data["ImageId"]["Ref"]]
    assert image_parameter["Default"].startswith("/aws/service/ecs/optimized-ami/")
    assert "/gpu/" in image_parameter["Default"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # containers cannot reach the instance role
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"] == {"DeleteOnTermination": True, "Encrypted": True, "VolumeSize": 100, "VolumeType": "gp3"}


def test_gpu_network_is_public_subnets_without_nat_or_inbound_rules(resources: dict[str, Any]) -> None:
    assert not of_type(resources, "AWS::EC2::NatGateway")
    assert not of_type(resources, "AWS::EC2::EIP")
    subnets = of_type(resources, "AWS::EC2::Subnet")
    zone = the_one(resources, "AWS::AutoScaling::AutoScalingGroup")["VPCZoneIdentifier"]
    assert len(zone) == 2
    assert all(subnets[s["Ref"]]["Properties"]["MapPublicIpOnLaunch"] is True for s in zone)
    launch = the_one(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    (group_id,) = (g["Fn::GetAtt"][0] for g in launch["SecurityGroupIds"])
    assert "SecurityGroupIngress" not in resources[group_id]["Properties"]
    assert not [
        r for r in of_type(resources, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == group_id
    ]


def test_gpu_task_definition_asks_for_one_gpu(resources: dict[str, Any]) -> None:
    (resource,) = of_type(resources, "AWS::ECS::TaskDefinition").values()
    props = resource["Properties"]
    assert props["RequiresCompatibilities"] == ["EC2"]
    assert props["NetworkMode"] == "bridge"  # the instance's public address, no NAT
    (container,) = props["ContainerDefinitions"]
    assert container["Name"] == "clip"
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    assert container["MemoryReservation"] >= 8 * 1024
    assert container["StopTimeout"] == 30
    assert {"Name": "HEARTBEAT_SECONDS", "Value": "20"} in container["Environment"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    # AND the local engine can find the worker that this task definition runs
    assert resource["Metadata"]["pagemill:source"] == "containers/clip-gpu"
    assert (ROOT / "containers/clip-gpu/worker.py").is_file()


def test_a_pushed_gpu_image_deploys_without_docker(tmp_path: Path) -> None:
    # GIVEN the worker's image was built elsewhere and pushed to ECR
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-clip@sha256:" + "ab" * 32
    resources = construct_template(tmp_path, gpu_part, gpu_image_uri=uri).to_json()["Resources"]
    # THEN the task runs that image, pulled by the execution role from that repository only
    (container,) = the_one(resources, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    assert "pagemill-clip@sha256:" + "ab" * 32 in json.dumps(container["Image"])
    arn = ":ecr:eu-west-1:123456789012:repository/pagemill-clip"
    repository = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, arn]]}
    pulls = [s for p in of_type(resources, "AWS::IAM::Policy").values()
             for s in p["Properties"]["PolicyDocument"]["Statement"] if "ecr:BatchGetImage" in actions_of(s)]
    assert [s["Resource"] for s in pulls] == [repository]
    # AND nothing is left for Docker to build (the default configuration has the worker's image here)
    (assets,) = tmp_path.rglob("Pagemill.assets.json")
    assert json.loads(assets.read_text()).get("dockerImages", {}) == {}
