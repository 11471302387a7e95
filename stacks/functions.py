"""The pipeline's Lambda functions and how their code is packaged.

Each function's asset is its handler folder (``lambdas/<stage>``) bundled locally, without
Docker: pip installs the folder's requirements.txt for Lambda's platform (x86_64, CPython 3.12)
and the handler modules plus the ``pagemill`` package are copied beside them. The library is
copied as files; this module never imports it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsii
from aws_cdk import (
    Annotations,
    AssetHashType,
    BundlingOptions,
    DockerImage,
    Duration,
    ILocalBundling,
    Size,
    Stack,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.captions import CaptionState
from stacks.config import PipelineConfig
from stacks.database import DatabaseAccess
from stacks.grants import grant_secret_read
from stacks.storage import DOCUMENTS_PREFIX, UPLOADS_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DIR = "pagemill"
RUNTIME = lambda_.Runtime.PYTHON_3_12
LAMBDA_PYTHON = RUNTIME.name.removeprefix("python")  # the CPython version the bundles' wheels are for
# PyMuPDF, onnxruntime and numpy publish x86_64 manylinux wheels that fit Lambda; no arm64 here.
ARCHITECTURE = lambda_.Architecture.X86_64
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any of these wheel tags load there.
PIP_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
# Required by the BundlingOptions API only: local bundling always succeeds or raises, so Docker is never run.
BUNDLING_IMAGE = DockerImage.from_registry("public.ecr.aws/sam/build-python3.12")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
# Removed from a bundle after pip: what Lambda's Python runtime already provides (boto3 and its
# dependencies, the serverless-python-requirements "noDeploy" list), console scripts, test
# suites, C headers, and onnxruntime's C-API library (the Python binding does not load it).
# Without this the extract bundle is about 300 MB, over Lambda's 250 MB.
PRUNED = (
    "boto3", "boto3-*.dist-info", "botocore", "botocore-*.dist-info", "s3transfer", "s3transfer-*.dist-info",
    "jmespath", "jmespath-*.dist-info", "urllib3", "urllib3-*.dist-info", "dateutil", "python_dateutil-*.dist-info",
    "six.py", "six-*.dist-info", "bin", "**/tests", "pymupdf/mupdf-devel", "onnxruntime/capi/libonnxruntime.so.*",
)
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


@dataclass(frozen=True)
class HandlerSpec:
    source: str  # handler folder, relative to the repository root
    handler: str
    timeout: Duration
    memory_mb: int
    ephemeral_storage_mb: int = 512


PLAN = HandlerSpec("lambdas/extract", "handler.plan", Duration.seconds(300), 2048)
EXTRACT_BATCH = HandlerSpec("lambdas/extract", "handler.extract_batch", Duration.seconds(300), 3008, 2048)
WRITE = HandlerSpec("lambdas/write", "handler.write", Duration.seconds(300), 1024)
RECORD_FAILURE = HandlerSpec("lambdas/write", "handler.record_failure", Duration.seconds(60), 512)
# Executions stopped or timed out as a whole skip RecordFailure: their documents are settled here.
SETTLE = HandlerSpec("lambdas/write", "handler.settle", Duration.seconds(60), 512)
# One document's chunks: Titan embeds about 40 a second with 4 requests in flight, the offline
# model thousands; 900 s covers a 10,000-page book's ~30,000 chunks on Titan.
EMBED_CHUNKS = HandlerSpec("lambdas/embed", "handler.embed_chunks", Duration.seconds(900), 1024)
COLLECT_IMAGES = HandlerSpec("lambdas/embed", "handler.collect_images", Duration.seconds(120), 1024)
# The CPU embedding path: the CLIP model (about 600 MB in float32) is downloaded to /tmp at a cold start.
EMBED = HandlerSpec("lambdas/embed", "handler.embed", Duration.seconds(900), 3008, 4096)
CLIP_DIR = "/tmp/clip"  # noqa: S108 (Lambda's only writable folder)
TRIGGER = HandlerSpec("lambdas/trigger", "handler.handler", Duration.seconds(30), 256)
# Lists the running executions every few minutes for the "stuck" alarm.
WATCH = HandlerSpec("lambdas/trigger", "handler.watch", Duration.seconds(60), 256)
# Model calls are I/O: little memory. A batch of 5 images with retries fits in a few minutes; the
# handler stops retrying in time to write what it has.
CAPTION_BATCH = HandlerSpec("lambdas/caption", "handler.caption_batch", Duration.seconds(300), 1024)
UNDERSTAND = HandlerSpec("lambdas/caption", "handler.understand", Duration.seconds(300), 1024)
# Schema migrations at deploy (a custom resource): building an index over a large table takes
# minutes, all on the database's side.
MIGRATE = HandlerSpec("lambdas/migrate", "handler.on_event", Duration.seconds(900), 512)


def _pip_command(requirements: Path, target: str, python_version: str) -> list[str]:
    platforms = [arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)]
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--requirement", str(requirements), *platforms, "--only-binary=:all:", "--python-version", python_version,
        "--implementation", "cp", "--target", target,
    ]


@jsii.implements(ILocalBundling)
class LocalPythonBundler:
    """Builds a function's deployment folder on this machine: platform wheels + handler + library.

    ``python_version`` is Lambda's CPython; another version builds the same bundle for that
    interpreter (the bundle tests import it on this machine's Python)."""

    def __init__(self, source: Path, python_version: str = LAMBDA_PYTHON) -> None:
        self.source = source
        self.python_version = python_version

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:  # noqa: ARG002 (jsii's signature)
        self.bundle(Path(output_dir))
        return True

    def bundle(self, out: Path) -> int:
        """Build the bundle into ``out``; returns its unzipped size in bytes."""
        requirements = self.source / "requirements.txt"
        command = _pip_command(requirements, str(out), self.python_version)
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"bundling {self.source.relative_to(REPO_ROOT)} failed: pip exited with {proc.returncode}\n"
                f"{proc.stderr[-3000:]}"
            )
        _prune(out)
        for module in sorted(self.source.glob("*.py")):
            shutil.copy2(module, out / module.name)
        shutil.copytree(REPO_ROOT / LIBRARY_DIR, out / LIBRARY_DIR, ignore=_IGNORED, dirs_exist_ok=True)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
        if size > LAMBDA_UNZIPPED_LIMIT_BYTES:
            raise RuntimeError(
                f"the bundle of {self.source.relative_to(REPO_ROOT)} is {size / 2**20:.0f} MiB unzipped, over "
                f"Lambda's {LAMBDA_UNZIPPED_LIMIT_BYTES / 2**20:.0f} MiB: trim {self.source.name}/requirements.txt"
            )
        return size

    def content_hash(self) -> str:
        """Everything that goes into the bundle: the handler folder, the library and the pip recipe.
        CDK re-bundles exactly when this changes (the default would hash the handler folder alone
        and miss changes to the library)."""
        recipe = _pip_command(Path("requirements.txt"), "out", self.python_version)[3:]
        digest = hashlib.sha256(" ".join([*recipe, *PRUNED]).encode())
        for root in (self.source, REPO_ROOT / LIBRARY_DIR):
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()


