"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with programmable faults (stdlib only)."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ["fake-small", "fake-large"]


@dataclass(frozen=True)
class Reply:
    """A normal answer; token counts default to words (+3 per prompt message)."""

    text: str = "Hello from the fake model."
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    delay: float = 0.0
    chunk_delay: float = 0.0
    model: str | None = None


@dataclass(frozen=True)
class Status:
    """An HTTP error status with an OpenAI-style error body (and Retry-After when given)."""

    code: int
    body: dict | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class ContextTooLong:
    """400 context_length_exceeded, as OpenAI sends it."""


@dataclass(frozen=True)
class Drop:
    """Close the connection after `after_chunks` content chunks (no response at all when not streaming)."""

    after_chunks: int = 2


@dataclass(frozen=True)
class Malformed:
    """A stream with one chunk that is not JSON after `after_chunks` good ones."""

    after_chunks: int = 1


@dataclass(frozen=True)
class Hang:
    """Wait `seconds` before answering normally."""

    seconds: float


_ERRORS = {400: ("invalid_request_error", "invalid_request_error", "Bad request."),
           401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
           403: ("invalid_request_error", "forbidden", "Access denied."),
           404: ("invalid_request_error", "model_not_found", "The model does not exist."),
           429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached. Please retry later."),
           500: ("server_error", "server_error", "The server had an error."),
           502: ("server_error", "bad_gateway", "Bad gateway."),
           503: ("server_error", "overloaded", "The engine is currently overloaded.")}


def _words(text: str) -> list[str]:
    """Pieces that concatenate back to `text` exactly: each word with its trailing space."""
    pieces, current = [], ""
    for ch in text:
        current += ch
        if ch == " ":
            pieces.append(current)
            current = ""
    return pieces + ([current] if current else [])


def _prompt_tokens(body: dict) -> int:
    msgs = body.get("messages") or []
    words = 0
    for m in msgs:
        content = m.get("content") or ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        words += len(str(content).split())
    return words + 3 * len(msgs)


def _embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    vec = [b / 255 - 0.5 for b in digest[:8]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class FakeOpenAI:
    """The server; `enqueue` behaviours consumed one per completion/embedding request, FIFO."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.default_reply = Reply()
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    def start(self) -> "FakeOpenAI":
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def enqueue(self, *behaviours: Any) -> None:
        """Queue behaviours for the next requests."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default_reply = Reply()

    def _next(self) -> Any:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default_reply

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes; with Nagle on, the body waits for the client's delayed
    # ACK (~40 ms on Linux), which made every call look 40 ms slower than its configured delay
    disable_nagle_algorithm = True
    fake: FakeOpenAI

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    # ---- plumbing ---------------------------------------------------------------------------

    def _json(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, code: int, body: dict | None = None, retry_after: float | None = None) -> None:
        kind, err_code, message = _ERRORS.get(code, ("api_error", "error", f"HTTP {code}"))
        payload = body or {"error": {"message": message, "type": kind, "param": None, "code": err_code}}
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        self._json(code, payload, headers)

    def _drop(self) -> None:
        try:
            self.wfile.flush()
            self.connection.shutdown(2)
        except OSError:
            pass
        self.connection.close()
        self.close_connection = True

    # ---- endpoints --------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self.fake._record({"path": self.path, "method": "GET", "headers": dict(self.headers), "json": None})
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}
                                                          for m in MODELS]})
        else:
            self._error(404)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        self.fake._record({"path": self.path, "method": "POST", "headers": dict(self.headers), "json": body})
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._error(401)
            return
        try:
            if self.path.rstrip("/") == "/v1/chat/completions":
                self._chat(body, self.fake._next())
            elif self.path.rstrip("/") == "/v1/embeddings":
                self._embeddings(body, self.fake._next())
            else:
                self._error(404)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _embeddings(self, body: dict, behaviour: Any) -> None:
        if isinstance(behaviour, Status):
            self._error(behaviour.code, behaviour.body, behaviour.retry_after)
            return
        if isinstance(behaviour, Hang):
            time.sleep(behaviour.seconds)
        inputs = body.get("input") or []
        inputs = [inputs] if isinstance(inputs, str) else inputs
        words = sum(len(str(t).split()) for t in inputs)
        self._json(200, {"object": "list", "model": body.get("model"),
                         "data": [{"object": "embedding", "index": i, "embedding": _embedding(str(t))}
                                  for i, t in enumerate(inputs)],
                         "usage": {"prompt_tokens": words, "total_tokens": words}})

    def _chat(self, body: dict, behaviour: Any) -> None:
        stream = bool(body.get("stream"))
        if isinstance(behaviour, Status):
            self._error(behaviour.code, behaviour.body, behaviour.retry_after)
            return
        if isinstance(behaviour, ContextTooLong):
            self._error(400, {"error": {
                "message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
                           "in 9000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
            return
        if isinstance(behaviour, Drop) and not stream:
            self._drop()
            return
        if isinstance(behaviour, Hang):
            time.sleep(behaviour.seconds)
            behaviour = self.fake.default_reply
        reply = behaviour if isinstance(behaviour, Reply) else self.fake.default_reply
        if reply.delay:
            time.sleep(reply.delay)
        model = reply.model or body.get("model") or MODELS[0]
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else _prompt_tokens(body)
        completion = reply.completion_tokens if reply.completion_tokens is not None else len(reply.text.split())
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": reply.cached_tokens}}
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        if not stream:
            self._json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": reply.text}}],
                             "usage": usage})
            return
        self._stream(body, behaviour, reply, cid, created, model, usage)

    def _stream(self, body: dict, behaviour: Any, reply: Reply, cid: str, created: int, model: str,
                usage: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
            payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(payload)}\n\n".encode()

        self.wfile.write(chunk({"role": "assistant", "content": ""}))
        self.wfile.flush()
        for i, word in enumerate(_words(reply.text)):
            if isinstance(behaviour, Drop) and i >= behaviour.after_chunks:
                self._drop()
                return
            if isinstance(behaviour, Malformed) and i == behaviour.after_chunks:
                self.wfile.write(b"data: {not json\n\n")
            if reply.chunk_delay:
                time.sleep(reply.chunk_delay)
            self.wfile.write(chunk({"content": word}))
            self.wfile.flush()
        if isinstance(behaviour, Drop):
            self._drop()
            return
        self.wfile.write(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage}
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
