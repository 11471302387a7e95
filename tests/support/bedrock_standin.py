"""A local stand-in for Bedrock's runtime, InvokeModel of Titan Text Embeddings V2, over HTTP: the
real botocore client (its signing, serialisation, error parsing) talks to it through
AWS_ENDPOINT_URL_BEDROCK_RUNTIME. Its vectors are the offline static model's (256 dimensions, one
of Titan's sizes), so texts that mean the same are near as with Titan; it records each request and
can be told to answer errors, as an outage or throttling would."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pagemill.text_embed.select import local_embedder

DIMENSIONS = 256  # the static model's; one of Titan V2's sizes
_INVOKE = re.compile(r"^/model/(?P<model>[^/]+)/invoke$")


@dataclass
class BedrockStandIn:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # When set, every request is answered with this error code (an HTTP 503 or 429 as Bedrock does).
    failing: str | None = None

    def texts(self) -> list[str]:
        return [r["body"]["inputText"] for r in self.requests]


@contextmanager
def bedrock_standin() -> Iterator[BedrockStandIn]:
    embedder = local_embedder("wordllama")
    state = BedrockStandIn(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            from urllib.parse import unquote

            match = _INVOKE.match(unquote(self.path))
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            state.requests.append({"model": match["model"] if match else None, "body": body})
            if match is None:
                return self._answer(404, {"message": f"no route {self.path}"}, "ResourceNotFoundException")
            if state.failing:
                return self._answer(429 if state.failing == "ThrottlingException" else 503,
                                    {"message": "stand-in told to fail"}, state.failing)
            if body.get("dimensions", 1024) != DIMENSIONS:
                return self._answer(400, {"message": f"the stand-in makes {DIMENSIONS}-d vectors"}, "ValidationException")
            text = body["inputText"]
            vector = embedder.passages([text])[0]
            self._answer(200, {"embedding": [float(x) for x in vector], "inputTextTokenCount": len(text.split())})

        def _answer(self, status: int, payload: dict[str, Any], error: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if error:
                self.send_header("x-amzn-ErrorType", error)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
