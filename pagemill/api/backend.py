"""What the application works on: the bucket, the state machine, the database and the CLIP
text encoder. Built once at the edge and handed to ``create_app``; nothing here builds a client."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pagemill.operate.executions import Stack

if TYPE_CHECKING:
    from pagemill.text_embed.embedder import TextEmbedder


@dataclass(frozen=True)
class Backend:
    s3: Any
    sfn: Any
    bucket: str
    state_machine_arn: str
    # A connection for one request (autocommit): its own locally, the function's on Lambda.
    connection: Callable[[], AbstractContextManager[Any]]
    # Text → one L2-normalized CLIP vector (the model loads on the first search).
    embed_text: Callable[[str], np.ndarray]
    # The chunk vectors' model, to embed queries with (None: chunks are found by keyword only).
    text_embedder: TextEmbedder | None
    # The largest file POST /documents accepts; larger ones go through POST /uploads.
    max_upload_bytes: int
    # The largest PDF the pipeline accepts (Settings.max_bytes): the presigned upload's limit.
    max_source_bytes: int
    # Presigned uploads (POST /uploads) start the pipeline through the stack's S3 event trigger,
    # which only AWS has: off locally.
    presigned_uploads: bool = False
    # RedriveExecution resumes a failed execution where it stopped; the local interpreter has
    # none, so there a redrive is always a new execution of the same upload.
    redrive_executions: bool = True
    # Where the pipeline runs, for messages: "local" or "aws".
    where: str = "local"

    @property
    def stack(self) -> Stack:
        return Stack(name=self.where, bucket=self.bucket, state_machine_arn=self.state_machine_arn)

