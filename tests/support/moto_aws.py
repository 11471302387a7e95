"""moto for the integration tests: fake credentials in the environment (no test reaches real
AWS, whatever the developer's shell holds) and the captions table as the stack defines it."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

REGION = "us-east-1"


def fake_credentials(monkeypatch: pytest.MonkeyPatch, region: str = REGION) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": region}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def create_captions_table(name: str, region: str = REGION) -> Any:
    """The breaker and token budget table (one item per key ``pk``); returns the DynamoDB client."""
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return dynamodb
