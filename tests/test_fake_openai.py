"""The loopback OpenAI-compatible server behaves like the real API for the openai SDK and LangChain."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import reduce
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fake_openai import ContextTooLong, Drop, FakeOpenAI, FakeOpenAIProcess, Hang, Malformed, Reply, Status, split_words
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

USER = [{"role": "user", "content": "hello there"}]  # 2 words + 3 per message = 5 prompt tokens
TEXT = "Two  plus\ntwo is four."  # odd whitespace must survive streaming


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    """One fake server for the module."""
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    """The shared server with an empty queue and no recorded requests."""
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeOpenAI) -> openai.OpenAI:
    """A real openai SDK client pointed at the fake server."""
    return openai.OpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0, timeout=10)


@pytest.fixture
def chat(fake: FakeOpenAI) -> ChatOpenAI:
    """A real LangChain chat model pointed at the fake server, asking for streamed usage."""
    return ChatOpenAI(
        base_url=fake.base_url, api_key="test-key", model="fake-small", stream_usage=True, max_retries=0, timeout=10
    )


def chat_create(client: openai.OpenAI, **kwargs: Any) -> Any:
    """A chat completion for USER on fake-small."""
    return client.chat.completions.create(model="fake-small", messages=USER, **kwargs)


def post(url: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POST JSON with urllib; the status and decoded body, errors included."""
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# ---- openai SDK: answers -----------------------------------------------------------------------


def test_a_plain_reply_echoes_the_model_and_counts_words_as_tokens(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="fake-large",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is two plus two?"}],
    )
    assert r.object == "chat.completion" and r.model == "fake-large"
    assert (r.choices[0].message.role, r.choices[0].message.content) == ("assistant", Reply().text)
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (13, 5, 18)
    assert r.usage.prompt_tokens_details.cached_tokens == 0


def test_a_reply_can_set_its_tokens_cached_tokens_and_model(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Reply("Hi there.", prompt_tokens=1200, completion_tokens=7, cached_tokens=1024, model="gpt-x"))
    r = chat_create(client)
    assert (r.choices[0].message.content, r.model) == ("Hi there.", "gpt-x")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (1200, 7, 1207)
    assert r.usage.prompt_tokens_details.cached_tokens == 1024


def test_queued_replies_are_used_in_order_then_the_default_reply(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Reply("first"), Reply("second"))
    fake.default_reply = Reply("fallback")
    texts = [chat_create(client).choices[0].message.content for _ in range(4)]
    assert texts == ["first", "second", "fallback", "fallback"]
    assert fake.pending == 0


