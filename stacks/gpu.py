"""The GPU embedding service: CLIP on ONNX Runtime's CUDA provider, one ECS task per document that
the state machine starts with ``ecs:runTask.waitForTaskToken`` (containers/clip-gpu/worker.py).

    the stack's VPC (its public subnets) ─ ECS cluster ─ capacity provider ─ Auto Scaling group of
    GPU instances, 0..gpu_max_instances

It costs nothing while idle: the group's minimum is 0 and the capacity provider's managed scaling
(target 100 %) launches an instance when a task is waiting for one (the task stays PROVISIONING
meanwhile) and scales back to 0 once no task has run for a while.

Networking, deliberately simple (stacks/network.py): the instances sit in public subnets with
public IPs and a security group without a single inbound rule. The worker only calls AWS APIs (S3,
Step Functions, CloudWatch Logs, ECR), so a NAT gateway would buy nothing; the VPC's S3 gateway
endpoint keeps image and ECR-layer downloads on the AWS network.
Tasks use bridge networking, so they share the instance's public address; the instance metadata
service requires IMDSv2 with a hop limit of 1, so containers cannot reach the instance role's
credentials and use their own task role.
"""

from __future__ import annotations

from aws_cdk import Duration, IgnoreMode, Size
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pagemill import keys
from stacks import nag
from stacks.config import PipelineConfig
from stacks.grants import pushed_repository
from stacks.network import Network
from stacks.paths import CONTAINER_SOURCE, LIBRARY_DIR, REPO_ROOT, build_context_exclude

CONTAINER_NAME = "clip"
# The worker loads the CLIP model and decodes image batches in memory; a g5.xlarge has 16 GiB.
MEMORY_RESERVATION_MIB = 12 * 1024
# ECS waits this long after SIGTERM before SIGKILL: the worker reports WorkerInterrupted (which
# the state machine retries) and exits well within it.
STOP_TIMEOUT = Duration.seconds(30)
ROOT_VOLUME = Size.gibibytes(100)  # the CUDA image is several GB; Docker keeps a few versions


class GpuEmbedding(Construct):
    """The cluster, its GPU capacity and the Embed task definition. The state machine runs the
    task with ``capacity_provider`` and grants ``task_role`` the task-token responses."""

    def __init__(
        self, scope: Construct, id_: str, *, bucket: s3.IBucket, network: Network, config: PipelineConfig
    ) -> None:
        super().__init__(scope, id_)
        self.vpc = network.vpc
        self.security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=self.vpc,
            description="pagemill GPU instances: no inbound traffic; outbound to AWS APIs",
            allow_all_outbound=True,
        )
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )

        # Amazon Linux 2023's GPU variant: Amazon Linux 2 (and with it the ECS AL2 AMIs) reached
        # end of support on 2026-06-30.
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config",
            # A warm instance starts the next task without pulling the (multi-GB) image again.
            "echo ECS_IMAGE_PULL_BEHAVIOR=prefer-cached >> /etc/ecs/ecs.config",
        )
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="pagemill GPU instances: the ECS agent (the cluster adds its permissions)",
        )
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(config.gpu_instance_type),
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU),
            user_data=user_data,
            role=self.instance_role,
            security_group=self.security_group,
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        int(ROOT_VOLUME.to_gibibytes()),
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.auto_scaling_group = autoscaling.AutoScalingGroup(
            self,
            "Instances",
            vpc=self.vpc,
            vpc_subnets=network.public_subnets,
            launch_template=self.launch_template,
            min_capacity=0,
            max_capacity=config.gpu_max_instances,
        )
        # Managed termination protection (CDK protects new instances from scale-in) lets ECS
        # scale in only instances without tasks; managed draining moves nothing off a busy one.
        self.capacity_provider = ecs.AsgCapacityProvider(
            self,
            "CapacityProvider",
            auto_scaling_group=self.auto_scaling_group,
            enable_managed_scaling=True,
            target_capacity_percent=100,
            enable_managed_termination_protection=True,
            enable_managed_draining=True,
        )
        self.cluster.add_asg_capacity_provider(self.capacity_provider)

        self.log_group = logs.LogGroup(self, "Logs", retention=config.log_retention)
        self.task_definition = ecs.Ec2TaskDefinition(self, "TaskDefinition", network_mode=ecs.NetworkMode.BRIDGE)
        self.container = self.task_definition.add_container(
            CONTAINER_NAME,
            image=self._image(config),
            gpu_count=1,
            memory_reservation_mib=MEMORY_RESERVATION_MIB,
            stop_timeout=STOP_TIMEOUT,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=CONTAINER_NAME, log_group=self.log_group),
            environment={"HEARTBEAT_SECONDS": str(config.gpu_worker_heartbeat_seconds)},
        )
        # The local engine runs containers/clip-gpu/worker.py for this task definition, whichever image.
        self.task_definition.node.default_child.add_metadata("pagemill:source", CONTAINER_SOURCE)

        # The worker reads the image list and the images, and writes the embeddings; nothing else.
        # (states:SendTask* is granted by the state machine, scoped to it.)
        self.task_role = self.task_definition.task_role
        self.task_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{keys.DOCUMENTS_PREFIX}*")])
        )
        self.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[bucket.arn_for_objects(keys.embeddings_prefix("*") + "*")]
            )
        )
        self._accept_findings(bucket)

    def _accept_findings(self, bucket: s3.IBucket) -> None:
        nag.accept(
            self.auto_scaling_group, "AS3",
            "ECS managed scaling drives this group (0..gpu_max_instances); task failures and timeouts alarm "
            "through the Monitoring topic, instance launches and terminations need no separate notice.",
        )
        nag.accept(
            self.task_definition, "ECS2",
            "The one environment variable is the worker's heartbeat interval, not a secret; the task token and "
            "S3 keys arrive as per-task overrides.",
        )
        nag.accept(
            self.instance_role, "IAM5",
            "CDK's ECS capacity policy: ecs:Submit* (container and task state reports) on this cluster only.",
            "Action::ecs:Submit*",
        )
        nag.accept_wildcard_resource(self.instance_role)
        if self.task_definition.execution_role:  # made by CDK for the image pull and the log driver
            nag.accept_wildcard_resource(self.task_definition.execution_role)
        nag.accept_bucket_keys(self.task_role, bucket)

    def _image(self, config: PipelineConfig) -> ecs.ContainerImage:
        """The pushed image named in the configuration (pulled with the execution role), or the
        Dockerfile built by ``cdk deploy``."""
        image = config.gpu_image
        if image is None:
            return ecs.ContainerImage.from_asset(
                str(REPO_ROOT),  # the Dockerfile copies the library and its own folder
                file=f"{CONTAINER_SOURCE}/Dockerfile",
                exclude=build_context_exclude(LIBRARY_DIR, CONTAINER_SOURCE),
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
        return ecs.ContainerImage.from_ecr_repository(pushed_repository(self, "Repository", image), tag=image["tag"])
