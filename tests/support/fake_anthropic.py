"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK to talk
to it: ``POST /v1/messages`` answers shaped like the real API's (``id``, ``content`` with a
``tool_use`` block, ``stop_reason``, ``usage``; errors as ``{"type": "error", "error": {...}}``
with the real status codes and headers).

Each request takes the next scripted behaviour (``enqueue``); when the script is empty the
``default`` behaviour answers. Every request is recorded (``requests``: path, headers, JSON body).

    with FakeAnthropic() as fake:
        fake.enqueue(rate_limited(retry_after=3), tool_answer({"caption": "A chair.", "tags": []}))
        client = anthropic.Anthropic(api_key="test", base_url=fake.base_url, max_retries=0)

Tests get one through the ``fake_anthropic`` fixture below (import it into the test module, or
register this module as a plugin in conftest.py).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. ``delay``: seconds to wait before answering (a slow server)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None

    @property
    def api_key(self) -> str | None:
        """The key the request carried: ``x-api-key``, or ``authorization: Bearer`` (newer SDKs)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def model(self) -> str | None:
        return (self.body or {}).get("model")

    @property
    def text(self) -> str:
        """All text blocks of the user messages, joined."""
        parts: list[str] = []
        for message in (self.body or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
                continue
            parts.extend(b.get("text", "") for b in content if b.get("type") == "text")
        return "\n".join(parts)

    @property
    def images(self) -> list[dict[str, Any]]:
        found = []
        for message in (self.body or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                found.extend(b["source"] for b in content if b.get("type") == "image")
        return found


# A behaviour turns the request's JSON body into a reply.
Behaviour = Callable[[dict[str, Any]], Reply]


def _json(status: int, payload: Any, headers: dict[str, str] | None = None, delay: float = 0.0) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"content-type": "application/json", **(headers or {})}, delay)


def _message(request: dict[str, Any], content: list[dict[str, Any]], stop_reason: str, usage: dict[str, int]) -> dict:
    return {
        "id": f"msg_fake_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "claude-test"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage},
    }


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Behaviour:
    def reply(request: dict[str, Any]) -> Reply:
        return _json(status, {"type": "error", "error": {"type": kind, "message": message}},
                     {"request-id": f"req_fake_{next(_ids):06d}", **(headers or {})})

    return reply


def tool_answer(
    tool_input: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]],
    *,
    name: str | None = None,
    input_tokens: int = 1200,
    output_tokens: int = 60,
    delay: float = 0.0,
) -> Behaviour:
    """A successful answer with one tool_use block (for the tool the request forces, unless
    ``name`` says otherwise). ``tool_input`` may be a function of the request body."""

    def reply(request: dict[str, Any]) -> Reply:
        tool = name or (request.get("tool_choice") or {}).get("name") or "tool"
        value = tool_input(request) if callable(tool_input) else tool_input
        block = {"type": "tool_use", "id": f"toolu_fake_{next(_ids):06d}", "name": tool, "input": value}
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        return _json(200, _message(request, [block], "tool_use", usage), delay=delay)

    return reply


def text_answer(text: str = "A chair.", *, input_tokens: int = 1200, output_tokens: int = 20) -> Behaviour:
    """A successful answer with text only: no tool_use block."""

    def reply(request: dict[str, Any]) -> Reply:
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        return _json(200, _message(request, [{"type": "text", "text": text}], "end_turn", usage))

    return reply


def rate_limited(retry_after: float | str | None = 1) -> Behaviour:
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return _error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit.", headers)


def overloaded() -> Behaviour:
    return _error(529, "overloaded_error", "Overloaded")


def server_error(status: int = 500) -> Behaviour:
    return _error(status, "api_error", "Internal server error")


def error(status: int, kind: str, message: str) -> Behaviour:
    """Any error answer, e.g. error(401, "authentication_error", "invalid x-api-key")."""
    return _error(status, kind, message)


def malformed_json() -> Behaviour:
    """A 200 whose body is cut off mid-JSON."""

    def reply(request: dict[str, Any]) -> Reply:
        return Reply(200, b'{"id": "msg_fake", "type": "message", "content": [{"type": "tool_u',
                     {"content-type": "application/json"})

    return reply


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """``then``'s answer (a caption by default), sent only after ``seconds``."""
    inner = then or tool_answer({"caption": "A slow caption.", "tags": []})

    def reply(request: dict[str, Any]) -> Reply:
        answer = inner(request)
        return Reply(answer.status, answer.body, answer.headers, delay=seconds)

    return reply


def default_caption(request: dict[str, Any]) -> dict[str, Any]:
    return {"caption": "A product photograph on a white background.", "tags": ["product", "photo"]}


class FakeAnthropic:
    """The server on 127.0.0.1 (a free port), in a background thread. ``api_key``: when set,
    requests with another x-api-key get the real API's 401."""

    def __init__(self, *, default: Behaviour | None = None, api_key: str | None = None) -> None:
        self.default: Behaviour = default or tool_answer(default_caption)
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-anthropic", daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def enqueue(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def always(self, behaviour: Behaviour) -> None:
        """Answer every request (after any still scripted) with ``behaviour``."""
        with self._lock:
            self.default = behaviour

    def close(self) -> None:
        self._closing.set()  # releases slow answers still waiting
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _next(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                fake._record(recorded)
                if self.path.split("?")[0] != "/v1/messages":
                    reply = _error(404, "not_found_error", f"no route {self.path}")(body or {})
                elif fake.api_key is not None and recorded.api_key != fake.api_key:
                    reply = _error(401, "authentication_error", "invalid x-api-key")(body or {})
                elif body is None:
                    reply = _error(400, "invalid_request_error", "the body is not JSON")({})
                else:
                    reply = fake._next()(body)
                if reply.delay and fake._closing.wait(reply.delay):
                    return
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A FakeAnthropic answering captions by default, closed after the test."""
    with FakeAnthropic() as fake:
        yield fake
