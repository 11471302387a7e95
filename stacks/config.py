"""The pipeline's deployment settings: typed, validated once, read from the CDK context
(the ``context`` block of cdk.json, overridable with ``cdk synth -c key=value``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import aws_logs as logs
from constructs import Node

from pagemill.settings import (
    DeployedSettings,
    check_fields,
    check_voices,
    read,
    setting,
)

# RDS gp3 storage: 20 GiB at least, 64 TiB at most.
DATABASE_STORAGE_GIB = (20, 65_536)

# CloudWatch Logs accepts only these retention periods.
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
_STANDARD_MAX_MINUTES = 365 * 24 * 60  # a Standard execution runs for at most one year
# An EC2 instance type: family (letters, generation digit, attributes) "." size.
_INSTANCE_TYPE = re.compile(r"^[a-z]+[0-9][a-z0-9-]*\.[a-z0-9]+$")
# The ECS GPU-optimized AMI is x86_64 with NVIDIA drivers: the g and p families, less g4ad (AMD
# GPUs) and the Graviton ones (g5g; a "g" after the generation digit). inf/trn are Neuron chips.
_NVIDIA_FAMILY = re.compile(r"^[gp]r?[0-9](?![a-z]*g)[a-z0-9-]*\.")
_NOT_NVIDIA = ("g4ad.",)
# s3://bucket/prefix/ : a bucket name (3-63 characters) and a prefix that ends in "/".
_S3_PREFIX_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(?:[^\s]*/)?$")
# <account>.dkr.ecr.<region>.amazonaws.com/<repository>(:<tag>|@sha256:<digest>)
_ECR_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[a-f0-9]{64}))$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A callback task's HeartbeatSeconds must leave room for this many missed worker beats.
MISSED_BEATS_TOLERATED = 3
GPU_TASK_TIMEOUT_SECONDS = 3600


class ConfigError(ValueError):
    """A context value is missing its required shape; the message names the key and the fix."""


@dataclass(frozen=True)
class PipelineConfig(DeployedSettings):
    """The stack's settings: those the functions share with the library (``DeployedSettings``:
    batch_pages, max_pages, max_bytes, markdown_mode, gpu_min_images, caption_*), and the
    stack's own, below. Each is a cdk.json context key of the same name."""

    # Concurrent ExtractBatch child executions of one document's Distributed Map.
    map_concurrency: int = setting(40, low=1, high=10_000)
    # Bring your own database: a Secrets Manager secret with the PostgreSQL connection (username,
    # password, host, port, dbname). Set, the stack creates no database (and no VPC for it).
    database_secret_arn: str | None = None
    # The stack's own database (when database_secret_arn is not set): an RDS PostgreSQL instance of
    # this class (without "db."), gp3 storage that grows from database_storage_gib up to
    # database_max_storage_gib, and max_connections (RDS Proxy pools a share of it).
    database_instance_class: str = "t4g.medium"
    database_storage_gib: int = setting(20, low=DATABASE_STORAGE_GIB[0], high=DATABASE_STORAGE_GIB[1])
    database_max_storage_gib: int = 100
    database_max_connections: int = setting(200, low=20, high=5000)
    # A standby in a second AZ (about twice the instance cost) for automatic failover.
    database_multi_az: bool = False
    database_backup_days: int = setting(7, low=1, high=35)
    # On: the instance cannot be deleted until this is turned off. Either way, deleting the stack
    # leaves a final snapshot.
    database_deletion_protection: bool = True
    # Whole-execution limit (the state machine's TimeoutSeconds).
    execution_timeout_minutes: int = setting(120, low=1, high=_STANDARD_MAX_MINUTES)
    # An execution running longer than this is "stuck" (alarm): well under the execution timeout,
    # so on-call hears of it before the timeout ends it.
    stuck_after_minutes: int = 30
    # Retention of every log group of the stack.
    log_retention_days: int = 30
    # The GPU embedding service: an Auto Scaling group of this instance type that scales between
    # 0 and gpu_max_instances instances (one Embed task per instance: each asks for one GPU).
    # (gpu_min_images, the routing threshold, is shared with the library.)
    gpu_instance_type: str = "g5.xlarge"
    gpu_max_instances: int = setting(2, low=1, high=100)
    # How long EmbedOnGpu waits for a heartbeat. The first one can only come once an instance
    # has started from zero and pulled the image (several minutes when the service is idle);
    # after that the worker beats every gpu_worker_heartbeat_seconds.
    gpu_heartbeat_seconds: int = 600
    # The GPU worker's image, already built and pushed to ECR (CI, another machine): deploy then
    # needs no Docker at all. Unset, `cdk deploy` builds containers/clip-gpu/Dockerfile.
    gpu_image_uri: str | None = None
    # ExtractBatch reads scanned pages with OCR, which does not fit a Lambda zip (README, "OCR on
    # AWS"): it runs as a container image, containers/extract/Dockerfile, that `cdk deploy` builds
    # with Docker, or extract_image_uri's, already built and pushed to ECR (deploy then needs no
    # Docker for it). extract_ocr false: ExtractBatch runs from the zip, with no Docker and no OCR,
    # and scanned pages get an ocr_unavailable warning.
    extract_ocr: bool = True
    extract_image_uri: str | None = None
    gpu_worker_heartbeat_seconds: int = setting(20, low=1, high=300)
    # s3://bucket/prefix/ holding the CLIP model (model.json, image_encoder.onnx, text_encoder.onnx,
    # tokenizer.json; image encoder in float32) that the Embed Lambda downloads at a cold start.
    clip_model_s3_uri: str | None = None
    # The caption functions' Anthropic API key: the Secrets Manager secret holding it (caption_provider
    # "anthropic"); unset, the stack creates one for you to fill.
    anthropic_secret_arn: str | None = None
    # Where alarms and failed-document notices are e-mailed (the SNS topic exists either way).
    alarm_email: str | None = None
    # The HTTP API: origins (comma-separated, e.g. "https://console.example.com") whose pages may
    # call it from a browser (none: no CORS), and the default stage's throttle (requests per second,
    # and the burst above it).
    api_cors_origins: str | None = None
    api_throttle_rate: int = setting(50, low=1, high=10_000)
    api_throttle_burst: int = setting(100, low=1, high=5_000)

    def __post_init__(self) -> None:
        check_fields(self, _context_key, ConfigError)
        _between("stuck_after_minutes", self.stuck_after_minutes, 5, self.execution_timeout_minutes)
        if self.database_secret_arn is not None and not _SECRET_ARN.match(self.database_secret_arn):
            raise ConfigError(
                "context 'database_secret_arn' must be the ARN of a Secrets Manager secret "
                f"(arn:aws:secretsmanager:<region>:<account>:secret:<name>), got {self.database_secret_arn!r}"
            )
        if not _INSTANCE_TYPE.match(self.database_instance_class):
            raise ConfigError(
                "context 'database_instance_class' must be an RDS instance class without the 'db.' prefix, "
                f"such as t4g.medium or r7g.large, got {self.database_instance_class!r}"
            )
        _between("database_max_storage_gib", self.database_max_storage_gib, self.database_storage_gib,
                 DATABASE_STORAGE_GIB[1])
        if not _INSTANCE_TYPE.match(self.gpu_instance_type):
            raise ConfigError(
                "context 'gpu_instance_type' must be an EC2 instance type such as g5.xlarge, "
                f"got {self.gpu_instance_type!r}"
            )
        if not _NVIDIA_FAMILY.match(self.gpu_instance_type) or self.gpu_instance_type.startswith(_NOT_NVIDIA):
            raise ConfigError(
                "context 'gpu_instance_type' must be an x86_64 instance type with an NVIDIA GPU (the ECS "
                "GPU-optimized AMI and the CUDA image need one), e.g. g4dn.xlarge, g5.xlarge, g6.xlarge; "
                f"got {self.gpu_instance_type!r}"
            )
        _between(
            "gpu_heartbeat_seconds", self.gpu_heartbeat_seconds,
            MISSED_BEATS_TOLERATED * self.gpu_worker_heartbeat_seconds, GPU_TASK_TIMEOUT_SECONDS,
        )
        for key, uri in (("gpu_image_uri", self.gpu_image_uri), ("extract_image_uri", self.extract_image_uri)):
            if uri is not None and not _ECR_IMAGE_URI.match(uri):
                raise ConfigError(
                    f"context '{key}' must be an ECR image with a tag or digest, such as "
                    f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-clip:v1, got {uri!r}"
                )
        if self.extract_image_uri is not None and not self.extract_ocr:
            raise ConfigError(
                "context 'extract_image_uri' names ExtractBatch's image with OCR while 'extract_ocr' is false "
                "(the zip, without OCR): unset one of them"
            )
        if self.clip_model_s3_uri is not None and not _S3_PREFIX_URI.match(self.clip_model_s3_uri):
            raise ConfigError(
                "context 'clip_model_s3_uri' must be an S3 prefix ending in '/', such as s3://my-models/clip-vit-b32/ "
                f"(the folder holding model.json, image_encoder.onnx, text_encoder.onnx, tokenizer.json), "
                f"got {self.clip_model_s3_uri!r}"
            )
        if self.anthropic_secret_arn is not None and not _SECRET_ARN.match(self.anthropic_secret_arn):
            raise ConfigError(
                "context 'anthropic_secret_arn' must be the ARN of a Secrets Manager secret holding the API key, "
                f"got {self.anthropic_secret_arn!r}"
            )
        if self.speech == "local":
            raise ConfigError("context 'speech' must be 'polly' or 'off' on AWS: espeak-ng ('local') is the local engine's")
        check_voices(self, ("speech_voices",), _context_key, ConfigError)
        if self.text_embedder == "e5":
            raise ConfigError(
                "context 'text_embedder' e5 does not fit the embed Lambda bundle (95 MB of engine and weights): "
                "use titan or wordllama"
            )
        if self.alarm_email is not None and not _EMAIL.match(self.alarm_email):
            raise ConfigError(f"context 'alarm_email' must be an e-mail address, got {self.alarm_email!r}")
        if any(o == "*" or not o.startswith(("https://", "http://localhost", "http://127.0.0.1"))
               for o in self.api_cors_origin_list):
            raise ConfigError("context 'api_cors_origins' must list https:// origins (or http://localhost), not "
                              f"'*': got {self.api_cors_origins!r}")
        if self.log_retention_days not in _RETENTION:
            raise ConfigError(
                f"context 'log_retention_days' must be one of {sorted(_RETENTION)} (CloudWatch Logs' periods), "
                f"got {self.log_retention_days}"
            )

    @property
    def api_cors_origin_list(self) -> list[str]:
        return [o.strip() for o in (self.api_cors_origins or "").split(",") if o.strip()]

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def gpu_image(self) -> dict[str, str] | None:
        """account, region, repository and tag (or digest) of gpu_image_uri, or None."""
        return _ecr_image(self.gpu_image_uri)

    @property
    def extract_image(self) -> dict[str, str] | None:
        """account, region, repository and tag (or digest) of extract_image_uri, or None."""
        return _ecr_image(self.extract_image_uri)

    @property
    def clip_model_location(self) -> tuple[str, str] | None:
        """(bucket, key prefix) of clip_model_s3_uri, or None when it is not set."""
        if self.clip_model_s3_uri is None:
            return None
        bucket, _, prefix = self.clip_model_s3_uri.removeprefix("s3://").partition("/")
        return bucket, prefix

    @classmethod
    def from_context(cls, node: Node) -> PipelineConfig:
        """Read every setting from the context; absent keys keep their defaults. Values given on
        the command line (``-c batch_pages=10``) arrive as strings and are converted here."""
        return cls(**read(cls, lambda f: (_context_key(f.name), node.try_get_context(f.name)), ConfigError))


def _context_key(name: str) -> str:
    return f"context {name!r}"


def _between(key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"context {key!r} must be between {low} and {high}, got {value}")


def _ecr_image(uri: str | None) -> dict[str, str] | None:
    match = _ECR_IMAGE_URI.match(uri) if uri else None
    if match is None:
        return None
    parts = match.groupdict()
    return {"account": parts["account"], "region": parts["region"], "repository": parts["repository"],
            "tag": parts["tag"] or parts["digest"]}
