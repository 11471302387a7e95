"""The stack's settings (cdk.json context): defaults, command-line strings, clear messages, and
the one contract they share with the library's settings."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.infrastructure.conftest import cdk_context
from tests.infrastructure.queries import Context


def test_config_reads_context_with_defaults_and_cli_strings() -> None:
    from stacks.config import PipelineConfig

    assert PipelineConfig.from_context(Context()) == PipelineConfig()
    # `cdk synth -c batch_pages=10` passes strings
    config = PipelineConfig.from_context(Context(batch_pages="10", map_concurrency=5, markdown_mode="layout"))
    assert (config.batch_pages, config.map_concurrency, config.markdown_mode) == (10, 5, "layout")


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"batch_pages": 0}, "'batch_pages' must be at least 1"),
        ({"batch_pages": "ten"}, "'batch_pages' must be an integer"),
        ({"map_concurrency": 10_001}, "'map_concurrency' must be between 1 and 10000"),
        ({"markdown_mode": "fancy"}, "'markdown_mode' must be one of"),
        ({"log_retention_days": 31}, "'log_retention_days' must be one of"),
        ({"database_secret_arn": "pagemill/db"}, "'database_secret_arn' must be the ARN"),
        ({"execution_timeout_minutes": 0}, "'execution_timeout_minutes' must be between"),
        ({"gpu_instance_type": "g5"}, "'gpu_instance_type' must be an EC2 instance type"),
        ({"gpu_instance_type": "c5.xlarge"}, "'gpu_instance_type' must be an x86_64 instance type with an NVIDIA GPU"),
        ({"gpu_instance_type": "g5g.xlarge"}, "'gpu_instance_type' must be an x86_64 instance type with an NVIDIA GPU"),
        ({"gpu_max_instances": 0}, "'gpu_max_instances' must be between 1 and 100"),
        ({"gpu_min_images": 0}, "'gpu_min_images' must be at least 1"),
        ({"alarm_email": "oncall"}, "'alarm_email' must be an e-mail address"),
        ({"caption_provider": "openai"}, "'caption_provider' must be one of"),
        ({"caption_batch_size": 0}, "'caption_batch_size' must be between 1 and 50"),
        ({"gpu_heartbeat_seconds": 30}, "'gpu_heartbeat_seconds' must be between 60 and 3600"),
        ({"gpu_worker_heartbeat_seconds": 0}, "'gpu_worker_heartbeat_seconds' must be between 1 and 300"),
        # three missed beats of a worker that beats every minute
        ({"gpu_worker_heartbeat_seconds": 60, "gpu_heartbeat_seconds": 120},
         "'gpu_heartbeat_seconds' must be between 180 and 3600"),
        ({"clip_model_s3_uri": "my-models/clip/"}, "'clip_model_s3_uri' must be an S3 prefix ending in '/'"),
        ({"clip_model_s3_uri": "s3://my-models/clip"}, "'clip_model_s3_uri' must be an S3 prefix ending in '/'"),
        ({"gpu_image_uri": "pagemill-clip:v1"}, "'gpu_image_uri' must be an ECR image with a tag or digest"),
        ({"gpu_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-clip"}, "with a tag or digest"),
        ({"extract_ocr": "maybe"}, "'extract_ocr' must be true or false"),
        ({"extract_ocr": "false", "extract_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-extract:v1"},
         "'extract_image_uri' names ExtractBatch's image with OCR while 'extract_ocr' is false"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(context: dict[str, Any], message: str) -> None:
    from stacks.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        PipelineConfig.from_context(Context(**context))


def test_config_accepts_gpu_settings() -> None:
    from stacks.config import PipelineConfig

    config = PipelineConfig.from_context(
        Context(gpu_instance_type="g4dn.2xlarge", gpu_max_instances="4", gpu_min_images="50",
                 clip_model_s3_uri="s3://my-models/clip-vit-b32/")
    )
    assert (config.gpu_instance_type, config.gpu_max_instances, config.gpu_min_images) == ("g4dn.2xlarge", 4, 50)
    assert config.clip_model_location == ("my-models", "clip-vit-b32/")
    assert PipelineConfig().clip_model_location is None


def test_extract_batch_reads_scans_with_ocr_unless_opted_out() -> None:
    from stacks.config import PipelineConfig

    assert PipelineConfig().extract_ocr is True  # cdk deploy builds the image with OCR
    assert PipelineConfig.from_context(Context(extract_ocr="false")).extract_ocr is False  # `-c extract_ocr=false`


def test_the_stack_and_the_library_share_one_settings_contract() -> None:
    from pagemill.settings import DeployedSettings, Settings, env_name
    from stacks.config import ConfigError, PipelineConfig

    shared = {f.name for f in dataclasses.fields(DeployedSettings)}
    # both read the deployed settings from the one declaration: same names, types and defaults
    assert issubclass(PipelineConfig, DeployedSettings) and issubclass(Settings, DeployedSettings)
    assert shared == {
        "batch_pages", "max_pages", "max_bytes", "markdown_mode", "gpu_min_images", "caption_provider",
        "caption_model", "caption_concurrency", "caption_batch_size", "caption_token_budget", "speech",
        "speech_voices", "speech_max_chars", "text_embedder", "titan_model_id", "titan_dimensions",
    }
    # AND a value the library refuses, the stack refuses too, naming the context key or the variable
    with pytest.raises(ConfigError, match="context 'caption_batch_size' must be between 1 and 50"):
        PipelineConfig.from_context(Context(caption_batch_size=51))
    with pytest.raises(ValueError, match="PAGEMILL_CAPTION_BATCH_SIZE must be between 1 and 50"):
        Settings.from_env({env_name("caption_batch_size"): "51"})
    with pytest.raises(ValueError, match="PAGEMILL_CAPTION_TOKEN_BUDGET must be at least 1000"):
        Settings.from_env({env_name("caption_token_budget"): "10"})
    with pytest.raises(ValueError, match="PAGEMILL_BATCH_PAGES must be an integer"):
        Settings.from_env({env_name("batch_pages"): "ten"})


def test_the_stack_refuses_an_embedder_its_bundle_cannot_carry() -> None:
    from stacks.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match="context 'text_embedder' e5 does not fit the embed Lambda bundle"):
        PipelineConfig.from_context(Context(text_embedder="e5"))
    with pytest.raises(ConfigError, match="context 'titan_dimensions' must be one of"):
        PipelineConfig.from_context(Context(titan_dimensions=300))


def test_settings_carry_to_a_function_environment_and_back() -> None:
    from pagemill.settings import DeployedSettings, Settings, environment
    from stacks.config import PipelineConfig

    config = PipelineConfig.from_context(Context(batch_pages="7", markdown_mode="layout", caption_provider="off"))
    names = [f.name for f in dataclasses.fields(DeployedSettings)]
    settings = Settings.from_env(environment(config, names))
    assert {n: getattr(settings, n) for n in names} == {n: getattr(config, n) for n in names}


def test_the_default_caption_model_is_not_one_the_sdk_calls_deprecated() -> None:
    # claude-sonnet-4-5, the default until 2026-12-03, reached its end of life on 2026-11-30: a
    # deployment on the defaults would have had every caption refused.
    from anthropic.resources.messages.messages import DEPRECATED_MODELS
    from pagemill.settings import Settings

    deployed = cdk_context()["caption_model"]
    assert Settings().caption_model == deployed
    assert deployed not in DEPRECATED_MODELS
