"""Captions and document understanding: the real anthropic SDK against a local server that
speaks the Messages API (tests/support/fake_anthropic.py), images in moto's S3, the breaker and
the budget in moto's DynamoDB, results in a real PostgreSQL.

No test waits for real backoff: ``sleep`` is injected and records the delays asked for."""

from __future__ import annotations

import base64
import io
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import boto3
import numpy as np
import psycopg
import pytest
from moto import mock_aws
from PIL import Image

from pagemill.captions.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    DynamoDbBreakerStore,
    InMemoryBreakerStore,
)
from pagemill.captions.budget import DynamoDbTokenBudget, InMemoryTokenBudget
from pagemill.captions.caption import (
    CAPTIONED,
    SKIPPED,
    UNREADABLE_IMAGE,
    CaptionResult,
    caption_batch,
    caption_images,
    load_results,
    summarize,
)
from pagemill.captions.client import (
    BUDGET_EXHAUSTED,
    CIRCUIT_OPEN,
    MALFORMED_ANSWER,
    CaptionsUnavailable,
    build_client,
)
from pagemill.captions.understand import (
    UNDERSTOOD,
    Product,
    Understanding,
    understand_document,
)
from pagemill.db.connect import connect
from pagemill.db.documents import get_document, register_document
from pagemill.db.understanding import (
    store_caption_results,
    store_token_usage,
    store_understanding,
)
from pagemill.db.write import write_document
from pagemill.records import (
    BatchResult,
    ImageOccurrence,
    ImageRef,
    PageRecord,
    SourceObject,
)
from pagemill.settings import Settings
from tests.support.fake_anthropic import (
    FakeAnthropic,
    error,
    malformed_json,
    overloaded,
    rate_limited,
    server_error,
    slow,
    text_answer,
    tool_answer,
)
from tests.support.moto_aws import create_captions_table, fake_credentials

REGION = "us-east-1"
BUCKET = "pagemill-test"
TABLE = "pagemill-captions"
DOC = "0123456789abcdef0123456789abcdef"
API_KEY = "sk-ant-test"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake_credentials(monkeypatch, REGION)
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return create_captions_table(TABLE, REGION)


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    # The same as tests.support.fake_anthropic's fixture (until conftest registers that module as a plugin).
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        InMemoryBreakerStore(), failure_threshold=5, window_seconds=60, cooldown_seconds=60, clock=clock
    )


@pytest.fixture
def client(fake_anthropic: FakeAnthropic) -> anthropic.Anthropic:
    settings = Settings(caption_timeout_seconds=5.0)
    made = build_client(settings, api_key=API_KEY, base_url=fake_anthropic.base_url)
    assert isinstance(made, anthropic.Anthropic)
    return made


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (96, 64), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def upload(s3: Any, images: list[tuple[str, bytes]]) -> list[ImageRef]:
    listing = []
    for sha, data in images:
        key = f"documents/{DOC}/images/{sha}.img"
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        listing.append(ImageRef(sha, key))
    return listing


def photos(s3: Any, n: int) -> list[ImageRef]:
    return upload(s3, [(f"sha{i:03d}", image_bytes(i)) for i in range(n)])


