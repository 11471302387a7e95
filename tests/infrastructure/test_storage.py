"""Storage in an otherwise empty stack: the bucket (the upload rule's wiring to the trigger is
test_stack's)."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.conftest import part_fixture, storage_part
from tests.infrastructure.queries import of_type

template = part_fixture(storage_part)


def test_bucket_is_private_encrypted_versioned_and_tls_only(resources: dict[str, Any]) -> None:
    (bucket,) = of_type(resources, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "SSEAlgorithm"
    ] in ("AES256", "aws:kms")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True
    }
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert bucket["DeletionPolicy"] == "Retain"
    (policy,) = of_type(resources, "AWS::S3::BucketPolicy").values()
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )
