"""Cache, budgets, per-request limits and redaction, through the gateway against the loopback server."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from fake_openai import Reply
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_gateway import QUESTION, SECRET, make_gateway, rows

from lib.core.tables import CachedResponse, LlmCall, utcnow
from lib.gateway.client import CallContext
from lib.gateway.cost_control import budget_table, budget_used, set_budget
from lib.gateway.errors import BudgetExceeded
from lib.gateway.pricing import set_price_override


def test_the_same_request_twice_is_served_from_the_cache_for_free(fresh_engine, fake):
    fake.enqueue(Reply("Four.", prompt_tokens=1000, completion_tokens=100))
    gw = make_gateway(fresh_engine, fake)
    first = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    second = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert first.text == second.text == "Four." and len(fake.requests) == 1
    a, b = rows(fresh_engine)
    assert (a.status, b.status) == ("ok", "cached")
    assert b.cost_usd == 0 and b.saved_usd == pytest.approx(a.cost_usd) and b.prompt_tokens == 1000


def test_different_parameters_or_features_without_caching_go_to_the_provider(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"), temperature=0.2)
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="judge"))
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="judge"))
    assert len(fake.requests) == 4


def test_an_expired_answer_is_not_served(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_TTL_S="60")
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    gw.cache.now = lambda: utcnow() + timedelta(seconds=61)
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert len(fake.requests) == 2


def test_a_used_up_budget_refuses_with_which_budget_and_when_it_resets(fresh_engine, fake):
    set_budget(fresh_engine, "user", "ada", limit_usd=0.0)
    gw = make_gateway(fresh_engine, fake)
    with pytest.raises(BudgetExceeded, match=r"user 'ada' \(\$0.00\) is used up.*resets on \d{4}-\d\d-01") as err:
        gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    assert fake.requests == []
    [row] = rows(fresh_engine)
    assert (row.status, row.error_type, row.request_id) == ("blocked", "budget_exceeded", err.value.request_id)
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="bob"))  # others are unaffected


def test_past_the_soft_limit_the_feature_degrades_to_the_cheaper_model_with_a_warning(fresh_engine, fake):
    set_price_override(fresh_engine, "acme/mystery", 0.0, 0.0)
    set_budget(fresh_engine, "feature", "chat", limit_usd=0.001, soft_ratio=0.5, degrade_model="acme/mystery")
    fake.enqueue(Reply("pricey", prompt_tokens=5000, completion_tokens=0))  # 5000 * 0.15/1M = $0.00075
    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_FEATURES="")
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat")).notices == []
    second = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert second.model == "acme/mystery"
    assert any("75% of the monthly budget for feature 'chat'" in n for n in second.notices)
    assert rows(fresh_engine)[-1].meta["degraded_from"] == "openai/gpt-4o-mini"


def test_concurrent_callers_cannot_overshoot_a_hard_limit_by_more_than_one_call(fresh_engine, fake, tmp_path):
    from lib.core.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'budget.db'}")
    migrate(engine)
    fake.default_reply = Reply("x", completion_tokens=0, delay=0.02)
    long_question = [("user", "word " * 2000)]  # the server counts ~2,003 prompt tokens: $0.0003 a call
    set_budget(engine, "global", "*", limit_usd=0.003)
    gw = make_gateway(engine, fake, WORKBENCH_CACHE_FEATURES="", WORKBENCH_MAX_OUTPUT_TOKENS='{"chat": 1}')
    outcomes: list[str] = []

    def caller() -> None:
        for _ in range(5):
            try:
                gw.invoke(long_question, "openai/gpt-4o-mini", CallContext(feature="chat"))
                outcomes.append("ok")
            except BudgetExceeded:
                outcomes.append("blocked")

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as s:
        calls = list(s.scalars(select(LlmCall)))
    spent = sum(c.cost_usd or 0 for c in calls)
    assert len(calls) == 100 and outcomes.count("blocked") > 0
    one_call = max(c.cost_usd or 0 for c in calls)
    assert outcomes.count("ok") >= 5 and spent <= 0.003 + one_call + 1e-12
    [b] = budget_table(engine)
    assert b["spent_usd"] == pytest.approx(spent, abs=1e-6) and b["used"] >= 0.85


def test_per_request_limits_cap_output_and_trim_old_history(fresh_engine, fake):
    gw = make_gateway(
        fresh_engine,
        fake,
        WORKBENCH_MAX_OUTPUT_TOKENS=json.dumps({"chat": 300}),
        WORKBENCH_MAX_INPUT_TOKENS=json.dumps({"chat": 200}),
    )
    history = [("system", "Be brief.")] + [("user", "old " * 100), ("assistant", "reply " * 100)] * 3
    gw.invoke([*history, ("user", "newest question")], "openai/gpt-4o-mini", CallContext(feature="chat"))
    sent = fake.requests[-1]["json"]
    assert sent["max_completion_tokens" if "max_completion_tokens" in sent else "max_tokens"] == 300
    assert sent["messages"][0]["content"] == "Be brief." and sent["messages"][-1]["content"] == "newest question"
    assert len(sent["messages"]) < 8


def test_personal_data_is_replaced_before_an_external_provider_and_restored_for_the_user(fresh_engine, fake):
    fake.enqueue(Reply("I will write to [EMAIL_1] about card [CARD_1]."))
    gw = make_gateway(fresh_engine, fake)
    question = [("user", "Email ada@example.com about card 4111 1111 1111 1111 please")]
    answer = "".join(gw.stream(question, "openai/gpt-4o-mini", CallContext(feature="judge")))
    sent = json.dumps(fake.requests[-1]["json"]["messages"])
    assert "ada@example.com" not in sent and "[EMAIL_1]" in sent and "[CARD_1]" in sent
    assert answer == "I will write to ada@example.com about card 4111 1111 1111 1111."
    [row] = rows(fresh_engine)
    assert "ada@example.com" not in (row.prompt + row.response) and row.meta["redacted_items"] == 2
    assert SECRET not in json.dumps(fake.requests[-1]["json"])


def test_a_local_provider_receives_the_text_unchanged(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)  # "acme" is not marked external
    gw.invoke([("user", "Email ada@example.com")], "acme/mystery", CallContext(feature="judge"))
    assert "ada@example.com" in json.dumps(fake.requests[-1]["json"]["messages"])


def test_an_answer_with_a_nul_character_is_cached_as_it_is_logged(fresh_engine, fake):
    fake.enqueue(Reply("Fo\x00ur."))
    gw = make_gateway(fresh_engine, fake, WORKBENCH_LOG_CONTENT="full")
    assert gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat")).text == "Fo\x00ur."
    second = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert (second.status, second.text) == ("cached", "Four.") and len(fake.requests) == 1  # before: asked again
    assert [r.response for r in rows(fresh_engine)] == ["Four.", "Four."]


@pytest.mark.parametrize(
    "usd, tokens, limit_usd, limit_tokens, used",
    [
        (0.0, 0, 0.0, None, 1.0),  # a zero limit refuses every call, spent or not
        (0.5, 0, 0.0, None, 1.0),
        (0.0, 0, None, 0, 1.0),
        (0.5, 100, 2.0, None, 0.25),
        (0.5, 900, 2.0, 1000, 0.9),  # the tighter limit counts
        (0.0, 0, 2.0, None, 0.0),
    ],
)
def test_budget_used_is_the_share_of_the_tighter_limit_and_a_zero_limit_is_used_up(
    usd, tokens, limit_usd, limit_tokens, used
):
    assert budget_used(usd, tokens, limit_usd, limit_tokens) == pytest.approx(used)


def test_a_zero_limit_budget_reads_used_up_on_the_settings_page_as_it_blocks_calls(fresh_engine, fake):
    from lib.gateway.providers import budget_bars

    set_budget(fresh_engine, "feature", "chat", limit_usd=0.0)
    gw = make_gateway(fresh_engine, fake)
    with pytest.raises(BudgetExceeded):
        gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    [b] = budget_table(fresh_engine)
    assert b["used"] == 1.0  # before: 0.0, "0% used", while every call was refused
    [bar] = budget_bars(fresh_engine, now=utcnow().replace(year=2026, month=3, day=14))
    assert bar["fraction"] == 1.0
    assert (
        bar["text"] == "feature chat: $0.0000 of $0.00 this month (used up: calls are refused until 2026-04-01 (UTC))"
    )


def test_purging_the_cache_deletes_only_expired_answers(fresh_engine, fake):
    from lib.gateway.cost_control import purge_expired_cache

    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_TTL_S="60")
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    gw.cache.now = lambda: utcnow() + timedelta(seconds=61)
    gw.invoke([("user", "A later question")], "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert purge_expired_cache(fresh_engine) == 0  # nothing has expired yet
    assert purge_expired_cache(fresh_engine, now=lambda: utcnow() + timedelta(seconds=62)) == 1
    with Session(fresh_engine) as s:
        [kept] = s.scalars(select(CachedResponse))
    assert kept.response == "Hello from the fake model." and gw.cache.get(kept.key) is not None


# ---- hard budgets: reservations, output caps, unpriced models ----------------------------------


def test_a_call_without_an_output_cap_is_capped_at_what_the_budget_can_pay_for(fresh_engine, fake):
    set_price_override(fresh_engine, "acme/mystery", 0.0, 1.0)  # $1 per million output tokens, input free
    set_budget(fresh_engine, "user", "ada", limit_usd=0.0001)  # pays for 100 answer tokens
    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_FEATURES="")
    gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat", user="ada"))
    sent = fake.requests[-1]["json"]
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 100  # before: no cap, any answer length
    gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat", user="bob"))  # no budget: nothing changes
    assert "max_tokens" not in fake.requests[-1]["json"] and "max_completion_tokens" not in fake.requests[-1]["json"]


def test_a_budget_too_small_for_the_question_and_a_short_answer_refuses_it(fresh_engine, fake):
    set_price_override(fresh_engine, "acme/mystery", 0.0, 1.0)
    set_budget(fresh_engine, "global", "*", limit_usd=0.000005)  # 5 answer tokens: too few to be worth sending
    gw = make_gateway(fresh_engine, fake)
    with pytest.raises(BudgetExceeded, match=r"everyone \(\$0.00\) has too little left for this request"):
        gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat"))
    assert fake.requests == [] and rows(fresh_engine)[0].status == "blocked"


def test_an_unpriced_model_is_blocked_while_a_dollar_budget_applies(fresh_engine, fake):
    from lib.gateway.errors import UnpricedModel

    set_budget(fresh_engine, "feature", "chat", limit_usd=100.0)
    gw = make_gateway(fresh_engine, fake)  # acme/mystery has no price
    with pytest.raises(UnpricedModel, match=r"No price is known for acme/mystery.*feature 'chat'.*Settings page"):
        gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat"))
    assert fake.requests == []  # before: sent, logged without a cost, never counted
    [row] = rows(fresh_engine)
    assert (row.status, row.error_type) == ("blocked", "unpriced_model")
    gw.invoke(QUESTION, "acme/mystery", CallContext(feature="judge"))  # no dollar budget applies there
    assert len(fake.requests) == 1


def test_with_the_tokens_policy_an_unpriced_model_counts_against_token_budgets(fresh_engine, fake):
    set_budget(fresh_engine, "global", "*", limit_usd=100.0)
    set_budget(fresh_engine, "user", "ada", limit_tokens=2000)
    fake.enqueue(Reply("Four.", prompt_tokens=1500, completion_tokens=10), Reply("Five.", 400, 90))
    gw = make_gateway(fresh_engine, fake, WORKBENCH_UNPRICED_POLICY="tokens", WORKBENCH_CACHE_FEATURES="")
    first = gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat", user="ada"))
    assert first.cost_usd is None and first.unpriced
    sent = fake.requests[-1]["json"]
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) <= 2000  # the token budget caps the answer
    gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat", user="ada"))  # 490 left: capped, still sent
    sent = fake.requests[-1]["json"]
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) <= 490
    with pytest.raises(BudgetExceeded, match=r"user 'ada' \(2,000 tokens\) is used up"):
        gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat", user="ada"))


def test_the_unpriced_policy_and_the_prompt_limit_must_parse():
    from lib.core.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="WORKBENCH_UNPRICED_POLICY must be one of"):
        load_settings(env={"WORKBENCH_UNPRICED_POLICY": "allow"})
    with pytest.raises(ConfigError, match="WORKBENCH_MAX_PROMPT_CHARS must be above 0"):
        load_settings(env={"WORKBENCH_MAX_PROMPT_CHARS": "0"})
    defaults = load_settings(env={})
    assert (defaults.unpriced_policy, defaults.max_prompt_chars, defaults.cache_shared_features) == (
        "block",
        200_000,
        frozenset(),
    )


def test_a_reservation_left_by_a_process_that_died_is_given_back_once_it_expires(fresh_engine, fake):
    from lib.gateway.cost_control import CallEstimate
    from lib.gateway.pricing import Price

    set_price_override(fresh_engine, "acme/mystery", 0.0, 1.0)
    set_budget(fresh_engine, "global", "*", limit_usd=0.001)
    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_FEATURES="")
    dead = make_gateway(fresh_engine, fake)  # another process: reserves the whole budget, then dies mid-call
    held = dead.budgets.admit(None, "chat", "acme/mystery", lambda m: CallEstimate(0, None, Price(0, 0, 1.0, "x")))
    assert held.max_tokens == 1000
    [b] = budget_table(fresh_engine)
    assert b["reserved_usd"] == pytest.approx(0.001) and b["spent_usd"] == 0
    with pytest.raises(BudgetExceeded, match="requests still running hold the rest"):
        gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat"))
    later = utcnow() + timedelta(seconds=gw.budgets.reservation_ttl_s + 1)
    gw.budgets.now = lambda: later
    gw.invoke(QUESTION, "acme/mystery", CallContext(feature="chat"))  # the dead process's hold was given back
    assert rows(fresh_engine)[-1].status == "ok"
    [b] = budget_table(fresh_engine)
    assert b["reserved_usd"] == 0


def test_a_reservation_takes_every_budget_or_none(any_engine):
    from lib.gateway.reservations import Limit, read_counters, sync_counter, try_reserve

    keys = [("global", "*"), ("user", "ada")]
    for key in keys:
        sync_counter(any_engine, key, "2026-11", 0.0, 0)
    limits = {keys[0]: Limit(1.0, None), keys[1]: Limit(None, 100)}
    later = utcnow() + timedelta(minutes=5)
    assert try_reserve(any_engine, "a", "2026-11", dict.fromkeys(keys, (0.5, 60)), limits, later) is None
    assert try_reserve(any_engine, "b", "2026-11", dict.fromkeys(keys, (0.4, 60)), limits, later) == ("user", "ada")
    counters = read_counters(any_engine, keys, "2026-11")
    assert counters[keys[0]].reserved_usd == pytest.approx(0.5)  # b's dollars were not kept on the global budget
    assert counters[keys[1]].reserved_tokens == 60


def test_spend_logged_elsewhere_catches_up_on_the_counter_but_never_lowers_it(fresh_engine):
    from lib.gateway.reservations import read_counters, sync_counter

    key = ("user", "ada")
    sync_counter(fresh_engine, key, "2026-11", 0.5, 100)
    sync_counter(fresh_engine, key, "2026-11", 0.2, 300)
    [c] = read_counters(fresh_engine, [key], "2026-11").values()
    assert (c.spent_usd, c.spent_tokens) == (0.5, 300)


def test_a_held_reservation_shows_on_the_settings_page_bar(fresh_engine, fake):
    from lib.gateway.cost_control import CallEstimate
    from lib.gateway.pricing import Price
    from lib.gateway.providers import budget_bars

    set_budget(fresh_engine, "global", "*", limit_usd=1.0)
    gw = make_gateway(fresh_engine, fake)
    gw.budgets.admit(None, "chat", "acme/mystery", lambda m: CallEstimate(0, 250_000, Price(0, 0, 1.0, "x")))
    [bar] = budget_bars(fresh_engine)
    assert "$0.2500 held by calls in progress" in bar["text"]


# ---- the response cache is per user unless the feature is shared ---------------------------------


def test_one_users_cached_answer_is_not_served_to_another_user(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake)
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    bob = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="bob"))
    assert bob.status == "ok" and len(fake.requests) == 2  # before: Ada's answer, served from the cache
    again = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    assert again.status == "cached" and len(fake.requests) == 2


def test_a_feature_marked_shared_serves_its_cached_answers_to_everyone(fresh_engine, fake):
    gw = make_gateway(fresh_engine, fake, WORKBENCH_CACHE_SHARED_FEATURES="compare")
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="compare", user="ada"))
    bob = gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="compare", user="bob"))
    assert bob.status == "cached" and len(fake.requests) == 1
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="ada"))
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat", user="bob"))
    assert len(fake.requests) == 3  # chat is not shared


def test_the_output_cap_allows_for_a_dearer_fallback_and_an_unpriced_one_is_never_tried(fresh_engine, fake):
    from fake_openai import Status

    from lib.gateway.errors import BadRequest

    set_budget(fresh_engine, "global", "*", limit_usd=0.001)
    set_price_override(fresh_engine, "acme/mystery", 0.0, 10.0)  # the fallback: $10 per million answer tokens
    gw = make_gateway(fresh_engine, fake, WORKBENCH_FALLBACKS='{"chat": "acme/mystery"}', WORKBENCH_CACHE_FEATURES="")
    gw.invoke(QUESTION, "openai/gpt-4o-mini", CallContext(feature="chat"))
    sent = fake.requests[-1]["json"]
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 100  # what the fallback could cost
    unpriced = make_gateway(fresh_engine, fake, WORKBENCH_FALLBACKS='{"chat": "acme/other"}')
    fake.enqueue(Status(400))
    with pytest.raises(BadRequest):
        unpriced.invoke([("user", "Another question")], "openai/gpt-4o-mini", CallContext(feature="chat"))
    assert len(fake.requests) == 2  # the unpriced fallback was not called under a dollar budget


# ---- the cache holds no more personal data than the call log may ------------------------------------------------


def cached_rows(engine) -> list[CachedResponse]:
    with Session(engine) as s:
        return list(s.scalars(select(CachedResponse)))


ASK_ADA = [("user", "Draft a reply to ada@example.com about her refund.")]


def test_with_a_redacted_log_an_answer_is_cached_masked_and_served_restored(fresh_engine, fake):
    fake.enqueue(Reply("Dear Ada, I wrote to ada@example.com about the refund."))
    gw = make_gateway(fresh_engine, fake)  # WORKBENCH_LOG_CONTENT defaults to redacted; acme is not external
    first = gw.invoke(ASK_ADA, "acme/mystery", CallContext(feature="chat", user="bob"))
    [row] = cached_rows(fresh_engine)
    assert "ada@example.com" not in row.response and "[EMAIL_1]" in row.response  # before: stored verbatim
    second = gw.invoke(ASK_ADA, "acme/mystery", CallContext(feature="chat", user="bob"))
    assert (second.status, second.text) == ("cached", first.text) and len(fake.requests) == 1


def test_an_external_providers_answer_is_cached_as_the_provider_wrote_it(fresh_engine, fake):
    fake.enqueue(Reply("I wrote to [EMAIL_1] about the refund."))  # the provider only ever saw the placeholder
    gw = make_gateway(fresh_engine, fake)
    first = gw.invoke(ASK_ADA, "openai/gpt-4o-mini", CallContext(feature="chat", user="bob"))
    assert first.text == "I wrote to ada@example.com about the refund."
    assert "ada@example.com" not in fake.requests[0]["json"]["messages"][0]["content"]
    [row] = cached_rows(fresh_engine)
    assert row.response == "I wrote to [EMAIL_1] about the refund."
    second = gw.invoke(ASK_ADA, "openai/gpt-4o-mini", CallContext(feature="chat", user="bob"))
    assert (second.status, second.text) == ("cached", first.text)


def test_an_answer_with_personal_data_the_question_did_not_hold_is_not_cached(fresh_engine, fake):
    fake.enqueue(Reply("Ask Carol at carol@example.org or on +44 20 7946 0958."), Reply("Ask Carol."))
    gw = make_gateway(fresh_engine, fake)
    gw.invoke(ASK_ADA, "acme/mystery", CallContext(feature="chat", user="bob"))
    assert cached_rows(fresh_engine) == []  # masked, it could not be given back; verbatim, it would be kept
    second = gw.invoke(ASK_ADA, "acme/mystery", CallContext(feature="chat", user="bob"))
    assert second.status == "ok" and len(fake.requests) == 2


def test_with_a_full_log_the_answer_is_cached_verbatim(fresh_engine, fake):
    fake.enqueue(Reply("Ask Carol at carol@example.org."))
    gw = make_gateway(fresh_engine, fake, WORKBENCH_LOG_CONTENT="full")
    gw.invoke(ASK_ADA, "acme/mystery", CallContext(feature="chat", user="bob"))
    [row] = cached_rows(fresh_engine)
    assert row.response == "Ask Carol at carol@example.org."
