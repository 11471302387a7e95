"""Amazon Titan Text Embeddings V2 on Bedrock, guarded like the caption calls.

InvokeModel takes one text per request, so a batch of chunks is sent as that many requests, at
most ``concurrency`` at once. Each request passes the shared circuit breaker and reserves its
tokens from the document's budget first; throttling, timeouts and 5xx back off with full jitter
(pagemill.captions.client.RetryPolicy); other errors stop at once. When any text of a batch gets
no vector the whole batch raises EmbeddingUnavailable: a document gets all its chunk vectors or
none, never a mix the search would rank unevenly.
"""

from __future__ import annotations

import json
import logging
import random as _random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from pagemill.captions.client import (
    BUDGET_EXHAUSTED,
    CIRCUIT_OPEN,
    RetryPolicy,
    estimate_text_tokens,
)
from pagemill.text_embed.embedder import EmbeddingUnavailable, unit_rows

if TYPE_CHECKING:
    from pagemill.captions.breaker import CircuitBreaker
    from pagemill.captions.budget import TokenBudget

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "amazon.titan-embed-text-v2:0"
DIMENSIONS = (256, 512, 1024)
# Titan V2 reads at most 8,192 tokens (50,000 characters); chunks are far shorter.
MAX_CHARS = 50_000
_RETRYABLE = {
    "ThrottlingException", "ServiceUnavailableException", "ModelTimeoutException",
    "InternalServerException", "ModelNotReadyException",
}


class TitanEmbedder:
    def __init__(
        self,
        client: Any,
        *,
        breaker: CircuitBreaker,
        budget: TokenBudget | None = None,
        model_id: str = DEFAULT_MODEL_ID,
        dimensions: int = 1024,
        normalize: bool = True,
        concurrency: int = 4,
        policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if dimensions not in DIMENSIONS:
            raise ValueError(f"Titan V2 makes vectors of {', '.join(map(str, DIMENSIONS))} dimensions, not {dimensions}")
        self._client = client
        self._breaker = breaker
        self._budget = budget
        self._model_id = model_id
        self._normalize = normalize
        self._concurrency = max(1, concurrency)
        self._policy = policy
        self._sleep = sleep
        self._random = random
        self.dim = dimensions
        # Dimensions and normalisation change the vectors, so they are part of the name.
        self.model = f"bedrock:{model_id}:{dimensions}{':norm' if normalize else ''}"
        self.input_tokens = 0

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(texts))) as pool:
            rows = list(pool.map(self._embed_one, texts))
        # Unnormalised Titan vectors are stored as they come; the index compares by angle anyway.
        return unit_rows(np.stack(rows)) if self._normalize else np.stack(rows).astype(np.float32)

    def query(self, text: str) -> np.ndarray:
        return self.passages([text])[0]

    def _embed_one(self, text: str) -> np.ndarray:
        body = json.dumps({"inputText": text[:MAX_CHARS] or " ", "dimensions": self.dim, "normalize": self._normalize})
        reserve = estimate_text_tokens(text[:MAX_CHARS]) + 1
        last = ""
        for attempt in range(1, self._policy.max_attempts + 1):
            if not self._breaker.allow():
                raise EmbeddingUnavailable(CIRCUIT_OPEN)
            if self._budget is not None and not self._budget.reserve(reserve):
                raise EmbeddingUnavailable(BUDGET_EXHAUSTED)
            used = 0
            try:
                response = self._client.invoke_model(
                    modelId=self._model_id, body=body, contentType="application/json", accept="application/json"
                )
                answer = json.loads(response["body"].read())
                used = int(answer.get("inputTextTokenCount") or 0)
                vector = answer.get("embedding")
                if not isinstance(vector, list) or len(vector) != self.dim:
                    self._breaker.record_failure()
                    raise EmbeddingUnavailable(f"malformed answer: no {self.dim}-d embedding in the response")
            except ClientError as exc:
                self._breaker.record_failure()
                code = exc.response.get("Error", {}).get("Code", "")
                last = f"{code}: {exc.response.get('Error', {}).get('Message', '')}"[:200]
                if code not in _RETRYABLE:
                    raise EmbeddingUnavailable(f"Bedrock refused the request ({last})") from exc
            except BotoCoreError as exc:
                self._breaker.record_failure()
                last = f"{type(exc).__name__}: {exc}"[:200]
            else:
                self._breaker.record_success()
                self.input_tokens += used
                return np.asarray(vector, dtype=np.float32)
            finally:
                if self._budget is not None:
                    self._budget.settle(reserve, input_tokens=used, output_tokens=0)
            if attempt < self._policy.max_attempts:
                delay = self._policy.backoff(attempt, self._random)
                log.info("Bedrock embedding call failed, retrying", extra={"attempt": attempt, "reason": last,
                                                                          "delay": round(delay, 3)})
                self._sleep(delay)
        raise EmbeddingUnavailable(f"gave up after {self._policy.max_attempts} attempts: {last}")
