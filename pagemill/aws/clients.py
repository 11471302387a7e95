"""The edge shared by the Lambda handlers: the handler environment, modelled and validated once,
and the AWS clients and database connection, built lazily (never at import: moto or the local
engine must be in place first) and reused across warm invocations."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import boto3

from pagemill.pipeline.context import ModelAccess, StageContext
from pagemill.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandlerEnv:
    work_bucket: str
    settings: Settings
    # The Secrets Manager secret holding the Anthropic API key (AWS); ANTHROPIC_API_KEY wins.
    anthropic_secret_arn: str | None = None
    anthropic_api_key: str | None = None

    @classmethod
    def from_environ(cls) -> HandlerEnv:
        bucket = os.environ.get("PAGEMILL_WORK_BUCKET")
        if not bucket:
            raise RuntimeError("PAGEMILL_WORK_BUCKET is not set: the function was deployed without its bucket")
        return cls(
            work_bucket=bucket,
            settings=Settings.from_env(),
            anthropic_secret_arn=os.environ.get("ANTHROPIC_SECRET_ARN") or None,
            anthropic_api_key=os.environ.get("ANTHROPIC_API_KEY") or None,
        )


@dataclass(frozen=True)
class ExecutionsEnv:
    """The trigger and watch functions' environment: the state machine they start and watch."""

    state_machine_arn: str

    @classmethod
    def from_environ(cls) -> ExecutionsEnv:
        arn = os.environ.get("STATE_MACHINE_ARN")
        if not arn:
            raise RuntimeError("STATE_MACHINE_ARN is not set: the function was deployed without its state machine")
        return cls(state_machine_arn=arn)


def handler_env() -> HandlerEnv:
    # Read at each invocation (it is cheap), never cached: locally one worker process serves
    # several functions, each with its own environment.
    return HandlerEnv.from_environ()


@cache
def client(service: str) -> Any:
    return boto3.client(service)


@dataclass(frozen=True)
class DatabaseEnv:
    """How a function reaches PostgreSQL: DATABASE_URL (local engine, tests), or else the RDS
    secret, read at each new connection (it rotates), with PAGEMILL_DATABASE_HOST (RDS Proxy's
    endpoint) over the secret's host."""

    url: str | None
    secret_arn: str | None
    host: str | None

    @classmethod
    def from_environ(cls) -> DatabaseEnv:
        return cls(
            url=Settings.from_env().database_url,
            secret_arn=os.environ.get("DATABASE_SECRET_ARN") or None,
            host=os.environ.get("PAGEMILL_DATABASE_HOST") or None,
        )


def database_url(env: DatabaseEnv) -> str:
    from pagemill.db.connect import url_from_secret

    if env.url:
        return env.url
    if not env.secret_arn:
        raise RuntimeError("neither DATABASE_URL nor DATABASE_SECRET_ARN is set")
    secret = json.loads(client("secretsmanager").get_secret_value(SecretId=env.secret_arn)["SecretString"])
    return url_from_secret(secret, host=env.host)


def stage_context() -> StageContext:
    env = handler_env()
    return StageContext(s3=client("s3"), settings=env.settings, work_bucket=env.work_bucket)


def clip_model() -> Any:
    """The CLIP model, loaded once per execution environment; on Lambda the folder is filled
    from PAGEMILL_CLIP_S3_URI at the first cold start (the model is too large for the bundle)."""
    settings = handler_env().settings
    return _clip_model(settings.clip_dir, settings.clip_s3_uri)


@lru_cache(maxsize=2)
def _clip_model(clip_dir: str, clip_s3_uri: str) -> Any:
    from pagemill.clip.model import ClipModel

    if not clip_dir:
        raise RuntimeError("PAGEMILL_CLIP_DIR is not set: the function has no CLIP model")
    directory = Path(clip_dir)
    if not (directory / "model.json").is_file():
        if not clip_s3_uri:
            raise RuntimeError(f"no CLIP model in {directory} and PAGEMILL_CLIP_S3_URI is not set")
        _download_prefix(clip_s3_uri, directory)
    return ClipModel.load(directory)


def _download_prefix(uri: str, directory: Path) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    directory.mkdir(parents=True, exist_ok=True)
    s3 = client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            if name:
                s3.download_file(bucket, obj["Key"], str(directory / name))


_connection: Any = None


