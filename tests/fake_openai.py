"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with programmable faults (stdlib only).

Usage::

    with FakeOpenAI() as server:
        server.enqueue(Status(429, retry_after=2), Reply("Four."))
        client = openai.OpenAI(base_url=server.base_url, api_key="test-key")

Each request to ``/v1/chat/completions`` or ``/v1/embeddings`` consumes one queued behaviour (FIFO);
``default_reply`` answers when the queue is empty. Every request, answered or not, is recorded in
``requests`` as ``{"path", "method", "headers" (lower-case names), "json"}``.

In its own process (so its CPU and GIL do not compete with the client under test, as a real provider's
would not): ``python tests/fake_openai.py --port 0 --delay 0.05`` prints its base URL on the first line of
stdout and serves the default reply until stdin closes or it is terminated; ``FakeOpenAIProcess`` does that
for you as a context manager (no queue, no recorded requests: those live in the other process).

Tool calls: ``Reply(tool_calls=(ToolCall("calculator", {"expression": "2+2"}),))`` answers with tool calls,
plain or streamed (name first, then the arguments in pieces); a ``str`` argument is sent verbatim, so bad JSON
is scripted as ``ToolCall("calculator", '{"expression": ')``, and any name may be used, known to the client or
not. A scripted agent turn: ``server.responder = by_step(Reply(tool_calls=...), Reply("The answer."))`` answers
each request by its step in the turn (how many assistant messages follow the last user message); the queue
still goes first. ``--script FILE`` (a JSON list of replies) does the same in a server process.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "MODELS",
    "ContextTooLong",
    "Drop",
    "FakeOpenAI",
    "FakeOpenAIProcess",
    "Hang",
    "Malformed",
    "Reply",
    "Status",
    "ToolCall",
    "Truncated",
    "by_step",
    "reply_from_json",
]

MODELS = ["fake-small", "fake-large", "fake-embed"]
CONTEXT_LIMIT = 8192
EMBEDDING_DIM = 8


@dataclass(frozen=True)
class ToolCall:
    """One tool call in a reply; `arguments` as a dict is sent as JSON, as a str verbatim (bad JSON included)."""

    name: str
    arguments: dict[str, Any] | str = "{}"
    id: str | None = None  # None: a fresh "call_..." id

    def arguments_json(self) -> str:
        """The arguments as the API sends them: a JSON string."""
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """A normal answer; token counts default to words (+3 per prompt message), plus 1 per 4 characters of
    tool-call arguments. With `tool_calls` the finish reason is "tool_calls" and `text` may be empty."""

    text: str = "Hello from the fake model."
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    delay: float = 0.0
    chunk_delay: float = 0.0
    model: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Status:
    """An HTTP error status with an OpenAI-style error body (`body` replaces it) and optional Retry-After.

    `retry_after` is sent as `Retry-After: <seconds>`; `headers` adds any others as given (`retry-after-ms`,
    a `Retry-After` HTTP-date).
    """

    code: int
    body: dict[str, Any] | None = None
    retry_after: float | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ContextTooLong:
    """A 400 context_length_exceeded error worded as OpenAI words it."""


@dataclass(frozen=True)
class Drop:
    """Close the socket after `after_chunks` content chunks; without streaming, close before any response."""

    after_chunks: int = 2


@dataclass(frozen=True)
class Truncated:
    """A stream that sends the whole answer and its finish_reason (and the usage chunk if `usage`), then closes
    the connection before `data: [DONE]` and the end of the chunked body."""

    usage: bool = False


@dataclass(frozen=True)
class Malformed:
    """A stream with a non-JSON event after `after_chunks` good content chunks, then finishing normally."""

    after_chunks: int = 1


@dataclass(frozen=True)
class Hang:
    """Wait `seconds` before sending `default_reply` (for client timeouts)."""

    seconds: float


Behaviour = Reply | Status | ContextTooLong | Drop | Truncated | Malformed | Hang
Responder = Callable[[dict[str, Any]], "Behaviour | None"]  # a request body -> how to answer it (None: default)


def turn_step(body: dict[str, Any]) -> int:
    """How many assistant messages follow the request's last user message: 0 for a turn's first model call."""
    step = 0
    for m in reversed(body.get("messages") or []):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "user":
            break
        step += role == "assistant"
    return step


def by_step(*replies: Behaviour) -> Responder:
    """A responder for scripted agent turns: the nth model call of a turn gets `replies[n]` (the last one after)."""
    if not replies:
        raise ValueError("by_step needs at least one reply")
    return lambda body: replies[min(turn_step(body), len(replies) - 1)]


