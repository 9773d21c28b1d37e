"""The loopback OpenAI-compatible server behaves like the real API where the gateway depends on it."""

import openai
import pytest
from fake_openai import Drop, FakeOpenAI, Reply, Status


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def client(server):
    server.reset()
    return openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0, timeout=10)


def test_a_plain_reply_carries_usage_with_cached_tokens(server, client):
    server.enqueue(Reply("Hi there.", prompt_tokens=12, completion_tokens=2, cached_tokens=5))
    r = client.chat.completions.create(model="fake-small", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "Hi there."
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.prompt_tokens_details.cached_tokens) == (12, 2, 5)


def test_a_stream_sends_usage_only_when_asked(server, client):
    msgs = [{"role": "user", "content": "hello"}]
    with_usage = list(client.chat.completions.create(model="m", messages=msgs, stream=True,
                                                     stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices) == Reply().text
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == len(Reply().text.split())
    without = list(client.chat.completions.create(model="m", messages=msgs, stream=True))
    assert all(c.usage is None for c in without)


def test_a_429_says_when_to_retry(server, client):
    server.enqueue(Status(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "7"


def test_a_dropped_stream_ends_without_finishing(server, client):
    server.enqueue(Drop(after_chunks=2))
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))
    assert not any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_models_and_embeddings_endpoints_answer(server, client):
    assert [m.id for m in client.models.list()] == ["fake-small", "fake-large"]
    emb = client.embeddings.create(model="e", input=["a b", "c"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 8 and emb.usage.prompt_tokens == 3


def test_requests_without_a_key_are_refused(server):
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(server.base_url + "/chat/completions", data=json.dumps({}).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401
