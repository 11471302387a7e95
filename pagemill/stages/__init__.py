"""The pipeline's stages as plain functions: what each Lambda does, with its S3 client and
database connection passed in. The handlers, the local engine's workers, the tests and the
benchmarks all call these. Split by bundle: ``extraction`` needs PyMuPDF, ``writing`` does not
(the Write function's bundle carries no PDF library)."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagemill.settings import Settings


def document_id_for(sha256: str) -> str:
    """Document identity is the content: the same bytes under any key are one document."""
    return sha256[:32]


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read in blocks (the local engine and `pagemill status` identify
    a PDF on disk by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StageContext:
    """What every stage needs from the edge: clients, settings, where to put work."""

    s3: Any
    settings: Settings
    work_bucket: str
    scratch: Path = Path(tempfile.gettempdir()) / "pagemill"