def _prune(bundle: Path) -> None:
    for pattern in PRUNED:
        for path in sorted(bundle.glob(pattern), reverse=True):  # deepest first
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def _code(source: str) -> lambda_.Code:
    bundler = LocalPythonBundler(REPO_ROOT / source)
    return lambda_.Code.from_asset(
        str(bundler.source),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=bundler.content_hash(),
        bundling=BundlingOptions(image=BUNDLING_IMAGE, local=bundler),
    )


class PipelineFunctions(Construct):
    """Plan, ExtractBatch, CollectImages, Embed, CaptionBatch, Understand, Write, RecordFailure, the
    upload trigger, the running-executions watch and the deploy-time schema migration, each with
    least-privilege access to the bucket; those that talk to PostgreSQL read its secret and, when
    the database is the stack's own, run in its VPC. Each function carries ``pagemill:source``
    metadata naming its handler folder, for tools that run the template's functions locally."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bucket: s3.IBucket,
        captions: CaptionState,
        database: DatabaseAccess,
        config: PipelineConfig,
    ) -> None:
        super().__init__(scope, id_)
        self._config = config
        # One asset per handler folder: Plan and ExtractBatch share the extract bundle.
        self._codes: dict[str, lambda_.Code] = {}
        # Every function by its name (its construct id without "Function"), and those that talk to
        # PostgreSQL: what monitoring watches and what runs in the database's VPC.
        self.by_name: dict[str, lambda_.Function] = {}
        self.database_clients: list[lambda_.Function] = []
        pipeline_env = {
            "PAGEMILL_WORK_BUCKET": bucket.bucket_name,
            "PAGEMILL_BATCH_PAGES": str(config.batch_pages),
            "PAGEMILL_MAX_PAGES": str(config.max_pages),
            "PAGEMILL_MAX_BYTES": str(config.max_bytes),
            "PAGEMILL_MARKDOWN_MODE": config.markdown_mode,
        }
        images_env = {
            **pipeline_env,
            "PAGEMILL_GPU_MIN_IMAGES": str(config.gpu_min_images),
            "PAGEMILL_CAPTION_PROVIDER": config.caption_provider,
            "PAGEMILL_CAPTION_BATCH_SIZE": str(config.caption_batch_size),
        }
        caption_env = {
            **pipeline_env,
            "PAGEMILL_CAPTION_PROVIDER": config.caption_provider,
            "PAGEMILL_CAPTION_MODEL": config.caption_model,
            "PAGEMILL_CAPTION_TOKEN_BUDGET": str(config.caption_token_budget),
            "PAGEMILL_CAPTIONS_TABLE": captions.table.table_name,
        }
        if captions.api_key_arn:
            caption_env["ANTHROPIC_SECRET_ARN"] = captions.api_key_arn
        clip_env = {"PAGEMILL_CLIP_DIR": CLIP_DIR}
        if config.clip_model_s3_uri:
            clip_env["PAGEMILL_CLIP_S3_URI"] = config.clip_model_s3_uri
        else:
            Annotations.of(self).add_warning_v2(
                "pagemill:no-clip-model",
                "context 'clip_model_s3_uri' is not set: the Embed Lambda has no CLIP model, so documents with "
                "fewer than gpu_min_images images fail in EmbedOnLambda. Upload the model files and set it.",
            )

        self.plan = self._function("PlanFunction", PLAN, pipeline_env, database)
        self.extract_batch = self._function("ExtractBatchFunction", EXTRACT_BATCH, pipeline_env)
        self.collect_images = self._function("CollectImagesFunction", COLLECT_IMAGES, images_env)
        self.embed = self._function("EmbedFunction", EMBED, {**images_env, **clip_env})
        self.caption_batch = self._function("CaptionBatchFunction", CAPTION_BATCH, caption_env)
        self.understand = self._function("UnderstandFunction", UNDERSTAND, caption_env)
        self.embed_chunks = self._embed_chunks(bucket, captions, pipeline_env)
        self.write = self._function("WriteFunction", WRITE, pipeline_env, database)
        self.record_failure = self._function("RecordFailureFunction", RECORD_FAILURE, pipeline_env, database)
        self.settle = self._function("SettleFunction", SETTLE, {}, database)
        self.migrate = self._function("MigrateFunction", MIGRATE, {}, database)
        self.trigger = self._function("TriggerFunction", TRIGGER, {})
        self.watch = self._function("WatchFunction", WATCH, {})

        uploads, documents = f"{UPLOADS_PREFIX}*", f"{DOCUMENTS_PREFIX}*"
        bucket.grant_read(self.plan, uploads)
        bucket.grant_put(self.plan, documents)
        bucket.grant_read(self.extract_batch, uploads)
        bucket.grant_put(self.extract_batch, documents)
        # CollectImages reads the batch results and writes the document's image list; Embed reads
        # the list and the images and writes the embeddings.
        bucket.grant_read(self.collect_images, documents)
        bucket.grant_put(self.collect_images, f"{DOCUMENTS_PREFIX}*/images.json")
        bucket.grant_read(self.embed, documents)
        bucket.grant_put(self.embed, f"{DOCUMENTS_PREFIX}*/embeddings/*")
        if config.clip_model_location:
            _grant_prefix_download(self.embed, *config.clip_model_location)
        bucket.grant_put(self.collect_images, f"{DOCUMENTS_PREFIX}*/caption-batches.json")
        # CaptionBatch reads the images and writes its batch's captions; UnderstandDocument reads
        # the page batches and writes the answer. Both share the breaker and budget table.
        bucket.grant_read(self.caption_batch, documents)
        bucket.grant_put(self.caption_batch, f"{DOCUMENTS_PREFIX}*/captions/*")
        bucket.grant_read(self.understand, documents)
        bucket.grant_put(self.understand, f"{DOCUMENTS_PREFIX}*/understanding.json")
        for function in (self.caption_batch, self.understand):
            captions.table.grant_read_write_data(function)
            captions.grant_api_key(function)
            if config.caption_provider == "bedrock":
                _grant_bedrock_invoke(function)
        bucket.grant_read(self.write, documents)
        bucket.grant_read(self.record_failure, uploads)

    def _embed_chunks(
        self, bucket: s3.IBucket, captions: CaptionState, pipeline_env: dict[str, str]
    ) -> lambda_.Function | None:
        """EmbedChunks reads the page batches and writes the chunk vectors; on Titan it calls
        that one model (least privilege) behind its breaker and budget in the captions table."""
        config = self._config
        if config.text_embedder == "off":
            return None
        env = {**pipeline_env, "PAGEMILL_TEXT_EMBEDDER": config.text_embedder}
        if config.text_embedder == "titan":
            env.update({
                "PAGEMILL_TITAN_MODEL_ID": config.titan_model_id,
                "PAGEMILL_TITAN_DIMENSIONS": str(config.titan_dimensions),
                "PAGEMILL_CAPTIONS_TABLE": captions.table.table_name,
            })
        function = self._function("EmbedChunksFunction", EMBED_CHUNKS, env)
        bucket.grant_read(function, f"{DOCUMENTS_PREFIX}*")
        bucket.grant_put(function, f"{DOCUMENTS_PREFIX}*/chunk-vectors.npy")
        if config.text_embedder == "titan":
            captions.table.grant_read_write_data(function)
            stack = Stack.of(function)
            function.add_to_role_policy(iam.PolicyStatement(
                actions=["bedrock:InvokeModel"],
                resources=[f"arn:{stack.partition}:bedrock:{stack.region}::foundation-model/{config.titan_model_id}"],
            ))
        return function

    @property
    def pipeline(self) -> tuple[lambda_.Function, ...]:
        """The functions the state machine invokes."""
        return (
            self.plan, self.extract_batch, self.collect_images, self.embed, self.caption_batch, self.understand,
            *((self.embed_chunks,) if self.embed_chunks else ()), self.write, self.record_failure,
        )

    def _function(
        self, id_: str, spec: HandlerSpec, environment: dict[str, str], database: DatabaseAccess | None = None
    ) -> lambda_.Function:
        """``database``: the function talks to PostgreSQL, from inside the VPC when the database is there."""
        if spec.source not in self._codes:
            self._codes[spec.source] = _code(spec.source)
        log_group = logs.LogGroup(self, f"{id_}Logs", retention=self._config.log_retention)
        function = lambda_.Function(
            self,
            id_,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self._codes[spec.source],
            handler=spec.handler,
            timeout=spec.timeout,
            memory_size=spec.memory_mb,
            ephemeral_storage_size=Size.mebibytes(spec.ephemeral_storage_mb),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            vpc=database.vpc if database else None,
            vpc_subnets=database.subnets if database else None,
            security_groups=[database.security_group] if database and database.security_group else None,
            environment={
                "POWERTOOLS_SERVICE_NAME": "pagemill",
                "POWERTOOLS_METRICS_NAMESPACE": "Pagemill",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **environment,
                **(database.environment if database else {}),
            },
        )
        function.node.default_child.add_metadata("pagemill:source", spec.source)
        self.by_name[id_.removesuffix("Function")] = function
        if database:
            grant_secret_read(function, database.secret)
            self.database_clients.append(function)
        return function


def _grant_prefix_download(function: lambda_.Function, bucket_name: str, prefix: str) -> None:
    """What pagemill.aws.clients downloads a model folder with: ListObjectsV2 under the prefix, GetObject."""
    partition = Stack.of(function).partition
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[f"arn:{partition}:s3:::{bucket_name}"],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"arn:{partition}:s3:::{bucket_name}/{prefix}*"])
    )


def _grant_bedrock_invoke(function: lambda_.Function) -> None:
    """Anthropic models on Bedrock, directly or through a cross-region inference profile."""
    stack = Stack.of(function)
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["bedrock:InvokeModel"],
            resources=[
                f"arn:{stack.partition}:bedrock:*::foundation-model/anthropic.*",
                f"arn:{stack.partition}:bedrock:{stack.region}:{stack.account}:inference-profile/*anthropic.*",
            ],
        )
    )