def reply_from_json(item: dict[str, Any] | str) -> Reply:
    """A Reply from JSON: a string (the text) or {"text", "tool_calls": [{"name", "arguments", "id"}], ...}."""
    if isinstance(item, str):
        return Reply(item)
    calls = tuple(ToolCall(c["name"], c.get("arguments", "{}"), c.get("id")) for c in item.get("tool_calls") or ())
    fields = {k: v for k, v in item.items() if k != "tool_calls"}
    return Reply(**{"text": "", **fields, "tool_calls": calls}) if calls else Reply(**fields)


# code -> (error type, error code, message)
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", "invalid_request_error", "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Access denied."),
    404: ("invalid_request_error", "not_found", "Not found."),
    408: ("timeout", "timeout", "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    422: ("invalid_request_error", "unprocessable_entity", "Unprocessable entity."),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", "server_error", "The server had an error while processing your request."),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded, please try again later."),
    504: ("server_error", "gateway_timeout", "Gateway timeout."),
}
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def error_body(
    code: int, message: str | None = None, err_code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The OpenAI error JSON for an HTTP status, with optional overrides."""
    kind, default_code, default_message = _ERRORS.get(code, ("api_error", None, f"HTTP {code}."))
    return {
        "error": {"message": message or default_message, "type": kind, "param": param, "code": err_code or default_code}
    }


def split_words(text: str) -> list[str]:
    """Stream pieces that concatenate back to `text` exactly: each word with its trailing whitespace."""
    pieces: list[str] = []
    current = ""
    for ch in text:
        if current.strip() and current[-1].isspace() and not ch.isspace():
            pieces.append(current)
            current = ""
        current += ch
    return pieces + ([current] if current else [])


def _content_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list of parts."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def prompt_tokens(body: dict[str, Any]) -> int:
    """Deterministic prompt size: words in all message contents plus 3 per message."""
    messages = body.get("messages") or []
    return sum(len(_content_text(m.get("content")).split()) + 3 for m in messages if isinstance(m, dict))


def embedding(item: Any, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic unit vector derived from a hash of the input (exact in float32)."""
    seed = json.dumps(item).encode() if not isinstance(item, str) else item.encode()
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(dim // 32 + 1))
    vec = [b / 255 - 0.5 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(v / norm for v in vec))))


def _input_tokens(item: Any) -> int:
    """Words in a string input, or the length of a token-id array."""
    return len(item) if isinstance(item, list) else len(str(item).split())


