"""The pipeline's Lambda functions: each one's handler, limits, environment (derived from the
settings contract, pagemill/settings.py) and least-privilege access to the bucket (its key
patterns derived from pagemill/keys.py), and the cdk-nag findings they accept."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Duration, IgnoreMode, Size, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pagemill import keys, metrics
from pagemill.settings import env_name, environment
from stacks import nag
from stacks.bundling import ARCHITECTURE, RUNTIME, bundled_code
from stacks.captions import CaptionState
from stacks.config import PipelineConfig
from stacks.database import DatabaseAccess
from stacks.grants import grant_secret_read, pushed_repository
from stacks.paths import (
    EXTRACT_IMAGE_SOURCE,
    LIBRARY_DIR,
    REPO_ROOT,
    build_context_exclude,
)

ANY = "*"  # stands for a document id in the keys' IAM patterns
# What each group of functions reads from the settings contract.
PIPELINE_SETTINGS = ("batch_pages", "max_pages", "max_bytes", "markdown_mode")
IMAGES_SETTINGS = ("gpu_min_images", "caption_provider", "caption_batch_size")
CAPTION_SETTINGS = ("caption_provider", "caption_model", "caption_token_budget")
SPEECH_SETTINGS = ("speech", "speech_voices", "speech_max_chars")
TEXT_EMBEDDING_SETTINGS = ("text_embedder", "titan_model_id", "titan_dimensions")


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
CLIP_DIR = "/tmp/clip"
TRIGGER = HandlerSpec("lambdas/trigger", "handler.handler", Duration.seconds(30), 256)
# Lists the running executions every few minutes for the "stuck" alarm.
WATCH = HandlerSpec("lambdas/trigger", "handler.watch", Duration.seconds(60), 256)
# Model calls are I/O: little memory. A batch of 5 images with retries fits in a few minutes; the
# handler stops retrying in time to write what it has.
CAPTION_BATCH = HandlerSpec("lambdas/caption", "handler.caption_batch", Duration.seconds(300), 1024)
UNDERSTAND = HandlerSpec("lambdas/caption", "handler.understand", Duration.seconds(300), 1024)
# A summary of at most speech_max_chars characters: one or two Polly requests and an MP3 encode.
SPEAK_SUMMARY = HandlerSpec("lambdas/speech", "handler.speak_summary", Duration.seconds(120), 512)
# The HTTP API (lambdas/api): API Gateway gives up on an integration after 30 s; memory for the
# CLIP text encoder a search loads.
API = HandlerSpec("lambdas/api", "handler.api", Duration.seconds(29), 2048)
# The reembed state machine (`pagemill reembed --aws`): ReembedBatch stops starting batches 3 minutes
# before its timeout (lambdas/reembed); BuildChunkIndex builds one HNSW index, on the database's side
# (about 8 minutes per million 256-d chunks on 2 cores: bench/RESULTS.md).
REEMBED_BATCH = HandlerSpec("lambdas/reembed", "handler.reembed_batch", Duration.seconds(900), 1024)
BUILD_CHUNK_INDEX = HandlerSpec("lambdas/reembed", "handler.build_index", Duration.seconds(900), 512)
# Schema migrations at deploy (a custom resource): building an index over a large table takes
# minutes, all on the database's side.
MIGRATE = HandlerSpec("lambdas/migrate", "handler.on_event", Duration.seconds(900), 512)


class PipelineFunctions(Construct):
    """Plan, ExtractBatch, CollectImages, Embed, CaptionBatch, Understand, SpeakSummary, Write, RecordFailure, the
    upload trigger, the running-executions watch, the deploy-time schema migration and the reembed
    state machine's ReembedBatch and BuildChunkIndex, each with
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
        pipeline_env = {"PAGEMILL_WORK_BUCKET": bucket.bucket_name, **environment(config, PIPELINE_SETTINGS)}
        images_env = {**pipeline_env, **environment(config, IMAGES_SETTINGS)}
        caption_env = {
            **pipeline_env, **environment(config, CAPTION_SETTINGS), env_name("captions_table"): captions.table.table_name,
        }
        if captions.api_key_arn:
            caption_env["ANTHROPIC_SECRET_ARN"] = captions.api_key_arn
        # UnderstandDocument says whether SpeakSummary runs; SpeakSummary speaks.
        caption_env.update(environment(config, ("speech",)))
        speech_env = {**pipeline_env, **environment(config, SPEECH_SETTINGS)}
        clip_env = {env_name("clip_dir"): CLIP_DIR}
        if config.clip_model_s3_uri:
            clip_env[env_name("clip_s3_uri")] = config.clip_model_s3_uri
        else:
            Annotations.of(self).add_warning_v2(
                "pagemill:no-clip-model",
                "context 'clip_model_s3_uri' is not set: the Embed Lambda has no CLIP model, so documents with "
                "fewer than gpu_min_images images fail in EmbedOnLambda. Upload the model files and set it.",
            )

        self.plan = self._function("PlanFunction", PLAN, pipeline_env, database)
        # OCR only fits a container image (the zip cannot hold OpenCV): README, "OCR on AWS". A
        # document's only batch collects its images as CollectImages does: the same settings.
        self.extract_batch = self._function("ExtractBatchFunction", EXTRACT_BATCH, images_env,
                                            image=config.extract_ocr)
        self.collect_images = self._function("CollectImagesFunction", COLLECT_IMAGES, images_env)
        self.embed = self._function("EmbedFunction", EMBED, {**images_env, **clip_env})
        self.caption_batch = self._function("CaptionBatchFunction", CAPTION_BATCH, caption_env)
        self.understand = self._function("UnderstandFunction", UNDERSTAND, caption_env)
        self.speak_summary = self._function("SpeakSummaryFunction", SPEAK_SUMMARY, speech_env)
        self.embed_chunks = self._embed_chunks(bucket, captions, pipeline_env)
        self.reembed_batch, self.build_chunk_index = self._reembed(database)
        self.write = self._function("WriteFunction", WRITE, pipeline_env, database)
        self.record_failure = self._function("RecordFailureFunction", RECORD_FAILURE, pipeline_env, database)
        self.settle = self._function("SettleFunction", SETTLE, {}, database)
        self.migrate = self._function("MigrateFunction", MIGRATE, {}, database)
        self.trigger = self._function("TriggerFunction", TRIGGER, {})
        self.watch = self._function("WatchFunction", WATCH, {})
        # The API embeds search queries with the chunk vectors' model.
        self.api = self._function("ApiFunction", API, {
            **pipeline_env, **clip_env, **environment(config, TEXT_EMBEDDING_SETTINGS)}, database)
        self.grant_text_embedder(self.api)

        # Each stage reads and writes only the keys pagemill.keys gives it, for any document id.
        uploads, documents = f"{keys.UPLOADS_PREFIX}{ANY}", f"{keys.DOCUMENTS_PREFIX}{ANY}"
        bucket.grant_read(self.plan, uploads)
        bucket.grant_put(self.plan, documents)
        bucket.grant_read(self.extract_batch, uploads)
        bucket.grant_put(self.extract_batch, documents)
        # CollectImages reads the batch results and writes the document's image list; Embed reads
        # the list and the images and writes the embeddings.
        bucket.grant_read(self.collect_images, documents)
        bucket.grant_put(self.collect_images, keys.image_list_key(ANY))
        bucket.grant_read(self.embed, documents)
        bucket.grant_put(self.embed, keys.embeddings_prefix(ANY) + ANY)
        if config.clip_model_location:
            _grant_prefix_download(self.embed, *config.clip_model_location)
            _grant_prefix_download(self.api, *config.clip_model_location)
        bucket.grant_put(self.collect_images, keys.caption_batches_key(ANY))
        # CaptionBatch reads the images and writes its batch's captions; UnderstandDocument reads
        # the page batches and writes the answer. Both share the breaker and budget table.
        bucket.grant_read(self.caption_batch, documents)
        bucket.grant_put(self.caption_batch, keys.captions_prefix(ANY) + ANY)
        bucket.grant_read(self.understand, documents)
        bucket.grant_put(self.understand, keys.understanding_key(ANY))
        for function in (self.caption_batch, self.understand):
            captions.table.grant_read_write_data(function)
            captions.grant_api_key(function)
            if config.caption_provider == "bedrock":
                _grant_bedrock_invoke(function)
        # A map item records its span in S3 (pagemill.pipeline.timings; every other stage's travels
        # in its result): CaptionBatch here, ExtractBatch may put anywhere under documents/ already.
        bucket.grant_put(self.caption_batch, keys.timings_prefix(ANY) + ANY)
        # SpeakSummary reads the summary and writes its audio under the document's speech prefix
        # only: PutObject alone, not grant_put's tagging and retention actions.
        self.speak_summary.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[bucket.arn_for_objects(keys.understanding_key(ANY))]
        ))
        self.speak_summary.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[bucket.arn_for_objects(keys.speech_prefix(ANY) + ANY)]
        ))
        # Polly's voices are not IAM resources: SynthesizeSpeech is authorized on "*" only.
        self.speak_summary.add_to_role_policy(iam.PolicyStatement(actions=["polly:SynthesizeSpeech"], resources=["*"]))
        bucket.grant_read(self.write, documents)
        bucket.grant_read(self.record_failure, uploads)
        self._accept_findings(bucket)

    def _accept_findings(self, bucket: s3.IBucket) -> None:
        for function in self.by_name.values():
            nag.accept(
                function, "L1",
                "Python 3.12 on purpose: each bundle's wheels are resolved for CPython 3.12 (stacks/bundling.py "
                "RUNTIME and the pip --python-version); a newer runtime is a change of both, tested together.",
            )
            nag.accept(
                function, "IAM4",
                "AWSLambdaBasicExecutionRole grants only logs:CreateLogGroup/CreateLogStream/PutLogEvents; each "
                "function writes to its own log group, created by the stack with a retention.",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            )
            nag.accept(
                function, "IAM5",
                "Bucket.grant_read/grant_put action groups (GetObject* includes GetObjectVersion: a stage reads the "
                "exact object version that started the execution), on the key prefixes accepted separately.",
                *(f"Action::{action}" for action in nag.BUCKET_GRANT_ACTIONS),
            )
            nag.accept_bucket_keys(function, bucket)
            nag.accept_wildcard_resource(function)
        for function in self.database_clients:
            nag.accept(
                function, "IAM4",
                "AWSLambdaVPCAccessExecutionRole: the network-interface actions Lambda needs to place the function "
                "in the VPC's isolated subnets (AWS authorizes ec2:CreateNetworkInterface and friends on '*' only).",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
            )

    def _embed_chunks(
        self, bucket: s3.IBucket, captions: CaptionState, pipeline_env: dict[str, str]
    ) -> lambda_.Function | None:
        """EmbedChunks reads the page batches and writes the chunk vectors; on Titan it may invoke
        that one model, behind its breaker and budget in the captions table."""
        config = self._config
        if config.text_embedder == "off":
            return None
        env = {**pipeline_env, **environment(config, TEXT_EMBEDDING_SETTINGS)}
        if config.text_embedder == "titan":
            env[env_name("captions_table")] = captions.table.table_name
        function = self._function("EmbedChunksFunction", EMBED_CHUNKS, env)
        bucket.grant_read(function, f"{keys.DOCUMENTS_PREFIX}{ANY}")
        bucket.grant_put(function, keys.chunk_vectors_key(ANY))
        if config.text_embedder == "titan":
            captions.table.grant_read_write_data(function)
        self.grant_text_embedder(function)
        return function

    def grant_text_embedder(self, function: lambda_.Function) -> None:
        """What embedding with the configured text embedder needs: on Titan, InvokeModel on that one
        model in the stack's region; the offline models read their weights from the bundle."""
        config = self._config
        if config.text_embedder == "titan":
            stack = Stack.of(function)
            function.add_to_role_policy(iam.PolicyStatement(
                actions=["bedrock:InvokeModel"],
                resources=[f"arn:{stack.partition}:bedrock:{stack.region}::foundation-model/{config.titan_model_id}"],
            ))

    def _reembed(self, database: DatabaseAccess) -> tuple[lambda_.Function | None, lambda_.Function | None]:
        """ReembedBatch gives chunks vectors of the configured model (in the database's VPC, with its
        secret, and Bedrock on Titan); BuildChunkIndex builds that model's index. None when chunk
        embeddings are off."""
        if self._config.text_embedder == "off":
            return None, None
        env = environment(self._config, TEXT_EMBEDDING_SETTINGS)
        batch = self._function("ReembedBatchFunction", REEMBED_BATCH, env, database)
        self.grant_text_embedder(batch)
        return batch, self._function("BuildChunkIndexFunction", BUILD_CHUNK_INDEX, env, database)

    @property
    def pipeline(self) -> tuple[lambda_.Function, ...]:
        """The functions the state machine invokes."""
        return (
            self.plan, self.extract_batch, self.collect_images, self.embed, self.caption_batch, self.understand,
            self.speak_summary, *((self.embed_chunks,) if self.embed_chunks else ()), self.write,
            self.record_failure,
        )

    def _function(
        self, id_: str, spec: HandlerSpec, env: dict[str, str], database: DatabaseAccess | None = None,
        image: bool = False,
    ) -> lambda_.Function:
        """``database``: the function talks to PostgreSQL, from inside the VPC when the database is there.
        ``image``: the function runs the same handler from ExtractBatch's container image instead of
        the bundled zip (``_extract_image``)."""
        repository = None
        if image:
            code, repository = self._extract_image(id_, spec)
            handler, runtime = lambda_.Handler.FROM_IMAGE, lambda_.Runtime.FROM_IMAGE
        else:
            if spec.source not in self._codes:
                self._codes[spec.source] = bundled_code(spec.source)
            code, handler, runtime = self._codes[spec.source], spec.handler, RUNTIME
        log_group = logs.LogGroup(self, f"{id_}Logs", retention=self._config.log_retention)
        function = lambda_.Function(
            self,
            id_,
            runtime=runtime,
            architecture=ARCHITECTURE,
            code=code,
            handler=handler,
            timeout=spec.timeout,
            memory_size=spec.memory_mb,
            ephemeral_storage_size=Size.mebibytes(spec.ephemeral_storage_mb),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            vpc=database.vpc if database else None,
            vpc_subnets=database.subnets if database else None,
            security_groups=[database.security_group] if database and database.security_group else None,
            environment={
                "POWERTOOLS_SERVICE_NAME": metrics.SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **env,
                **(database.environment if database else {}),
            },
        )
        function.node.default_child.add_metadata("pagemill:source", spec.source)
        if repository is not None:
            repository.grant_pull(function)
        self.by_name[id_.removesuffix("Function")] = function
        if database:
            grant_secret_read(function, database.secret)
            self.database_clients.append(function)
        return function

    def _extract_image(self, id_: str, spec: HandlerSpec) -> tuple[lambda_.Code, ecr.IRepository | None]:
        """The image pushed to ECR that the configuration names (and its repository, to grant the
        pull), or containers/extract/Dockerfile, built by ``cdk deploy`` for the functions'
        architecture. Synth only stages the build context (the library, the handler folder and
        the Dockerfile's folder); Docker runs at deploy."""
        pushed = self._config.extract_image
        if pushed is not None:
            repository = pushed_repository(self, f"{id_}Repository", pushed)
            return lambda_.Code.from_ecr_image(repository, tag_or_digest=pushed["tag"], cmd=[spec.handler]), repository
        code = lambda_.Code.from_asset_image(
            str(REPO_ROOT),
            file=f"{EXTRACT_IMAGE_SOURCE}/Dockerfile",
            cmd=[spec.handler],
            exclude=build_context_exclude(LIBRARY_DIR, spec.source, EXTRACT_IMAGE_SOURCE),
            ignore_mode=IgnoreMode.DOCKER,
            # public.ecr.aws/lambda/python:3.12 is published for both of Lambda's architectures
            platform=ecr_assets.Platform.custom(ARCHITECTURE.docker_platform),
        )
        return code, None


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
