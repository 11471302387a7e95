"""The pipeline's deployment settings: typed, validated once, read from the CDK context
(the ``context`` block of cdk.json, overridable with ``cdk synth -c key=value``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from aws_cdk import aws_logs as logs
from constructs import Node

MARKDOWN_MODES = ("legacy", "layout")
CAPTION_PROVIDERS = ("anthropic", "bedrock", "off")
# "e5" is not offered here: its engine and weights (95 MB) do not fit the embed bundle.
TEXT_EMBEDDERS = ("titan", "wordllama", "off")
TITAN_DIMENSIONS = (256, 512, 1024)
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
class PipelineConfig:
    # Pages per ExtractBatch invocation (the library may make image-heavy batches smaller).
    batch_pages: int = 25
    # Input limits: larger documents fail in Plan with a clear reason.
    max_pages: int = 10_000
    max_bytes: int = 512 * 1024 * 1024
    # Concurrent ExtractBatch child executions of one document's Distributed Map.
    map_concurrency: int = 40
    # "legacy": pymupdf4llm without the layout model (faster); "layout": the ONNX layout model.
    markdown_mode: str = "legacy"
    # Bring your own database: a Secrets Manager secret with the PostgreSQL connection (username,
    # password, host, port, dbname). Set, the stack creates no database (and no VPC for it).
    database_secret_arn: str | None = None
    # The stack's own database (when database_secret_arn is not set): an RDS PostgreSQL instance of
    # this class (without "db."), gp3 storage that grows from database_storage_gib up to
    # database_max_storage_gib, and max_connections (RDS Proxy pools a share of it).
    database_instance_class: str = "t4g.medium"
    database_storage_gib: int = 20
    database_max_storage_gib: int = 100
    database_max_connections: int = 200
    # A standby in a second AZ (about twice the instance cost) for automatic failover.
    database_multi_az: bool = False
    database_backup_days: int = 7
    # On: the instance cannot be deleted until this is turned off. Either way, deleting the stack
    # leaves a final snapshot.
    database_deletion_protection: bool = True
    # Whole-execution limit (the state machine's TimeoutSeconds).
    execution_timeout_minutes: int = 120
    # An execution running longer than this is "stuck" (alarm): well under the execution timeout,
    # so on-call hears of it before the timeout ends it.
    stuck_after_minutes: int = 30
    # Retention of every log group of the stack.
    log_retention_days: int = 30
    # The GPU embedding service: an Auto Scaling group of this instance type that scales between
    # 0 and gpu_max_instances instances (one Embed task per instance: each asks for one GPU).
    gpu_instance_type: str = "g5.xlarge"
    gpu_max_instances: int = 2
    # Documents with at least this many distinct images are embedded on the GPU service; fewer
    # (but at least one) on a CPU Lambda.
    gpu_min_images: int = 200
    # How long EmbedOnGpu waits for a heartbeat. The first one can only come once an instance
    # has started from zero and pulled the image (several minutes when the service is idle);
    # after that the worker beats every gpu_worker_heartbeat_seconds.
    gpu_heartbeat_seconds: int = 600
    # The GPU worker's image, already built and pushed to ECR (CI, another machine): deploy then
    # needs no Docker at all. Unset, `cdk deploy` builds containers/clip-gpu/Dockerfile.
    gpu_image_uri: str | None = None
    gpu_worker_heartbeat_seconds: int = 20
    # s3://bucket/prefix/ holding the CLIP model (model.json, image_encoder.onnx, text_encoder.onnx,
    # tokenizer.json; image encoder in float32) that the Embed Lambda downloads at a cold start.
    clip_model_s3_uri: str | None = None
    # Captions and document understanding: "anthropic" (the Messages API; its key in the
    # Secrets Manager secret anthropic_secret_arn, or in one the stack creates for you to fill),
    # "bedrock" (the same model through Amazon Bedrock, with the functions' IAM roles), or "off".
    caption_provider: str = "anthropic"
    caption_model: str = "claude-sonnet-4-5"
    anthropic_secret_arn: str | None = None
    # CaptionBatch invocations running at once per document, and images per invocation.
    caption_concurrency: int = 4
    caption_batch_size: int = 5
    # Input plus output tokens one document may spend on captions and understanding together.
    caption_token_budget: int = 200_000
    # Chunk embeddings for `pagemill search` (EmbedChunks in Enrich): "titan" (Bedrock Titan Text
    # Embeddings V2; bench/RESULTS.md, "Retrieval"), "wordllama" (the offline static model, in the
    # Lambda bundle), "off" (keyword search only). A change needs `pagemill reembed`.
    text_embedder: str = "titan"
    titan_model_id: str = "amazon.titan-embed-text-v2:0"
    titan_dimensions: int = 1024
    # Where alarms and failed-document notices are e-mailed (the SNS topic exists either way).
    alarm_email: str | None = None

    def __post_init__(self) -> None:
        _at_least("batch_pages", self.batch_pages, 1)
        _at_least("max_pages", self.max_pages, 1)
        _at_least("max_bytes", self.max_bytes, 1)
        _between("map_concurrency", self.map_concurrency, 1, 10_000)
        _between("execution_timeout_minutes", self.execution_timeout_minutes, 1, _STANDARD_MAX_MINUTES)
        _between("stuck_after_minutes", self.stuck_after_minutes, 5, self.execution_timeout_minutes)
        if self.markdown_mode not in MARKDOWN_MODES:
            raise ConfigError(f"context 'markdown_mode' must be one of {MARKDOWN_MODES}, got {self.markdown_mode!r}")
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
        _between("database_storage_gib", self.database_storage_gib, *DATABASE_STORAGE_GIB)
        _between("database_max_storage_gib", self.database_max_storage_gib, self.database_storage_gib,
                 DATABASE_STORAGE_GIB[1])
        _between("database_max_connections", self.database_max_connections, 20, 5000)
        _between("database_backup_days", self.database_backup_days, 1, 35)
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
        _between("gpu_max_instances", self.gpu_max_instances, 1, 100)
        _at_least("gpu_min_images", self.gpu_min_images, 1)
        _between("gpu_worker_heartbeat_seconds", self.gpu_worker_heartbeat_seconds, 1, 300)
        _between(
            "gpu_heartbeat_seconds", self.gpu_heartbeat_seconds,
            MISSED_BEATS_TOLERATED * self.gpu_worker_heartbeat_seconds, GPU_TASK_TIMEOUT_SECONDS,
        )
        if self.gpu_image_uri is not None and not _ECR_IMAGE_URI.match(self.gpu_image_uri):
            raise ConfigError(
                "context 'gpu_image_uri' must be an ECR image with a tag or digest, such as "
                f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-clip:v1, got {self.gpu_image_uri!r}"
            )
        if self.clip_model_s3_uri is not None and not _S3_PREFIX_URI.match(self.clip_model_s3_uri):
            raise ConfigError(
                "context 'clip_model_s3_uri' must be an S3 prefix ending in '/', such as s3://my-models/clip-vit-b32/ "
                f"(the folder holding model.json, image_encoder.onnx, text_encoder.onnx, tokenizer.json), "
                f"got {self.clip_model_s3_uri!r}"
            )
        if self.caption_provider not in CAPTION_PROVIDERS:
            raise ConfigError(
                f"context 'caption_provider' must be one of {CAPTION_PROVIDERS}, got {self.caption_provider!r}"
            )
        if not self.caption_model.strip():
            raise ConfigError("context 'caption_model' must name a model (a Bedrock model id when on Bedrock)")
        if self.anthropic_secret_arn is not None and not _SECRET_ARN.match(self.anthropic_secret_arn):
            raise ConfigError(
                "context 'anthropic_secret_arn' must be the ARN of a Secrets Manager secret holding the API key, "
                f"got {self.anthropic_secret_arn!r}"
            )
        _between("caption_concurrency", self.caption_concurrency, 1, 1000)
        if self.text_embedder not in TEXT_EMBEDDERS:
            raise ConfigError(f"context 'text_embedder' must be one of {TEXT_EMBEDDERS}, got {self.text_embedder!r}")
        if self.titan_dimensions not in TITAN_DIMENSIONS:
            raise ConfigError(f"context 'titan_dimensions' must be one of {TITAN_DIMENSIONS}, got {self.titan_dimensions}")
        if not re.match(r"^amazon\.titan-embed-text-v2[\w.:-]*$", self.titan_model_id):
            raise ConfigError(
                f"context 'titan_model_id' must be a Titan Text Embeddings V2 model id, got {self.titan_model_id!r}"
            )
        _between("caption_batch_size", self.caption_batch_size, 1, 50)
        _at_least("caption_token_budget", self.caption_token_budget, 1000)
        if self.alarm_email is not None and not _EMAIL.match(self.alarm_email):
            raise ConfigError(f"context 'alarm_email' must be an e-mail address, got {self.alarm_email!r}")
        if self.log_retention_days not in _RETENTION:
            raise ConfigError(
                f"context 'log_retention_days' must be one of {sorted(_RETENTION)} (CloudWatch Logs' periods), "
                f"got {self.log_retention_days}"
            )

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def gpu_image(self) -> dict[str, str] | None:
        """account, region, repository and tag (or digest) of gpu_image_uri, or None."""
        match = _ECR_IMAGE_URI.match(self.gpu_image_uri) if self.gpu_image_uri else None
        if match is None:
            return None
        parts = match.groupdict()
        return {"account": parts["account"], "region": parts["region"], "repository": parts["repository"],
                "tag": parts["tag"] or parts["digest"]}

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
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = node.try_get_context(f.name)
            if raw is None or raw == "":
                continue
            if isinstance(f.default, bool):
                values[f.name] = _bool(f.name, raw)
            else:
                values[f.name] = _int(f.name, raw) if isinstance(f.default, int) else str(raw)
        return cls(**values)


def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    raise ConfigError(f"context {key!r} must be true or false, got {raw!r}")


def _int(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"context {key!r} must be an integer, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"context {key!r} must be an integer, got {raw!r}") from None
    if isinstance(raw, float) and raw != value:
        raise ConfigError(f"context {key!r} must be an integer, got {raw!r}")
    return value


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"context {key!r} must be at least {low}, got {value}")


def _between(key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"context {key!r} must be between {low} and {high}, got {value}")
