"""S3 I/O for the stages, with S3's failures translated into pagemill's typed errors.
The client is always passed in (built at the edge, so tests and the local engine choose it)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pagemill.errors import SourceMissing, StorageUnavailable
from pagemill.records import SourceObject

_CHUNK = 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NoSuchBucket"}


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING:
            raise SourceMissing(f"{what} does not exist (it may have been deleted)") from exc
        raise StorageUnavailable(f"S3 refused {what}: {code}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"could not reach S3 for {what}: {exc}") from exc


def _version_args(source: SourceObject) -> dict[str, str]:
    return {"VersionId": source.version_id} if source.version_id else {}


def download(s3: Any, source: SourceObject, path: Path) -> tuple[str, int]:
    """Stream the object to ``path``; return (sha256 hex, size). Never holds it in memory."""
    digest = hashlib.sha256()
    size = 0
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.part")
    with _s3_errors(f"s3://{source.bucket}/{source.key}"):
        body = s3.get_object(Bucket=source.bucket, Key=source.key, **_version_args(source))["Body"]
        with open(tmp, "wb") as out:
            for block in iter(lambda: body.read(_CHUNK), b""):
                digest.update(block)
                size += len(block)
                out.write(block)
    os.replace(tmp, path)
    return digest.hexdigest(), size


def hash_object(s3: Any, source: SourceObject) -> tuple[str, int]:
    """sha256 and size of an object without keeping it (RecordFailure's fallback identity)."""
    digest = hashlib.sha256()
    size = 0
    with _s3_errors(f"s3://{source.bucket}/{source.key}"):
        body = s3.get_object(Bucket=source.bucket, Key=source.key, **_version_args(source))["Body"]
        for block in iter(lambda: body.read(_CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    with _s3_errors(f"s3://{bucket}/{key}"):
        s3.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(value, separators=(",", ":")).encode(),
            ContentType="application/json",
        )


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(get_bytes(s3, bucket, key))


# Small objects read together (timings, warning reports): S3's latency, not its bandwidth, is
# their cost, so a few requests at a time (boto3 clients are thread-safe).
_CONCURRENT_READS = 8


def get_json_all(s3: Any, bucket: str, keys: Sequence[str]) -> list[Any]:
    """The objects at ``keys``, in that order, read a few at a time; the first failure raises."""
    if len(keys) <= 1:
        return [get_json(s3, bucket, key) for key in keys]
    with ThreadPoolExecutor(max_workers=min(_CONCURRENT_READS, len(keys))) as pool:
        return list(pool.map(lambda key: get_json(s3, bucket, key), keys))


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    with _s3_errors(f"s3://{bucket}/{key}"):
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def put_bytes(s3: Any, bucket: str, key: str, data: bytes, content_type: str) -> None:
    with _s3_errors(f"s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def put_file(s3: Any, bucket: str, key: str, file: Any, content_type: str) -> str | None:
    """Stream an open, seekable file to ``key`` (botocore reads it in chunks); the new version's id."""
    with _s3_errors(f"s3://{bucket}/{key}"):
        return s3.put_object(Bucket=bucket, Key=key, Body=file, ContentType=content_type).get("VersionId")


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [obj["Key"] for obj in list_objects(s3, bucket, prefix)]


def list_objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The listing's entries (Key, LastModified, Size, ...) under ``prefix``."""
    objects: list[dict[str, Any]] = []
    with _s3_errors(f"s3://{bucket}/{prefix}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            objects.extend(page.get("Contents", []))
    return objects


class SourceCache:
    """Keeps the last few downloaded sources in a directory, so a warm worker that gets the
    next batch of the same document does not download it again. Only immutable object
    versions are cached (an unversioned key can be overwritten)."""

    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory = directory
        self.keep = keep

    def fetch(self, s3: Any, source: SourceObject) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        identity = f"{source.bucket}/{source.key}/{source.version_id}"
        path = self.directory / (hashlib.sha256(identity.encode()).hexdigest()[:24] + ".pdf")
        if source.version_id and path.is_file():
            os.utime(path)
            return path
        download(s3, source, path)
        self._evict(keep_path=path)
        return path

    def _evict(self, keep_path: Path) -> None:
        cached = sorted(self.directory.glob("*.pdf"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [p for p in cached if p != keep_path][self.keep - 1 :]:
            old.unlink(missing_ok=True)