def db_connection() -> Any:
    """One connection per execution environment, reopened if the last one broke."""
    global _connection
    # Imported here: the trigger function bundles no database driver.
    from psycopg.pq import TransactionStatus

    from pagemill.db.connect import connect

    if _connection is None or _connection.closed or _connection.broken:
        _connection = connect(database_url(DatabaseEnv.from_environ()))
    elif _connection.info.transaction_status != TransactionStatus.IDLE:
        # A defect: a query ran outside a transaction block and left one open. Every transaction()
        # of this invocation would only be a savepoint in it and nothing would ever commit.
        log.error("database connection left in a transaction: rolled back",
                  extra={"transaction_status": _connection.info.transaction_status.name})
        _connection.rollback()
    return _connection


# --- the model API: client, shared breaker, per-document budget -----------------------------

# How long a read of the API key secret is reused: a rotated key is picked up within this time.
API_KEY_MAX_AGE_SECONDS = 300


def model_access(document_id: str, time_left: Callable[[], float] | None = None) -> ModelAccess:
    """Everything a model stage needs to call the model for ``document_id``; raises
    CaptionsUnavailable when the direct API has no key."""
    return ModelAccess(caption_client(), caption_breaker(), token_budget(document_id), time_left)


def caption_client() -> Any:
    """The anthropic SDK client for the configured provider; raises CaptionsUnavailable when
    the direct API has no key. The SDK itself honours ANTHROPIC_BASE_URL."""
    env = handler_env()
    api_key = None
    if env.settings.caption_provider == "anthropic":
        api_key = env.anthropic_api_key or _anthropic_key(env.anthropic_secret_arn)
    # Cached by key: a rotated key builds a new client.
    return _caption_client(env.settings, api_key)


@lru_cache(maxsize=2)
def _caption_client(settings: Settings, api_key: str | None) -> Any:
    from pagemill.captions.client import build_client

    return build_client(settings, api_key=api_key)


def _anthropic_key(secret_arn: str | None) -> str | None:
    if not secret_arn:
        return None
    value = _secrets().get(secret_arn, max_age=API_KEY_MAX_AGE_SECONDS)
    return str(value or "").strip() or None


@lru_cache(maxsize=1)
def _secrets() -> Any:
    # Powertools' provider caches each secret for max_age, so warm invocations do not call
    # Secrets Manager each time and still see a rotation.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=client("secretsmanager"))


def caption_breaker() -> Any:
    """The circuit breaker every caption call of every document shares (one item per provider
    and model in the captions table)."""
    from pagemill.captions.breaker import CircuitBreaker, DynamoDbBreakerStore

    s = handler_env().settings
    store = DynamoDbBreakerStore(_captions_table(s), f"{s.caption_provider}:{s.caption_model}", client("dynamodb"))
    return CircuitBreaker(
        store, failure_threshold=s.breaker_failure_threshold, window_seconds=s.breaker_window_seconds,
        cooldown_seconds=s.breaker_cooldown_seconds,
    )


def token_budget(document_id: str) -> Any:
    from pagemill.captions.budget import DynamoDbTokenBudget

    s = handler_env().settings
    return DynamoDbTokenBudget(_captions_table(s), document_id, s.caption_token_budget, client("dynamodb"))


def text_embedder(document_id: str) -> Any:
    """The chunk embedder the settings name. Titan calls go through their own circuit breaker (one
    item per model in the captions table: an outage of Titan says nothing about Claude's) and a
    per-document budget of their own (a long book's chunks would spend a caption budget at once)."""
    from pagemill.captions.breaker import CircuitBreaker, DynamoDbBreakerStore
    from pagemill.captions.budget import DynamoDbTokenBudget
    from pagemill.text_embed.select import build_embedder

    s = handler_env().settings
    if s.text_embedder != "titan":
        return build_embedder(s)
    table = _captions_table(s)
    breaker = CircuitBreaker(
        DynamoDbBreakerStore(table, f"bedrock:{s.titan_model_id}", client("dynamodb")),
        failure_threshold=s.breaker_failure_threshold, window_seconds=s.breaker_window_seconds,
        cooldown_seconds=s.breaker_cooldown_seconds,
    )
    budget = DynamoDbTokenBudget(table, f"{document_id}:chunks", s.titan_token_budget, client("dynamodb"))
    return build_embedder(s, bedrock=client("bedrock-runtime"), breaker=breaker, budget=budget)


def _captions_table(settings: Settings) -> str:
    if not settings.captions_table:
        raise RuntimeError("PAGEMILL_CAPTIONS_TABLE is not set: the function was deployed without its table")
    return settings.captions_table


# --- speech -----------------------------------------------------------------------------------


def speech_engine() -> Any:
    """The engine PAGEMILL_SPEECH names: Amazon Polly (with the speech timeout on its requests;
    throttling is retried by the state machine, so the client tries each request twice at most),
    or espeak-ng on this machine."""
    s = handler_env().settings
    return _speech_engine(s)


@lru_cache(maxsize=2)
def _speech_engine(settings: Settings) -> Any:
    from botocore.config import Config

    from pagemill.speech.espeak import EspeakEngine
    from pagemill.speech.polly import PollyEngine
    from pagemill.speech.voices import parse_voices

    if settings.speech == "polly":
        polly = boto3.client("polly", config=Config(
            connect_timeout=5, read_timeout=settings.speech_timeout_seconds,
            retries={"mode": "standard", "total_max_attempts": 2},  # one retry: the state retries too
        ))
        return PollyEngine(polly, configured=parse_voices(settings.speech_voices),
                           default_language=settings.speech_default_language)
    if settings.speech == "local":
        return EspeakEngine(configured=parse_voices(settings.speech_local_voices),
                            default_language=settings.speech_default_language,
                            timeout_seconds=settings.speech_timeout_seconds)
    raise RuntimeError("PAGEMILL_SPEECH is off: SpeakSummary should not have run")
# --- the HTTP API ------------------------------------------------------------------------------

# Lambda takes request bodies up to 6 MB, and API Gateway sends a binary body base64-encoded
# (4/3 larger): files over this go through POST /uploads (presigned, straight to S3).
API_MAX_UPLOAD_BYTES = 4 * 1024 * 1024


@cache
def api_backend() -> Any:
    """The HTTP API's Backend on Lambda: the function's bucket, state machine and database
    connection (one at a time: a Lambda serves one request at a time), the CLIP text encoder,
    loaded at the first search, and the chunk embedder queries are embedded with."""
    from contextlib import nullcontext

    from pagemill.api.backend import Backend

    env = handler_env()
    return Backend(
        s3=client("s3"), sfn=client("stepfunctions"), bucket=env.work_bucket,
        state_machine_arn=ExecutionsEnv.from_environ().state_machine_arn,
        connection=lambda: nullcontext(db_connection()),
        embed_text=lambda text: clip_model().embed_texts([text])[0],
        text_embedder=query_embedder(env.settings),
        max_upload_bytes=API_MAX_UPLOAD_BYTES, max_source_bytes=env.settings.max_bytes,
        presigned_uploads=True, redrive_executions=True, where="aws",
    )


# A search waits for its query's vector: two tries within about a second, then the API answers by
# keyword (pagemill.api.service.search); API Gateway gives up on the function after 29 s.
QUERY_RETRY_ATTEMPTS = 2
QUERY_RETRY_BASE_SECONDS = 0.2
QUERY_RETRY_MAX_SECONDS = 1.0
QUERY_BEDROCK_TIMEOUT_SECONDS = 5


def query_embedder(settings: Settings) -> Any:
    """The chunk vectors' embedder for search queries (None when chunk embeddings are off); Titan
    with short timeouts and few retries (a query is one short text and a person is waiting)."""
    from pagemill.captions.client import RetryPolicy
    from pagemill.text_embed.select import standalone_embedder

    if settings.text_embedder != "titan":
        return standalone_embedder(settings)
    from botocore.config import Config

    bedrock = boto3.client("bedrock-runtime", config=Config(
        connect_timeout=2, read_timeout=QUERY_BEDROCK_TIMEOUT_SECONDS,
        # One try per call (botocore's max_attempts would count retries only): the retries are ours.
        retries={"mode": "standard", "total_max_attempts": 1},
    ))
    policy = RetryPolicy(QUERY_RETRY_ATTEMPTS, QUERY_RETRY_BASE_SECONDS, QUERY_RETRY_MAX_SECONDS)
    return standalone_embedder(settings, bedrock=bedrock, policy=policy)


def reembed_embedder() -> Any:
    """The configured embedder for ReembedBatch (re-embedding belongs to no document: no per-document
    budget; Titan with the caption calls' retries behind a breaker of this execution environment)."""
    return _reembed_embedder(Settings.from_env())


@lru_cache(maxsize=2)
def _reembed_embedder(settings: Settings) -> Any:
    from pagemill.errors import InternalError
    from pagemill.text_embed.select import standalone_embedder

    embedder = standalone_embedder(
        settings, bedrock=client("bedrock-runtime") if settings.text_embedder == "titan" else None)
    if embedder is None:
        raise InternalError("PAGEMILL_TEXT_EMBEDDER is off: the reembed functions should not be deployed")
    return embedder
