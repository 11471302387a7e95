"""The Anthropic API key on AWS: read from its Secrets Manager secret through Powertools'
parameters, reused for a while, and picked up again once the secret rotates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pagemill.aws import clients
from pagemill.captions.client import CaptionsUnavailable
from tests.support.moto_aws import fake_credentials

REGION = "us-east-1"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_credentials(monkeypatch, REGION)
    monkeypatch.setenv("PAGEMILL_WORK_BUCKET", "pm-work")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        arn = client.create_secret(Name="pagemill/anthropic", SecretString="sk-first\n")["ARN"]
        monkeypatch.setenv("ANTHROPIC_SECRET_ARN", arn)
        clients._secrets.cache_clear()  # a provider (and its cache) per test, as per container
        yield client
        clients._secrets.cache_clear()


def test_the_key_is_read_from_the_secret_and_reused_within_its_max_age(secrets: Any) -> None:
    # GIVEN the key in its secret WHEN two invocations build the model client
    first = clients.caption_client()
    secrets.put_secret_value(SecretId="pagemill/anthropic", SecretString="sk-second")
    # THEN both use the key read first (within max_age nothing is read again)
    assert first.api_key == "sk-first" and clients.caption_client() is first


def test_a_rotated_key_is_picked_up_once_the_cached_read_expires(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN reads that expire at once (max_age 0 stands for "max_age has passed")
    monkeypatch.setattr(clients, "API_KEY_MAX_AGE_SECONDS", 0)
    assert clients.caption_client().api_key == "sk-first"
    # WHEN the secret rotates THEN the next invocation's client carries the new key
    secrets.put_secret_value(SecretId="pagemill/anthropic", SecretString="sk-rotated")
    assert clients.caption_client().api_key == "sk-rotated"


def test_an_empty_secret_means_captions_are_unavailable(secrets: Any) -> None:
    # GIVEN a secret created but not yet filled (the stack creates it empty-ish)
    secrets.put_secret_value(SecretId="pagemill/anthropic", SecretString="  ")
    clients._secrets.cache_clear()
    # WHEN a model stage asks for the model THEN it is told why captions are skipped
    with pytest.raises(CaptionsUnavailable, match="no API key"):
        clients.model_access("doc")
