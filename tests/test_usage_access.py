"""Who reads a call's text in the Usage drill-down: admins and the caller; managers see metadata only.

On SQLite and on a real PostgreSQL server; the SQL a manager's drill-down sends is checked too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert, select

from lib.core.identity import Identity, local_identity
from lib.core.tables import LlmCall
from lib.usage import queries as usage
from lib.usage.access import CONTENT_COLUMNS, Viewer, viewer_of

CAROL, BOB = "carol@acme.com", "bob@acme.com"
SECRETS = ("carol's salary question", "carol's salary answer", "carol pasted her password hunter2", "board-minutes")
MANAGER = Viewer("mike@acme.com")
ADMIN = Viewer("root@acme.com", admin=True)
TEXT_COLUMN = re.compile(r"llm_calls\.\"?(prompt|response|error_message)\b")
JSON_KEY = re.compile(r"JSON_EXTRACT\(llm_calls\.metadata,|llm_calls\.metadata ->")


def logged(n: int, user: str | None, **more) -> dict:
    return {
        "created_at": datetime(2026, 1, 10, 12, tzinfo=UTC) + timedelta(minutes=n),
        "request_id": f"a{n}",
        "user": user,
        "feature": "chat",
        "provider": "openai",
        "model": "openai/gpt-4.1-mini",
        "status": "ok",
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "cached_tokens": 0,
        "cost_usd": 0.01 * n,
        "latency_ms": 250.0,
        "prompt": f"prompt of call {n}",
        "response": f"answer of call {n}",
        **more,
    }


@pytest.fixture
def calls(any_engine):
    rows = [
        logged(
            1,
            CAROL,
            status="error",
            error_type="bad_request",
            prompt=SECRETS[0],
            response=SECRETS[1],
            error_message=SECRETS[2],
            metadata={"collection": SECRETS[3], "fallback_from": "openai/gpt-4.1", "redacted_items": 2},
        ),
        logged(2, BOB),
        logged(3, None),  # a call nobody signed made (e.g. indexing)
    ]
    with any_engine.begin() as conn:
        for row in rows:  # one by one: the rows set different columns
            conn.execute(insert(LlmCall.__table__), row)
    with any_engine.connect() as conn:
        ids = dict(conn.execute(select(LlmCall.request_id, LlmCall.id)).all())
    return any_engine, ids


def sent_sql(engine) -> list[str]:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_a_manager_sees_another_users_call_as_metadata_without_its_text(calls):
    engine, ids = calls
    got = usage.get_call(engine, ids["a1"], MANAGER, tz="Europe/Berlin")
    assert got is not None
    assert not set(CONTENT_COLUMNS) & set(got)
    assert not any(secret in repr(got) for secret in SECRETS)
    assert (got["user"], got["feature"], got["model"], got["status"], got["error_type"]) == (
        CAROL,
        "chat",
        "openai/gpt-4.1-mini",
        "error",
        "bad_request",
    )
    assert (got["prompt_tokens"], got["completion_tokens"], got["cost_usd"], got["latency_ms"]) == (
        1000,
        100,
        0.01,
        250,
    )
    assert got["created_at"] == "2026-01-10T13:01:00+01:00"
    assert got["metadata"] == {"fallback_from": "openai/gpt-4.1", "redacted_items": 2}  # no collection name


def test_a_managers_drill_down_never_selects_the_text_columns(calls):
    engine, ids = calls
    statements = sent_sql(engine)
    usage.get_call(engine, ids["a1"], MANAGER)
    assert statements and not [s for s in statements if TEXT_COLUMN.search(s)]
    # the metadata JSON only key by key (SQLite: JSON_EXTRACT(col, key), PostgreSQL: col -> key), never whole
    assert "llm_calls.metadata" not in JSON_KEY.sub("", " ".join(statements))
    statements.clear()
    usage.get_call(engine, ids["a1"], ADMIN)
    assert [s for s in statements if TEXT_COLUMN.search(s)]  # the checks above can see what an admin reads
    assert "llm_calls.metadata" in JSON_KEY.sub("", " ".join(statements))


def test_an_admin_sees_every_field_of_anyones_call(calls):
    engine, ids = calls
    got = usage.get_call(engine, ids["a1"], ADMIN)
    assert (got["prompt"], got["response"], got["error_message"]) == SECRETS[:3]
    assert got["metadata"]["collection"] == SECRETS[3]
    assert usage.get_call(engine, ids["a3"], ADMIN)["prompt"] == "prompt of call 3"


def test_a_user_sees_the_text_of_their_own_calls_only(calls):
    engine, ids = calls
    carol = Viewer(CAROL)
    own = usage.get_call(engine, ids["a1"], carol)
    assert (own["prompt"], own["response"], own["error_message"]) == SECRETS[:3]
    other = usage.get_call(engine, ids["a2"], carol)
    assert "prompt" not in other and "answer of call 2" not in repr(other)


def test_a_call_without_a_user_is_text_for_admins_only(calls):
    engine, ids = calls
    for viewer in (MANAGER, Viewer("")):
        assert "prompt" not in usage.get_call(engine, ids["a3"], viewer)


def test_the_viewer_comes_from_the_identity_the_call_log_records():
    manager = Identity(name=CAROL, email=CAROL, roles=frozenset({"manager"}), signed_in=True, key="oidc:idp|c")
    assert viewer_of(manager) == Viewer(CAROL, admin=False)
    admin = Identity(name="root@acme.com", email="root@acme.com", roles=frozenset({"admin"}), signed_in=True)
    assert viewer_of(admin).admin
    assert viewer_of(local_identity("me")) == Viewer("me", admin=True)  # sign-in off: the local user has every role


def test_no_cached_usage_query_returns_call_text_so_viewers_cannot_share_it(calls):
    """run_usage_query keeps results per filter and arguments, not per viewer: none of them may hold call text."""
    from lib.gateway.pricing import Price
    from lib.ui.resources import USAGE_QUERIES

    engine, _ = calls
    f = usage.UsageFilter(datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC))
    args = {"breakdown": ("user",), "what_if": (Price(1.0, None, 2.0, "test"),)}
    for name in USAGE_QUERIES:
        result = getattr(usage, name)(engine, f, *args.get(name, ()))
        shown = result.to_csv() if hasattr(result, "to_csv") else repr(result)
        assert not any(secret in shown for secret in (*SECRETS, "prompt of call", "answer of call")), name
    assert CAROL in usage.top_calls(engine, f).to_csv()  # the check can see what a query returns
