"""Cost: shipped dated prices, overrides, cached tokens at their own rate, unpriced is not $0."""

from datetime import UTC, datetime, timedelta

import pytest

from lib.gateway.pricing import find_price, load_price_table, set_price_override


def test_cached_input_tokens_are_priced_at_the_cached_rate():
    price = load_price_table().prices["openai/gpt-4o-mini"]  # 0.15 in, 0.075 cached, 0.60 out per 1M
    cost = price.cost(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=400_000)
    assert cost == pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.60)


def test_a_model_with_no_price_is_unpriced_not_free():
    assert find_price("acme/mystery-model", load_price_table()) is None


def test_local_and_offline_providers_are_free():
    table = load_price_table()
    assert find_price("ollama/llama3.1:8b", table).cost(1000, 1000) == 0
    assert find_price("offline/extractive", table).cost(1000, 1000) == 0


def test_the_newest_override_in_effect_wins_over_the_table(fresh_engine):
    table = load_price_table()
    now = datetime.now(UTC)
    set_price_override(fresh_engine, "openai/gpt-4o-mini", 1.0, 2.0, 0.5, effective_from=now - timedelta(days=2))
    set_price_override(fresh_engine, "openai/gpt-4o-mini", 3.0, 4.0, None, effective_from=now - timedelta(days=1))
    set_price_override(fresh_engine, "openai/gpt-4o-mini", 9.0, 9.0, None, effective_from=now + timedelta(days=5))
    price = find_price("openai/gpt-4o-mini", table, fresh_engine)
    assert (price.input, price.output, price.source) == (3.0, 4.0, "override")
    assert price.cost(1_000_000, 0, 1_000_000) == pytest.approx(3.0)  # no cached rate: input rate
    then = find_price("openai/gpt-4o-mini", table, fresh_engine, at=now - timedelta(hours=36))
    assert then.input == 1.0


def test_negative_prices_are_refused(fresh_engine):
    with pytest.raises(ValueError, match="negative"):
        set_price_override(fresh_engine, "x/y", -1, 1)


def test_the_shipped_table_is_dated():
    assert load_price_table().as_of >= "2025-01-01"
