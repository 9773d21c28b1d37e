"""Shared by the drills: a loopback OpenAI server with a listen backlog fit for many concurrent clients."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def server():
    """Overrides conftest's `server` (and so `fake`) in the drill modules that import it.

    fake_openai's server keeps socketserver's default listen backlog of 5 (and fake_openai.py is not the
    drills' to edit). Every streamed call opens a new connection (the OpenAI SDK closes a stream's response
    instead of returning the connection to its pool), so 10-20 clients at once overflow a backlog of 5 and
    the kernel resets the odd connection: "Connection reset by peer" for about one call in 4,000, before the
    server has even read the request. A real provider listens with a far larger backlog; so do these.
    """
    import fake_openai

    class _BigBacklog(fake_openai._Server):
        request_queue_size = 256

    original, fake_openai._Server = fake_openai._Server, _BigBacklog
    try:
        srv = fake_openai.FakeOpenAI().start()
    finally:
        fake_openai._Server = original
    yield srv
    srv.stop()
