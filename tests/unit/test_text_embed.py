"""Text embedders: the offline static model, and Bedrock Titan V2 through botocore's Stubber (and
moto's bedrock-runtime) with the caption calls' retries, breaker and budget."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from pagemill.captions.breaker import OPEN, CircuitBreaker, InMemoryBreakerStore
from pagemill.captions.budget import InMemoryTokenBudget
from pagemill.captions.client import BUDGET_EXHAUSTED, CIRCUIT_OPEN, RetryPolicy
from pagemill.settings import Settings
from pagemill.text_embed.embedder import EmbeddingUnavailable
from pagemill.text_embed.select import build_embedder, local_embedder
from pagemill.text_embed.titan import TitanEmbedder

DIM = 256


def bedrock() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def answer(vector: list[float], tokens: int = 7) -> dict[str, Any]:
    body = json.dumps({"embedding": vector, "inputTextTokenCount": tokens}).encode()
    return {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "application/json"}


def breaker(threshold: int = 5) -> CircuitBreaker:
    return CircuitBreaker(InMemoryBreakerStore(), failure_threshold=threshold, window_seconds=60, cooldown_seconds=60)


def titan(client: Any, **kwargs: Any) -> tuple[TitanEmbedder, list[float]]:
    slept: list[float] = []
    embedder = TitanEmbedder(client, breaker=kwargs.pop("breaker", breaker()), dimensions=DIM, concurrency=1,
                             policy=RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=4.0),
                             sleep=slept.append, random=lambda: 1.0, **kwargs)
    return embedder, slept


def request(text: str) -> dict[str, Any]:
    return {"modelId": "amazon.titan-embed-text-v2:0", "contentType": "application/json",
            "accept": "application/json",
            "body": json.dumps({"inputText": text, "dimensions": DIM, "normalize": True})}


def test_titan_embeds_each_text_with_its_dimensions_and_names_the_model() -> None:
    client = bedrock()
    embedder, _ = titan(client, budget=(budget := InMemoryTokenBudget(1000)))
    with Stubber(client) as stub:
        for i, text in enumerate(["first chunk", "second chunk"]):
            stub.add_response("invoke_model", answer([float(i + 1)] * DIM), request(text))
        vectors = embedder.passages(["first chunk", "second chunk"])
        stub.assert_no_pending_responses()
    assert vectors.shape == (2, DIM) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert embedder.model == "bedrock:amazon.titan-embed-text-v2:0:256:norm"
    assert embedder.input_tokens == 14 and budget.usage().input_tokens == 14 and budget.usage().reserved == 0


def test_titan_backs_off_on_throttling_then_succeeds() -> None:
    client = bedrock()
    embedder, slept = titan(client)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", "ThrottlingException", "Too many requests", 429)
        stub.add_client_error("invoke_model", "ServiceUnavailableException", "busy", 503)
        stub.add_response("invoke_model", answer([0.5] * DIM), request("a chunk"))
        vector = embedder.query("a chunk")
    assert vector.shape == (DIM,)
    assert slept == [1.0, 2.0]  # full jitter at its top: 1 s, then 2 s


def test_an_outage_raises_embedding_unavailable_and_opens_the_breaker() -> None:
    client = bedrock()
    shared = breaker(threshold=3)
    embedder, _ = titan(client, breaker=shared)
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("invoke_model", "InternalServerException", "down", 500)
        with pytest.raises(EmbeddingUnavailable, match="gave up after 3 attempts"):
            embedder.passages(["a chunk"])
        assert shared.state().state == OPEN
        # Open: no request is sent at all (the stubber has none queued and would fail).
        with pytest.raises(EmbeddingUnavailable) as raised:
            embedder.passages(["another chunk"])
    assert raised.value.reason == CIRCUIT_OPEN


def test_a_refused_request_is_not_retried() -> None:
    client = bedrock()
    embedder, slept = titan(client)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", "AccessDeniedException", "not allowed", 403, expected_params=request("a chunk"))
        with pytest.raises(EmbeddingUnavailable, match="AccessDeniedException"):
            embedder.passages(["a chunk"])
    assert slept == []


def test_the_budget_bounds_what_embedding_spends() -> None:
    embedder, _ = titan(bedrock(), budget=InMemoryTokenBudget(1))
    with pytest.raises(EmbeddingUnavailable) as raised:
        embedder.passages(["a chunk of some length"])
    assert raised.value.reason == BUDGET_EXHAUSTED


@mock_aws
def test_an_answer_without_an_embedding_is_unavailable_not_zeros() -> None:
    # moto's bedrock-runtime answers every InvokeModel with an empty JSON object.
    embedder, _ = titan(bedrock())
    with pytest.raises(EmbeddingUnavailable, match="malformed answer"):
        embedder.passages(["a chunk"])


def test_settings_choose_the_embedder() -> None:
    settings = Settings.from_env({"PAGEMILL_TEXT_EMBEDDER": "titan", "PAGEMILL_TITAN_DIMENSIONS": "512",
                                  "PAGEMILL_TITAN_NORMALIZE": "false"})
    embedder = build_embedder(settings, bedrock=bedrock(), breaker=breaker())
    assert embedder is not None and (embedder.model, embedder.dim) == ("bedrock:amazon.titan-embed-text-v2:0:512", 512)
    assert build_embedder(Settings(text_embedder="off")) is None
    assert build_embedder(Settings()) is local_embedder("wordllama")
    with pytest.raises(ValueError, match="PAGEMILL_TEXT_EMBEDDER"):
        Settings.from_env({"PAGEMILL_TEXT_EMBEDDER": "word2vec"})


def test_static_embedder_reads_its_wheel_and_ranks_paraphrases() -> None:
    embedder = local_embedder("wordllama")
    vectors = embedder.passages(["The physician prescribed antibiotics for the infection.",
                                 "The striker scored twice in the final.", ""])
    assert vectors.shape == (3, embedder.dim) and embedder.dim == 256
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1) and not vectors[2].any()
    scores = vectors[:2] @ embedder.query("a doctor treating an illness")
    assert scores[0] > scores[1]