class FakeOpenAI:
    """The server: `enqueue` behaviours, consumed one per completion/embedding request, FIFO."""

    def __init__(self) -> None:
        """Create a stopped server with an empty queue."""
        self.requests: list[dict[str, Any]] = []
        self.default_reply: Reply = Reply()
        self.responder: Responder | None = None  # answers when the queue is empty (before default_reply)
        self.base_url: str = ""
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0) -> FakeOpenAI:
        """Bind 127.0.0.1 on `port` (0: a free one) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next completion/embedding requests, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget queued behaviours and recorded requests, and restore the default reply."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default_reply = Reply()
            self.responder = None

    @property
    def pending(self) -> int:
        """How many queued behaviours have not been consumed yet."""
        with self._lock:
            return len(self._queue)

    def _next(self, body: dict[str, Any] | None = None) -> Behaviour:
        """The next queued behaviour, else the responder's answer to `body`, else the default reply."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        answer = responder(body or {}) if responder is not None else None
        return answer if answer is not None else self.default_reply

    def _record(self, entry: dict[str, Any]) -> None:
        """Append one request record."""
        with self._lock:
            self.requests.append(entry)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that owns its FakeOpenAI and ignores clients that hang up."""

    daemon_threads = True
    # socketserver's default listen backlog of 5 makes the kernel reset the odd connection when many
    # clients connect at once; real providers listen with a far larger one
    request_queue_size = 128
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about disconnected clients; report anything else."""
        if not isinstance(sys.exc_info()[1], _GONE):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, JSON bodies with Content-Length, chunked SSE streams."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes; with Nagle on, the body waits for the client's delayed
    # ACK (~40 ms on Linux), which made every call look 40 ms slower than its configured delay
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    @property
    def fake(self) -> FakeOpenAI:
        """The FakeOpenAI this connection belongs to."""
        return self.server.fake

    # ---- plumbing ------------------------------------------------------------------------------

    def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """A complete JSON response with Content-Length, so the connection can be reused."""
        self._send_bytes(code, json.dumps(payload).encode(), headers)

    def _send_bytes(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        """A complete response body with Content-Length."""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(
        self,
        code: int,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """An OpenAI-style error response."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self._send_json(code, body if body is not None else error_body(code), {**headers, **dict(extra)})

    def _chunk(self, data: bytes) -> None:
        """One HTTP chunk of a chunked body."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _drop(self) -> None:
        """Abruptly close the connection."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()

    # ---- routing -------------------------------------------------------------------------------

    def _record(self, body: Any) -> None:
        """Record this request."""
        self.fake._record(
            {
                "path": self.path,
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": body,
            }
        )

    def do_GET(self) -> None:
        """`/v1/models` and `/v1/models/{id}`."""
        self._record(None)
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [self._model(m) for m in MODELS]})
            elif path.startswith("/v1/models/") and path.removeprefix("/v1/models/") in MODELS:
                self._send_json(200, self._model(path.removeprefix("/v1/models/")))
            else:
                self._send_error(404, error_body(404, f"Unknown request URL: GET {self.path}."))
        except _GONE:
            self.close_connection = True

    def do_POST(self) -> None:
        """Chat completions and embeddings; anything else is a 404."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        self._record(body)
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                self._send_error(401, error_body(401, "You didn't provide an API key."))
            elif path not in ("/v1/chat/completions", "/v1/embeddings"):
                self._send_error(404, error_body(404, f"Unknown request URL: POST {self.path}."))
            elif not isinstance(body, dict):
                self._send_error(400, error_body(400, "We could not parse the JSON body of your request."))
            elif path == "/v1/chat/completions":
                self._chat(body, self.fake._next(body))
            else:
                self._embeddings(body, self.fake._next())
        except _GONE:
            self.close_connection = True

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        """One model object."""
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake"}

    # ---- behaviours ----------------------------------------------------------------------------

    def _fault(self, behaviour: Behaviour, body: dict[str, Any], stream: bool) -> Behaviour | None:
        """Act out a behaviour that needs no answer text; return what is left to answer with, or None."""
        if isinstance(behaviour, Hang):
            time.sleep(behaviour.seconds)
            return self.fake.default_reply
        if isinstance(behaviour, Status):
            self._send_error(behaviour.code, behaviour.body, behaviour.retry_after, behaviour.headers)
            return None
        if isinstance(behaviour, ContextTooLong):
            requested = max(prompt_tokens(body), CONTEXT_LIMIT + 1)
            message = (
                f"This model's maximum context length is {CONTEXT_LIMIT} tokens. However, your messages "
                f"resulted in {requested} tokens. Please reduce the length of the messages."
            )
            self._send_error(400, error_body(400, message, "context_length_exceeded", "messages"))
            return None
        if isinstance(behaviour, (Drop, Truncated)) and not stream:
            self._drop()
            return None
        if isinstance(behaviour, Malformed) and not stream:
            self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [{not json')
            return None
        return behaviour

    def _embeddings(self, body: dict[str, Any], behaviour: Behaviour) -> None:
        """Deterministic embeddings, float or base64 as requested."""
        left = self._fault(behaviour, body, stream=False)
        if left is None:
            return
        reply = left if isinstance(left, Reply) else self.fake.default_reply
        if reply.delay:
            time.sleep(reply.delay)
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)) else inputs or []
        dim = body.get("dimensions") or EMBEDDING_DIM
        data = []
        for i, item in enumerate(items):
            vec: Any = embedding(item, dim)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = reply.prompt_tokens if reply.prompt_tokens is not None else sum(map(_input_tokens, items))
        self._send_json(
            200,
            {
                "object": "list",
                "model": reply.model or body.get("model"),
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _chat(self, body: dict[str, Any], behaviour: Behaviour) -> None:
        """A chat completion, streamed or not."""
        stream = bool(body.get("stream"))
        left = self._fault(behaviour, body, stream)
        if left is None:
            return
        reply = left if isinstance(left, Reply) else self.fake.default_reply
        if reply.delay:
            time.sleep(reply.delay)
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else prompt_tokens(body)
        completion = reply.completion_tokens
        if completion is None:
            completion = len(reply.text.split()) + sum(math.ceil(len(c.arguments_json()) / 4) for c in reply.tool_calls)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or MODELS[0],
            "system_fingerprint": "fp_fake",
        }
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(left, reply, head, usage if include_usage else None)
            return
        self._send_json(
            200,
            {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                        "logprobs": None,
                        "message": self._message(reply),
                    }
                ],
                "usage": usage,
            },
        )

    @staticmethod
    def _message(reply: Reply) -> dict[str, Any]:
        """The assistant message of a non-streamed answer, with its tool calls if any."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if reply.tool_calls:
            message["content"] = reply.text or None  # as OpenAI sends a tool-calling answer without text
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.tool_calls
            ]
        return message

    def _stream(self, behaviour: Behaviour, reply: Reply, head: dict[str, Any], usage: dict[str, Any] | None) -> None:
        """Server-sent events over chunked transfer encoding, with Drop and Malformed faults."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(choices: list[dict[str, Any]], **extra: Any) -> None:
            payload = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def delta(content: dict[str, Any], finish: str | None = None) -> None:
            event([{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}])

        cut = behaviour.after_chunks if isinstance(behaviour, Drop) else None
        bad = behaviour.after_chunks if isinstance(behaviour, Malformed) else None
        delta({"role": "assistant", "content": ""})
        words = split_words(reply.text)
        for i in range(len(words) + 1):
            if i == cut:
                self._drop()
                return
            if bad is not None and i == min(bad, len(words)):
                self._chunk(b"data: {not json\n\n")
            if i == len(words):
                break
            if reply.chunk_delay:
                time.sleep(reply.chunk_delay)
            delta({"content": words[i]})
        if cut is not None:  # fewer words than after_chunks: still never finish
            self._drop()
            return
        for index, call in enumerate(reply.tool_calls):  # as OpenAI streams them: id and name, then argument pieces
            head_delta = {"index": index, "id": call.id or f"call_{uuid.uuid4().hex[:24]}", "type": "function"}
            delta({"tool_calls": [{**head_delta, "function": {"name": call.name, "arguments": ""}}]})
            arguments = call.arguments_json()
            for start in range(0, len(arguments), 8):
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                delta({"tool_calls": [{"index": index, "function": {"arguments": arguments[start : start + 8]}}]})
        delta({}, "tool_calls" if reply.tool_calls else "stop")
        if usage is not None and (not isinstance(behaviour, Truncated) or behaviour.usage):
            event([], usage=usage)
        if isinstance(behaviour, Truncated):
            self._drop()
            return
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")


class FakeOpenAIProcess:
    """The server in a child process that answers every request with `reply`; `base_url` once started.

    For benchmarks: the client under test then has its process (cores and GIL) to itself.
    """

    def __init__(self, reply: Reply | None = None, port: int = 0, script: str | None = None) -> None:
        """A stopped server that will answer with `reply` (the default Reply if None), or by step of the turn
        from `script` (a JSON file of replies, see `by_step`)."""
        self.reply, self.port, self.script = reply or Reply(), port, script
        self.base_url = ""
        self._proc: subprocess.Popen | None = None

    def start(self) -> FakeOpenAIProcess:
        """Start the child and wait until it listens."""
        if self._proc is not None:
            raise RuntimeError("FakeOpenAIProcess is already running")
        r = self.reply
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--port",
            str(self.port),
            "--text",
            r.text,
            "--delay",
            repr(r.delay),
            "--chunk-delay",
            repr(r.chunk_delay),
            *(["--script", self.script] if self.script else []),
        ]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the fake OpenAI server process did not start (it printed {line!r})")
        self.base_url = line
        return self

    def stop(self) -> None:
        """Stop the child (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # the child exits when its stdin closes
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def __enter__(self) -> FakeOpenAIProcess:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until stdin closes (or SIGTERM), answering with one reply; print the base URL first."""
    ap = argparse.ArgumentParser(description="A loopback OpenAI-compatible server for tests and benchmarks.")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    ap.add_argument("--text", default=Reply().text, help="the answer to every chat completion")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    ap.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    ap.add_argument("--script", help="a JSON file: a list of replies answered by step of the turn (see by_step)")
    args = ap.parse_args(argv)
    server = FakeOpenAI().start(args.port)
    server.default_reply = Reply(args.text, delay=args.delay, chunk_delay=args.chunk_delay)
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = [reply_from_json(item) for item in json.load(f)]
        server.responder = by_step(*(replace(r, delay=args.delay, chunk_delay=args.chunk_delay) for r in script))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.base_url, flush=True)
    try:
        while sys.stdin.read(65536):  # served from the daemon thread; ends when the parent closes stdin
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