class Sleeps(list[float]):
    """An injected ``sleep``: records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def run(s3: Any, images: list[ImageRef], client: Any, breaker: CircuitBreaker, budget: Any = None,
        sleeps: Sleeps | None = None, **kwargs: Any) -> list[Any]:
    options: dict[str, Any] = dict(max_attempts=4, base_delay=1.0, max_delay=20.0)
    options.update(kwargs)
    return caption_images(
        s3, bucket=BUCKET, images=images, client=client, model="claude-sonnet-5-5", breaker=breaker,
        budget=budget if budget is not None else InMemoryTokenBudget(1_000_000),
        sleep=sleeps if sleeps is not None else Sleeps(), **options,
    )


def sent_image(request: Any) -> Image.Image:
    source = request.images[0]
    return Image.open(io.BytesIO(base64.b64decode(source["data"])))


# --- answers -------------------------------------------------------------------------------------


def test_captions_come_from_the_forced_tool_use_block(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN two images and a server that answers with record_caption tool calls
    images = photos(s3, 2)
    fake_anthropic.enqueue(
        tool_answer({"caption": "A red leather sofa  with chrome legs.", "tags": ["Sofa", "leather", "sofa", "red"]},
                    input_tokens=1500, output_tokens=40),
        tool_answer({"caption": "A floor lamp.", "tags": []}, input_tokens=1100, output_tokens=30),
    )
    budget = InMemoryTokenBudget(100_000)

    # WHEN they are captioned
    results = run(s3, images, client, breaker, budget)

    # THEN each caption and its tags are read from the tool input (tags cleaned, deduplicated)
    assert [(r.status, r.caption, r.tags) for r in results] == [
        (CAPTIONED, "A red leather sofa with chrome legs.", ["sofa", "leather", "red"]),
        (CAPTIONED, "A floor lamp.", []),
    ]
    # AND token counts are per image and add up in the document's budget
    assert [(r.input_tokens, r.output_tokens) for r in results] == [(1500, 40), (1100, 30)]
    usage = budget.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.reserved, usage.calls) == (2600, 70, 0, 2)
    # AND each request forced the tool, carried the key, the model and the image, without SDK retries
    assert fake_anthropic.count == 2
    request = fake_anthropic.requests[0]
    assert request.api_key == API_KEY
    assert request.body is not None
    assert request.body["tool_choice"] == {"type": "tool", "name": "record_caption"}
    assert [t["name"] for t in request.body["tools"]] == ["record_caption"]
    assert request.body["tools"][0]["input_schema"]["properties"]["tags"]["maxItems"] == 5
    assert request.model == "claude-sonnet-5-5"
    assert request.images[0]["media_type"] == "image/png"
    assert sent_image(request).size == (96, 64)
    assert breaker.state().state == CLOSED


def test_text_only_answer_is_skipped_as_malformed_but_billed(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a model that answers with text instead of the tool, then with a tool input off the schema
    images = photos(s3, 2)
    fake_anthropic.enqueue(text_answer("It is a sofa.", input_tokens=900, output_tokens=12),
                           tool_answer({"tags": ["no caption"]}))

    # WHEN captioned
    results = run(s3, images, client, breaker)

    # THEN both are skipped as malformed (not retried: the API worked), with the tokens they cost
    assert [(r.status, r.reason) for r in results] == [(SKIPPED, MALFORMED_ANSWER), (SKIPPED, MALFORMED_ANSWER)]
    assert (results[0].input_tokens, results[0].output_tokens) == (900, 12)
    assert fake_anthropic.count == 2
    assert breaker.state().failures == 0


def test_malformed_json_body_is_skipped_with_a_reason(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a server whose answer is cut off mid-JSON
    images = photos(s3, 1)
    fake_anthropic.enqueue(malformed_json())

    # WHEN captioned
    [result] = run(s3, images, client, breaker)

    # THEN the image is skipped with the reason, after one request, and the breaker counted it
    assert result.status == SKIPPED
    assert result.reason is not None and result.reason.startswith(MALFORMED_ANSWER)
    assert fake_anthropic.count == 1
    assert breaker.state().failures == 1


# --- retries -------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says_capped_at_max_delay(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN two 429s (retry-after 3 s, then 100 s) before an answer
    images = photos(s3, 1)
    fake_anthropic.enqueue(rate_limited(retry_after=3), rate_limited(retry_after=100))
    sleeps = Sleeps()

    # WHEN captioned with max_delay 20 s
    [result] = run(s3, images, client, breaker, sleeps=sleeps, max_delay=20.0)

    # THEN it waited 3 s, then the cap, and the third request succeeded
    assert result.status == CAPTIONED
    assert sleeps == [3.0, 20.0]
    assert fake_anthropic.count == 3
    # AND the success closed the breaker again (failures forgotten)
    assert breaker.state().failures == 0


def test_retries_stop_at_max_attempts(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a server that rate-limits every request
    images = photos(s3, 1)
    fake_anthropic.always(rate_limited(retry_after=2))
    sleeps = Sleeps()

    # WHEN captioned with at most 3 attempts
    [result] = run(s3, images, client, breaker, sleeps=sleeps, max_attempts=3)

    # THEN exactly 3 requests were sent, with a wait between each, and the image is skipped
    assert fake_anthropic.count == 3
    assert sleeps == [2.0, 2.0]
    assert (result.status, result.reason) == (SKIPPED, "gave up after 3 attempts: rate limited (429)")


@pytest.mark.parametrize(("failure", "reason"), [
    (overloaded(), "API overloaded (529)"),
    (server_error(500), "server error (500)"),
    (server_error(503), "server error (503)"),
])
def test_overload_and_server_errors_back_off_with_jitter_then_skip(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic,
    failure: Any, reason: str,
) -> None:
    # GIVEN a server failing every request
    images = photos(s3, 1)
    fake_anthropic.always(failure)
    sleeps = Sleeps()

    # WHEN captioned (4 attempts, base 1 s, cap 3 s)
    [result] = run(s3, images, client, breaker, sleeps=sleeps, max_attempts=4, base_delay=1.0, max_delay=3.0)

    # THEN 4 requests, waits under the exponential caps 1, 2, 3 (full jitter), then skipped
    assert fake_anthropic.count == 4
    assert len(sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, [1.0, 2.0, 3.0], strict=True))
    assert (result.status, result.reason) == (SKIPPED, f"gave up after 4 attempts: {reason}")


def test_a_transient_error_then_success_captions(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    images = photos(s3, 1)
    fake_anthropic.enqueue(overloaded(), server_error(502))
    [result] = run(s3, images, client, breaker)
    assert result.status == CAPTIONED
    assert fake_anthropic.count == 3


def test_an_answer_slower_than_the_timeout_is_skipped(
    s3: Any, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a client with a 0.3 s timeout and a server that answers after 5 s
    images = photos(s3, 1)
    fake_anthropic.always(slow(5.0))
    client = build_client(Settings(caption_timeout_seconds=0.3), api_key=API_KEY, base_url=fake_anthropic.base_url)

    # WHEN captioned with 2 attempts
    [result] = run(s3, images, client, breaker, max_attempts=2)

    # THEN both attempts timed out and the image is skipped with that reason
    assert (result.status, result.reason) == (SKIPPED, "gave up after 2 attempts: timed out after 0.3s")
    assert fake_anthropic.count == 2
    assert breaker.state().failures == 2


def test_no_retry_when_the_caller_has_no_time_left(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN an invocation with 2 s left and an overloaded API
    images = photos(s3, 1)
    fake_anthropic.always(overloaded())

    # WHEN captioned
    [result] = run(s3, images, client, breaker, time_left=lambda: 2.0)

    # THEN it stops after the first attempt instead of running past its deadline
    assert fake_anthropic.count == 1
    assert result.reason is not None and result.reason.startswith("no time left")


@pytest.mark.parametrize(("status", "kind", "reason"), [
    (400, "invalid_request_error", "request rejected (400): Could not process image"),
    (403, "permission_error", "permission denied (403)"),
    (404, "not_found_error", "model or endpoint not found (404)"),
])
def test_client_errors_are_not_retried(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic,
    status: int, kind: str, reason: str,
) -> None:
    images = photos(s3, 1)
    fake_anthropic.enqueue(error(status, kind, "Could not process image"))
    [result] = run(s3, images, client, breaker)
    assert (result.status, result.reason) == (SKIPPED, reason)
    assert fake_anthropic.count == 1
    assert breaker.state().failures == 1


# --- the breaker: a failing API costs a handful of requests --------------------------------------


def test_api_down_a_40_image_document_costs_a_handful_of_requests(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN an API that answers 503 to everything and a 40-image document
    images = photos(s3, 40)
    fake_anthropic.always(server_error(503))
    sleeps = Sleeps()

    # WHEN the document is captioned
    results = run(s3, images, client, breaker, sleeps=sleeps)

    # THEN it finishes with every image skipped, the breaker open after 5 failures, and only
    # 5 requests sent: the first image's 4 attempts and one more; the rest never asked
    assert len(results) == 40 and all(r.status == SKIPPED for r in results)
    assert fake_anthropic.count == 5
    assert breaker.state().state == OPEN
    assert summarize(results)["reasons"] == {
        CIRCUIT_OPEN: 39, "gave up after 4 attempts: server error (503)": 1,
    }
    # AND the backoff it would have waited is bounded: a few seconds, not minutes
    assert len(sleeps) == 4 and sum(sleeps) <= 1 + 2 + 4 + 8


def test_api_unreachable_a_40_image_document_finishes_quickly(
    s3: Any, breaker: CircuitBreaker
) -> None:
    # GIVEN a base URL where nothing listens (a port just closed)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = build_client(Settings(caption_timeout_seconds=2.0), api_key=API_KEY, base_url=f"http://127.0.0.1:{port}")
    images = photos(s3, 40)

    # WHEN captioned
    results = run(s3, images, client, breaker)

    # THEN connection failures open the breaker and the rest is skipped without trying
    assert summarize(results)["reasons"] == {
        CIRCUIT_OPEN: 39, "gave up after 4 attempts: connection failed: Connection error.": 1,
    }


def test_a_rejected_api_key_costs_threshold_requests_not_one_per_image(
    s3: Any, breaker: CircuitBreaker
) -> None:
    # GIVEN a server that knows another key
    with FakeAnthropic(api_key="the-right-key") as fake:
        client = build_client(Settings(), api_key="a-wrong-key", base_url=fake.base_url)
        images = photos(s3, 40)

        # WHEN a 40-image document is captioned
        results = run(s3, images, client, breaker)

        # THEN the first 5 images are skipped as "key rejected" (not retried), then the breaker is open
        assert fake.count == 5
    assert summarize(results)["reasons"] == {"API key rejected (401)": 5, CIRCUIT_OPEN: 35}


def test_half_open_after_the_cooldown_one_trial_then_closed(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic, clock: Clock
) -> None:
    # GIVEN a breaker opened by an outage
    images = photos(s3, 6)
    fake_anthropic.always(overloaded())
    run(s3, images[:2], client, breaker)
    assert breaker.state().state == OPEN
    sent_during_outage = fake_anthropic.count

    # WHEN the API recovers, but the cool-down has not passed THEN nothing is sent
    fake_anthropic.always(tool_answer({"caption": "A chair.", "tags": ["chair"]}))
    clock.advance(59)
    assert {r.reason for r in run(s3, images[2:4], client, breaker)} == {CIRCUIT_OPEN}
    assert fake_anthropic.count == sent_during_outage

    # WHEN the cool-down has passed THEN one trial goes out, succeeds, and closes the breaker
    clock.advance(2)
    results = run(s3, images[2:], client, breaker)
    assert [r.status for r in results] == [CAPTIONED] * 4
    assert fake_anthropic.count == sent_during_outage + 4
    assert breaker.state().state == CLOSED


# --- the token budget ----------------------------------------------------------------------------


def test_the_budget_stops_further_calls(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a budget of 5,000 tokens and answers that bill 1,000 each
    images = photos(s3, 10)
    fake_anthropic.always(tool_answer({"caption": "A chair.", "tags": []}, input_tokens=950, output_tokens=50))
    budget = InMemoryTokenBudget(5_000)

    # WHEN 10 images are captioned
    results = run(s3, images, client, breaker, budget)

    # THEN calls stop once the next one could overrun the budget; the rest are skipped unasked
    captioned = [r for r in results if r.status == CAPTIONED]
    assert 1 <= len(captioned) < 10
    assert fake_anthropic.count == len(captioned)
    assert {r.reason for r in results if r.status == SKIPPED} == {BUDGET_EXHAUSTED}
    assert results[: len(captioned)] == captioned  # in order: spent, then stopped
    usage = budget.usage()
    assert usage.spent == 1_000 * len(captioned) <= 5_000
    assert usage.reserved == 0


# --- images --------------------------------------------------------------------------------------


def test_images_are_reencoded_to_what_the_api_takes(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a large JPEG, a TIFF, a CMYK JPEG, a 16-bit PNG, a GIF and bytes that are no image
    images = upload(s3, [
        ("large", image_bytes(1, "JPEG", size=(4000, 1000))),
        ("tiff", image_bytes(2, "TIFF")),
        ("cmyk", image_bytes(3, "JPEG", mode="CMYK")),
        ("deep", image_bytes(4, "PNG", mode="I;16")),
        ("gif", image_bytes(5, "GIF", mode="P")),
        ("junk", b"%PDF-1.7 not an image at all"),
    ])

    # WHEN captioned
    results = run(s3, images, client, breaker)

    # THEN the bad one is skipped without a request and the others were sent in a form the API takes
    assert [(r.sha256, r.status, r.reason) for r in results][-1] == ("junk", SKIPPED, UNREADABLE_IMAGE)
    assert [r.status for r in results[:-1]] == [CAPTIONED] * 5
    assert fake_anthropic.count == 5
    sent = {r.sha256: req for r, req in zip(results, fake_anthropic.requests, strict=False)}
    large = sent_image(sent["large"])
    assert (large.format, large.size) == ("JPEG", (1568, 392))
    assert sent["tiff"].images[0]["media_type"] == "image/png"
    cmyk = sent_image(sent["cmyk"])
    assert (cmyk.format, cmyk.mode) == ("JPEG", "RGB")
    deep = sent_image(sent["deep"])
    assert (deep.format, deep.mode) == ("PNG", "L")
    assert sent["gif"].images[0]["media_type"] == "image/gif"
    for request in fake_anthropic.requests:
        assert len(request.images[0]["data"]) <= 5 * 1024 * 1024
        assert max(sent_image(request).size) <= 1568


def test_a_missing_image_object_is_skipped(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    [result] = run(s3, [ImageRef("gone", f"documents/{DOC}/images/gone.png")], client, breaker)
    assert (result.status, result.reason) == (SKIPPED, "image missing from storage")
    assert fake_anthropic.count == 0


# --- a caption batch: S3 in, S3 out --------------------------------------------------------------


def test_caption_batch_writes_results_to_s3_and_returns_a_small_summary(
    s3: Any, client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN two batches of a document, the second one run twice (a retried Lambda)
    images = photos(s3, 3)
    prefix = f"documents/{DOC}/captions/"
    common: dict[str, Any] = dict(
        bucket=BUCKET, client=client, model="claude-sonnet-5-5", breaker=breaker,
        budget=InMemoryTokenBudget(100_000), max_attempts=2, base_delay=0.0, max_delay=0.0,
    )
    fake_anthropic.enqueue(text_answer())  # sha000 skipped as malformed the first time
    first = caption_batch(s3, images=images[:2], out_key=f"{prefix}b00000.json", **common)
    caption_batch(s3, images=images[2:], out_key=f"{prefix}b00001.json", **common)
    caption_batch(s3, images=images[:1], out_key=f"{prefix}b00002.json", **common)

    # THEN the state payload is small and the results are in S3
    assert first == {"captions_key": f"{prefix}b00000.json", "captioned": 1, "skipped": 1,
                     "input_tokens": 2 * 1200, "output_tokens": 20 + 60}
    loaded = load_results(s3, BUCKET, prefix)
    # AND an image captioned in any run wins over a skipped run of it
    assert sorted(loaded) == ["sha000", "sha001", "sha002"]
    assert all(r.status == CAPTIONED for r in loaded.values())


def test_no_api_key_means_captions_off_with_a_clear_reason() -> None:
    with pytest.raises(CaptionsUnavailable, match="no API key"):
        build_client(Settings(), api_key=None)


def test_bedrock_client_has_sdk_retries_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    made = build_client(Settings(caption_provider="bedrock", caption_timeout_seconds=7.0))
    assert isinstance(made, anthropic.AnthropicBedrock)
    assert made.max_retries == 0
    assert made.timeout == 7.0


# --- document understanding ----------------------------------------------------------------------


PAGES = [
    (1, "# Spring catalogue\n\nOur new sofas and lamps."),
    (2, "## Oslo sofa\n\nRed leather, 210 cm, EUR 1,299. SKU OS-210"),
    (3, "## Bergen lamp\n\nBrass floor lamp, 160 cm, EUR 249."),
]
ANSWER = {
    "document_type": "product_catalog",
    "summary": "A spring furniture catalogue listing a sofa and a floor lamp with prices.",
    "products": [
        {"name": "Oslo sofa", "attributes": {"material": "red leather", "width": "210 cm", "price": "EUR 1,299",
                                             "sku": "OS-210"}, "page": 2},
        {"name": "Bergen lamp", "attributes": {"material": "brass", "height": "160 cm", "price": 249}, "page": 3},
        {"name": "Ghost chair", "attributes": {}, "page": 99},
    ],
}


def understand(client: Any, breaker: CircuitBreaker, **kwargs: Any) -> Understanding:
    options: dict[str, Any] = dict(markdown_pages=PAGES, token_budget=30_000, breaker=breaker, sleep=Sleeps())
    options.update(kwargs)
    return understand_document(client, "claude-sonnet-5-5", **options)


def test_understanding_returns_type_summary_and_products(
    client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a three-page catalogue and a model that answers with the tool
    fake_anthropic.enqueue(tool_answer(ANSWER, input_tokens=700, output_tokens=200))
    budget = InMemoryTokenBudget(100_000)

    # WHEN the document is understood
    result = understand(client, breaker, budget=budget)

    # THEN type, summary and products come from the tool input, attribute values as strings,
    # a page the model was not shown as None
    assert (result.status, result.doc_type) == (UNDERSTOOD, "product_catalog")
    assert result.summary == ANSWER["summary"]
    assert [(p.name, p.page) for p in result.products] == [("Oslo sofa", 2), ("Bergen lamp", 3), ("Ghost chair", None)]
    assert result.products[1].attributes["price"] == "249"
    assert (result.input_tokens, result.output_tokens, result.truncated, result.pages_read) == (700, 200, False, 3)
    assert budget.usage().spent == 900
    # AND the request held every page in order, and forced the tool
    request = fake_anthropic.requests[0]
    assert request.body is not None and request.body["tool_choice"] == {"type": "tool", "name": "record_understanding"}
    text = request.text
    assert text.index('<page number="1">') < text.index('<page number="2">') < text.index('<page number="3">')


def test_understanding_sends_pages_only_up_to_its_token_budget(
    client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN a 50-page document of 4,000 characters a page (about 1,000 tokens each)
    pages = [(n, f"## Page {n}\n\n" + "word " * 800) for n in range(1, 51)]
    fake_anthropic.enqueue(tool_answer({"document_type": "manual", "summary": "A manual.", "products": []}))

    # WHEN understood with a budget of 5,000 tokens
    result = understand(client, breaker, markdown_pages=pages, token_budget=5_000)

    # THEN only the first pages went out, the prompt says so, and the result is marked truncated
    text = fake_anthropic.requests[0].text
    assert len(text) <= 5_000 * 4
    assert '<page number="1">' in text and '<page number="50">' not in text
    assert "stops early" in text
    assert result.truncated and 1 <= result.pages_read < 50
    assert result.status == UNDERSTOOD


def test_understanding_never_raises_for_api_trouble(
    client: anthropic.Anthropic, breaker: CircuitBreaker, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.always(overloaded())
    result = understand(client, breaker, max_attempts=2)
    assert (result.status, result.reason) == ("skipped", "gave up after 2 attempts: API overloaded (529)")
    assert result.products == [] and result.doc_type is None

    fake_anthropic.always(text_answer("It is a catalogue."))
    assert understand(client, breaker).reason == MALFORMED_ANSWER


# --- DynamoDB: the same state machine shared by concurrent callers -------------------------------


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies a conditional write atomically; moto checks the condition and then writes
    without a lock, so two threads can both pass it. One lock around moto's item operations gives
    the service's guarantee, which is what the stores rely on."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("update_item", "get_item", "put_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


def dynamo_breaker(dynamodb: Any, clock: Clock, **kwargs: Any) -> CircuitBreaker:
    options: dict[str, Any] = dict(failure_threshold=5, window_seconds=60, cooldown_seconds=60)
    options.update(kwargs)
    return CircuitBreaker(DynamoDbBreakerStore(TABLE, "anthropic:claude-sonnet-5-5", dynamodb), clock=clock, **options)


def in_threads(n: int, work: Any) -> list[Any]:
    start = threading.Barrier(n)
    answers: list[Any] = [None] * n

    def one(i: int) -> None:
        start.wait()
        answers[i] = work()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_dynamodb_breaker_runs_the_same_state_machine(dynamodb: Any, clock: Clock) -> None:
    b = dynamo_breaker(dynamodb, clock, failure_threshold=3, cooldown_seconds=30)
    # closed, counting within the window
    assert b.allow()
    b.record_failure()
    b.record_failure()
    clock.advance(61)
    b.record_failure()
    assert (b.state().state, b.state().failures) == (CLOSED, 1)
    # a success forgets, the threshold opens
    b.record_success()
    for _ in range(3):
        b.record_failure()
    assert b.state().state == OPEN and not b.allow()
    # cool-down, one trial, a failed trial reopens, a successful one closes
    clock.advance(31)
    assert b.allow() and b.state().state == HALF_OPEN and not b.allow()
    b.record_failure()
    assert b.state().state == OPEN and not b.allow()
    clock.advance(31)
    assert b.allow()
    b.record_success()
    assert b.state().state == CLOSED and b.allow()


def test_dynamodb_breaker_grants_exactly_one_trial_among_concurrent_callers(
    dynamodb: Any, clock: Clock, atomic_moto: None
) -> None:
    # GIVEN an open breaker past its cool-down, shared through DynamoDB
    b = dynamo_breaker(dynamodb, clock, failure_threshold=1, cooldown_seconds=30)
    b.record_failure()
    clock.advance(31)

    # WHEN 12 callers (each with its own store object, as separate Lambdas) ask at once
    answers = in_threads(12, lambda: dynamo_breaker(dynamodb, clock, failure_threshold=1, cooldown_seconds=30).allow())

    # THEN exactly one gets the trial
    assert sorted(answers) == [False] * 11 + [True]


def test_dynamodb_breaker_counts_concurrent_failures_and_opens_at_the_threshold(
    dynamodb: Any, clock: Clock, atomic_moto: None
) -> None:
    # GIVEN a threshold of 5 and 12 callers failing at the same moment
    store = DynamoDbBreakerStore(TABLE, "anthropic:claude-sonnet-5-5", dynamodb)
    states = in_threads(12, lambda: store.record_failure(clock(), window_seconds=60, threshold=5))

    # THEN the breaker is open and the failures before it opened were all counted
    final = store.read()
    assert final.state == OPEN
    assert final.failures >= 5
    assert sum(1 for s in states if s.state == CLOSED) == 4  # the 4 failures before the opening one


def test_dynamodb_budget_is_shared_and_never_overcommitted(dynamodb: Any, atomic_moto: None) -> None:
    # GIVEN one document's budget of 10,000 tokens, held by 30 concurrent callers
    def reserve() -> bool:
        return DynamoDbTokenBudget(TABLE, DOC, 10_000, dynamodb).reserve(1_000)

    # WHEN each reserves 1,000 at once THEN exactly 10 get it
    assert sum(in_threads(30, reserve)) == 10

    # WHEN the 10 settle at 600 each THEN usage is exact and 4,000 is free again
    budget = DynamoDbTokenBudget(TABLE, DOC, 10_000, dynamodb)
    for _ in range(10):
        budget.settle(1_000, input_tokens=550, output_tokens=50)
    usage = budget.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.reserved, usage.calls) == (5_500, 500, 0, 10)
    assert sum(budget.reserve(1_000) for _ in range(5)) == 4
    # AND another document's budget is its own
    assert DynamoDbTokenBudget(TABLE, "other", 10_000, dynamodb).reserve(10_000)


def test_captions_with_dynamodb_breaker_and_budget(
    s3: Any, dynamodb: Any, client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, clock: Clock
) -> None:
    # GIVEN the shared stores as the Caption Lambda uses them, and an API that is down
    images = photos(s3, 12)
    fake_anthropic.always(overloaded())
    b = dynamo_breaker(dynamodb, clock)
    budget = DynamoDbTokenBudget(TABLE, DOC, 200_000, dynamodb)

    # WHEN captioned THEN the breaker opens in DynamoDB after 5 requests
    results = run(s3, images, client, b, budget)
    assert fake_anthropic.count == 5
    assert DynamoDbBreakerStore(TABLE, "anthropic:claude-sonnet-5-5", dynamodb).read().state == OPEN
    assert summarize(results)["skipped"] == 12

    # WHEN the API is back after the cool-down THEN captions flow and the budget records them
    fake_anthropic.always(tool_answer({"caption": "A chair.", "tags": []}, input_tokens=1000, output_tokens=10))
    clock.advance(61)
    results = run(s3, images, client, b, budget)
    assert summarize(results)["captioned"] == 12
    usage = budget.usage()
    assert (usage.input_tokens, usage.output_tokens, usage.reserved, usage.calls) == (12_000, 120, 0, 12)


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(database_url) as c:
        register_document(c, document_id=DOC, sha256=DOC * 2, size_bytes=100,
                          source=SourceObject(BUCKET, "uploads/c.pdf", "v1"), execution_arn=None)
        yield c


def test_store_understanding_replaces_products(conn: psycopg.Connection[Any]) -> None:
    # GIVEN an understanding with three products, stored
    fake = Understanding(
        "product_catalog", "A catalogue.",
        products=[
            Product("Oslo sofa", {"sku": "OS-210"}, 2),
            Product("Bergen lamp", {}, None),
        ],
        input_tokens=700, output_tokens=200, status=UNDERSTOOD,
    )
    assert store_understanding(conn, DOC, fake) == 2

    # WHEN stored again with one product THEN the document has exactly that one
    assert store_understanding(conn, DOC, Understanding(
        "product_catalog", "A catalogue.", products=fake.products[:1], status=UNDERSTOOD,
    )) == 1
    with conn.transaction():
        rows = conn.execute(
            "select product_no, name, attributes, page_no from products where document_id = %s", (DOC,)
        ).fetchall()
    assert rows == [(0, "Oslo sofa", {"sku": "OS-210"}, 2)]
    document = get_document(conn, DOC)
    assert document is not None
    assert (document["doc_type"], document["summary"], document["understanding_status"]) == (
        "product_catalog", "A catalogue.", "understood",
    )


def test_store_token_usage_sets_totals_and_caption_summary(conn: psycopg.Connection[Any]) -> None:
    summary = {"captioned": 3, "skipped": 1, "reasons": {CIRCUIT_OPEN: 1}}
    for _ in range(2):  # a retried Write must not count twice
        store_token_usage(conn, DOC, input_tokens=5_000, output_tokens=300, caption_summary=summary)
    document = get_document(conn, DOC)
    assert document is not None
    assert (document["input_tokens"], document["output_tokens"]) == (5_000, 300)
    assert document["caption_summary"] == summary


def test_store_caption_results_sets_caption_tags_status_and_reason(conn: psycopg.Connection[Any]) -> None:
    # GIVEN the document's images written by the Write stage
    occurrences = [
        ImageOccurrence(sha, 1, (0.0, 0.0, 10.0, 10.0), 100, 80, "png", f"documents/{DOC}/images/{sha}.png", 999)
        for sha in ("a", "b")
    ]
    batch = BatchResult(document_id=DOC, batch_no=0, first_page=1, last_page=1, seconds=0.1,
                        pages=[PageRecord(1, "# p1", 4, 595.0, 842.0, 2)], chunks=[], images=occurrences)
    write_document(conn, document_id=DOC, batches=[batch], timings={}, stats={})

    # WHEN caption results are stored
    results = [
        CaptionResult("a", CAPTIONED, "A sofa.", ["sofa", "red"], None, 1000, 20),
        CaptionResult("b", SKIPPED, None, [], CIRCUIT_OPEN),
        CaptionResult("not-an-image-of-this-document", CAPTIONED, "x", [], None),
    ]
    assert store_caption_results(conn, DOC, results) == 2

    # THEN each row says what happened to its caption
    with conn.transaction():
        rows = conn.execute(
            "select sha256, caption, tags, caption_status, caption_reason from images where document_id = %s "
            "order by sha256", (DOC,),
        ).fetchall()
    assert rows == [("a", "A sofa.", ["sofa", "red"], CAPTIONED, None), ("b", None, [], SKIPPED, CIRCUIT_OPEN)]
