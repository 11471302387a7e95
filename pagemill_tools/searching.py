"""What `pagemill search` and `pagemill reembed` need around the library: the embedders the
settings name, built here at the edge, and the honesty note about the test CLIP model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagemill_tools.clip_testmodel import NAME as TEST_CLIP_MODEL

if TYPE_CHECKING:
    from pagemill.clip.model import ClipModel
    from pagemill.settings import Settings
    from pagemill.text_embed.embedder import TextEmbedder

TEST_MODEL_NOTE = (
    "image vectors come from pagemill's generated test CLIP model (random weights): image ranks by "
    "vector mean nothing. Export the real ViT-B/32 once and set PAGEMILL_CLIP_DIR (README, 'Real CLIP "
    "weights'), then re-run the documents."
)


def text_embedder(settings: Settings) -> TextEmbedder | None:
    """The configured chunk embedder; Titan through the ambient AWS credentials."""
    from pagemill.text_embed.select import standalone_embedder

    bedrock = None
    if settings.text_embedder == "titan":
        import boto3  # only then: its import (0.2-0.3 s here) is no use to the offline embedders

        bedrock = boto3.client("bedrock-runtime")
    return standalone_embedder(settings, bedrock=bedrock)


def clip_model(settings: Settings, home: Path) -> ClipModel:
    """The model the local engine embeds images with: a real export if PAGEMILL_CLIP_DIR names one."""
    from pagemill.clip.model import ClipModel
    from pagemill_tools.clip_testmodel import ensure_test_model

    return ClipModel.load(Path(settings.clip_dir) if settings.clip_dir else ensure_test_model(home / "clip-test-model"))


def is_test_model(model: Any) -> bool:
    return str(getattr(model, "name", "")).startswith(TEST_CLIP_MODEL)