def test_a_stream_reproduces_the_text_exactly_and_ends_with_a_usage_chunk(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.enqueue(Reply(TEXT, cached_tokens=2))
    chunks = list(chat_create(client, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert len(chunks) == 1 + len(split_words(TEXT)) + 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].choices[0].delta.content is None
    last = chunks[-1]
    assert last.object == "chat.completion.chunk" and last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (5, 5, 10)
    assert last.usage.prompt_tokens_details.cached_tokens == 2


def test_a_stream_has_no_usage_chunk_unless_asked(client: openai.OpenAI) -> None:
    chunks = list(chat_create(client, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streams_and_replies_use_chunked_bodies_and_content_length(fake: FakeOpenAI) -> None:
    headers = {"Authorization": "Bearer k"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=5) as http:
        plain = http.post("/chat/completions", json={"model": "m", "messages": USER})
        with http.stream("POST", "/chat/completions", json={"model": "m", "messages": USER, "stream": True}) as s:
            lines = [line for line in s.iter_lines() if line]
            stream_headers = s.headers
        again = http.post("/chat/completions", json={"model": "m", "messages": USER})
    assert plain.headers["content-length"] == str(len(plain.content)) and plain.json()["model"] == "m"
    assert stream_headers["transfer-encoding"] == "chunked" and "content-length" not in stream_headers
    assert stream_headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert again.status_code == 200  # the connection survived a finished stream


# ---- openai SDK: errors ------------------------------------------------------------------------


def test_a_429_is_a_rate_limit_error_that_says_when_to_retry(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Status(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as err:
        chat_create(client)
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.code == "rate_limit_exceeded" and err.value.type == "rate_limit_error"


def test_a_500_is_an_internal_server_error_without_retry_after(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Status(500))
    with pytest.raises(openai.InternalServerError) as err:
        chat_create(client, stream=True)
    assert err.value.status_code == 500 and err.value.code == "server_error"
    assert "retry-after" not in err.value.response.headers


def test_a_401_status_is_an_authentication_error(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Status(401))
    with pytest.raises(openai.AuthenticationError) as err:
        chat_create(client)
    assert err.value.code == "invalid_api_key"


def test_a_status_body_replaces_the_default_error(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    body = {"error": {"message": "Custom trouble.", "type": "invalid_request_error", "code": "custom"}}
    fake.enqueue(Status(400, body=body))
    with pytest.raises(openai.BadRequestError) as err:
        chat_create(client)
    assert err.value.code == "custom" and "Custom trouble." in str(err.value)


def test_a_context_too_long_is_a_bad_request_with_openais_code_and_wording(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.enqueue(ContextTooLong())
    with pytest.raises(openai.BadRequestError) as err:
        chat_create(client)
    assert err.value.status_code == 400 and err.value.code == "context_length_exceeded"
    assert err.value.body["message"].startswith("This model's maximum context length is 8192 tokens.")


def test_a_stream_dropped_midway_raises_after_the_first_chunks(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Drop(after_chunks=2))
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in chat_create(client, stream=True, stream_options={"include_usage": True}):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "Hello ", "from "]


def test_a_dropped_request_without_streaming_gets_no_response(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Drop(), Reply("Still here."))
    with pytest.raises(openai.APIConnectionError):
        chat_create(client)
    assert chat_create(client).choices[0].message.content == "Still here."


def test_a_malformed_event_breaks_the_sdk_after_the_good_chunks(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Malformed(after_chunks=1))
    seen: list[str] = []
    with pytest.raises(ValueError):
        for chunk in chat_create(client, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "Hello "]


def test_a_malformed_stream_carries_on_to_done_after_the_bad_event(fake: FakeOpenAI) -> None:
    fake.enqueue(Malformed(after_chunks=2))
    with httpx.stream(
        "POST",
        fake.base_url + "/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={"model": "m", "messages": USER, "stream": True},
        timeout=5,
    ) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert lines.index("data: {not json") == 3  # role chunk + two words
    assert lines[-1] == "data: [DONE]"
    contents = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines[:-1] if line != lines[3]]
    assert "".join(c or "" for c in contents) == Reply().text


def test_a_hang_times_out_the_client_while_other_requests_are_served(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Hang(5), Reply("Meanwhile."))
    with pytest.raises(openai.APITimeoutError):
        chat_create(client.with_options(timeout=0.5))
    assert chat_create(client).choices[0].message.content == "Meanwhile."


def test_a_chunk_delay_longer_than_the_read_timeout_times_out_mid_stream(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.enqueue(Reply("slow words here", chunk_delay=3))
    seen: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        for chunk in chat_create(client.with_options(timeout=0.5), stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == [""]


# ---- LangChain ---------------------------------------------------------------------------------


def test_langchain_invoke_gets_the_text_and_usage_metadata(fake: FakeOpenAI, chat: ChatOpenAI) -> None:
    fake.enqueue(Reply(TEXT, cached_tokens=3))
    msg = chat.invoke("hello there")
    assert msg.content == TEXT
    assert msg.usage_metadata["input_tokens"] == 5 and msg.usage_metadata["output_tokens"] == 5
    assert msg.usage_metadata["input_token_details"]["cache_read"] == 3
    assert fake.requests[-1]["json"]["model"] == "fake-small"


def test_langchain_streaming_aggregates_the_text_and_the_usage_chunk(fake: FakeOpenAI, chat: ChatOpenAI) -> None:
    fake.enqueue(Reply(TEXT, prompt_tokens=40, cached_tokens=32))
    chunks = list(chat.stream("hello there"))
    whole = reduce(lambda a, b: a + b, chunks)
    assert isinstance(whole, AIMessageChunk) and whole.content == TEXT
    assert fake.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    usage = whole.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (40, 5, 45)
    assert usage["input_token_details"]["cache_read"] == 32


def test_langchain_streaming_without_stream_usage_gets_no_usage(fake: FakeOpenAI) -> None:
    chat = ChatOpenAI(
        base_url=fake.base_url, api_key="test-key", model="fake-small", stream_usage=False, max_retries=0, timeout=10
    )
    whole = reduce(lambda a, b: a + b, chat.stream("hello there"))
    assert whole.content == Reply().text and not whole.usage_metadata
    assert "stream_options" not in fake.requests[-1]["json"]


def test_langchain_surfaces_openai_errors(fake: FakeOpenAI, chat: ChatOpenAI) -> None:
    fake.enqueue(Status(429, retry_after=2), Drop(after_chunks=1))
    with pytest.raises(openai.RateLimitError):
        chat.invoke("hello")
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in chat.stream("hello"):
            seen.append(chunk.content)
    assert "Hello " in seen


# ---- recording, auth, other endpoints ----------------------------------------------------------


def test_every_request_is_recorded_in_order_with_lowercase_headers(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Status(500))
    with pytest.raises(openai.InternalServerError):
        chat_create(client, temperature=0.2)
    chat_create(client, stream=True).close()
    client.models.list()
    assert [(r["method"], r["path"]) for r in fake.requests] == [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    first = fake.requests[0]
    assert first["headers"]["authorization"] == "Bearer test-key"
    assert first["json"] == {"model": "fake-small", "messages": USER, "temperature": 0.2}
    assert fake.requests[1]["json"]["stream"] is True and fake.requests[2]["json"] is None
    fake.reset()
    assert fake.requests == [] and fake.pending == 0


def test_concurrent_requests_are_all_answered_and_recorded(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(*[Reply(f"answer {i}") for i in range(20)])
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda _: chat_create(client).choices[0].message.content, range(20)))
    assert sorted(texts) == sorted(f"answer {i}" for i in range(20))
    assert len(fake.requests) == 20


def test_a_post_without_a_bearer_key_is_refused_without_using_the_queue(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply("kept"))
    code, body = post(fake.base_url + "/chat/completions", {"model": "m", "messages": USER})
    assert code == 401 and body["error"]["code"] == "invalid_api_key"
    assert fake.pending == 1 and len(fake.requests) == 1


def test_unknown_paths_and_bad_json_get_json_errors(fake: FakeOpenAI) -> None:
    code, body = post(fake.base_url + "/completions", {"model": "m"}, {"Authorization": "Bearer k"})
    assert code == 404 and "error" in body
    req = urllib.request.Request(
        fake.base_url + "/chat/completions", data=b"{oops", method="POST", headers={"Authorization": "Bearer k"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400 and json.loads(err.value.read())["error"]["type"] == "invalid_request_error"


def test_the_models_endpoint_lists_the_fake_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"fake-small", "fake-large"} <= set(ids)
    assert client.models.retrieve("fake-large").id == "fake-large"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_embeddings_are_deterministic_normalised_and_the_same_as_floats_or_base64(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    via_base64 = client.embeddings.create(model="fake-embed", input=["one two", "three", "one two"])
    via_floats = client.embeddings.create(model="fake-embed", input=["one two", "three"], encoding_format="float")
    assert fake.requests[0]["json"]["encoding_format"] == "base64"
    a, b, again = (d.embedding for d in via_base64.data)
    assert len(a) == 8 and a == again and a != b
    assert math.isclose(math.sqrt(sum(x * x for x in a)), 1.0, rel_tol=1e-6)
    assert [d.embedding for d in via_floats.data] == [a, b]
    assert (via_base64.usage.prompt_tokens, via_base64.usage.total_tokens) == (5, 5)
    assert [d.index for d in via_base64.data] == [0, 1, 2]
    raw = client.embeddings.with_raw_response.create(model="fake-embed", input="one two", encoding_format="base64")
    assert isinstance(json.loads(raw.content)["data"][0]["embedding"], str)  # the SDK decoded base64 above


def test_embeddings_consume_the_queue_like_chat(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Status(503), Reply(prompt_tokens=99))
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fake-embed", input="hello")
    assert client.embeddings.create(model="fake-embed", input="hello").usage.prompt_tokens == 99


def test_the_server_runs_in_its_own_process_with_one_reply_and_stops_cleanly() -> None:
    with FakeOpenAIProcess(Reply("From the other process.", delay=0.05)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test-key", max_retries=0, timeout=10)
        start = time.perf_counter()
        assert chat_create(client).choices[0].message.content == "From the other process."
        assert time.perf_counter() - start >= 0.05
        pid = srv._proc.pid
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(pid, 0)
    # the entry point by hand: the first line is the base URL; it exits when stdin closes
    script = Path(__file__).resolve().parent / "fake_openai.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--text", "Hi."],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        client = openai.OpenAI(base_url=url, api_key="test-key", max_retries=0, timeout=10)
        assert chat_create(client).choices[0].message.content == "Hi."
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
