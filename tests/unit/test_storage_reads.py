"""Reading many small objects at once (timings, warning reports) keeps their order and their errors."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from pagemill import storage
from pagemill.errors import SourceMissing


@mock_aws
def test_objects_read_together_come_back_in_the_order_asked() -> None:
    # GIVEN twenty small objects
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="work")
    keys = [f"timings/{n:02d}.json" for n in range(20)]
    for n, key in enumerate(keys):
        storage.put_json(s3, "work", key, {"n": n})
    # WHEN they are read together, in reverse order
    # THEN each value is where its key was
    assert storage.get_json_all(s3, "work", keys[::-1]) == [{"n": n} for n in range(19, -1, -1)]
    assert storage.get_json_all(s3, "work", []) == []


@mock_aws
def test_a_missing_object_among_them_is_a_typed_error() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="work")
    storage.put_json(s3, "work", "a.json", {"a": 1})
    with pytest.raises(SourceMissing, match="gone.json"):
        storage.get_json_all(s3, "work", ["a.json", "gone.json", "a.json"])
