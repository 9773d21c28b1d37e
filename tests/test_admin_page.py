"""Settings page: providers with reachability (no keys shown), price overrides, budgets with burn."""

import json
from pathlib import Path

from fake_openai import FakeOpenAI
from shown import shown
from streamlit.testing.v1 import AppTest

from lib.core.db import make_engine
from lib.core.settings import load_settings
from lib.gateway.cost_control import budget_table
from lib.gateway.pricing import find_price, load_price_table

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-NEVER-SHOWN-1234567890abcdef"


def admin_page(monkeypatch, server) -> AppTest:
    providers = {"acme": {"base_url": server.base_url, "api_key": KEY, "models": ["fake-small", "ghost"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.secrets["WORKBENCH_TEST"] = "1"
    at.run()
    return at.switch_page("pages/admin.py").run()


def page_text(at: AppTest) -> str:
    parts = [str(e.value) for e in at.dataframe] + [m.value for m in at.markdown] + [c.value for c in at.caption]
    return " ".join(parts)


def test_providers_are_listed_and_checked_without_ever_showing_a_key(monkeypatch):
    with FakeOpenAI() as server:
        at = admin_page(monkeypatch, server)
        assert not at.exception
        next(b for b in at.button if b.label.startswith("Check which providers")).click().run()
        checks = at.dataframe[1].value
        row = checks[checks["provider"] == "acme"].iloc[0]
        assert bool(row["reachable"]) and "not served: ghost" in row["detail"]
        assert KEY not in page_text(at)


def test_an_admin_sets_a_price_override_and_a_budget(monkeypatch):
    with FakeOpenAI() as server:
        at = admin_page(monkeypatch, server)
        next(t for t in at.text_input if t.label == "Model (provider/model)").input("acme/fake-small")
        at.number_input[0].set_value(1.5)
        at.number_input[2].set_value(3.0)
        next(b for b in at.button if b.label == "Save price override").click().run()
        assert not at.exception
        engine = make_engine(load_settings().database_url)
        price = find_price("acme/fake-small", load_price_table(), engine)
        assert (price.input, price.output, price.source) == (1.5, 3.0, "override")
        next(t for t in at.text_input if t.label.startswith("User or feature")).input("ada")
        next(s for s in at.selectbox if s.label == "Scope").select("user")
        next(n for n in at.number_input if n.label.startswith("Monthly limit $")).set_value(25.0)
        next(b for b in at.button if b.label == "Save budget").click().run()
        assert not at.exception
        [budget] = budget_table(engine)
        assert (budget["scope"], budget["subject"], budget["limit_usd"]) == ("user", "ada", 25.0)
        assert any("user ada: $0.0000 of $25.00 this month" in shown(p.proto.text) for p in at.get("progress"))


def test_a_zero_limit_budget_shows_as_used_up_and_can_be_deleted(monkeypatch):
    from lib.gateway.cost_control import set_budget

    with FakeOpenAI() as server:
        at = admin_page(monkeypatch, server)
        engine = make_engine(load_settings().database_url)
        set_budget(engine, "global", "*", limit_usd=0.0)
        at.run()
        [bar] = at.get("progress")
        assert bar.proto.value == 100 and "used up: calls are refused until" in shown(bar.proto.text)  # before: 0%
        next(b for b in at.button if b.label == "Delete").click().run()
        assert not at.exception and budget_table(engine) == [] and at.get("progress") == []


def test_the_prices_tab_says_what_happens_to_unpriced_models_under_a_dollar_budget():
    from lib.gateway.providers import prices_caption

    table = load_price_table()
    refused = prices_caption(load_settings(env={}), table)
    counted = prices_caption(load_settings(env={"WORKBENCH_UNPRICED_POLICY": "tokens"}), table)
    assert "calls to it are refused while a dollar budget applies" in refused
    assert "their tokens count on token budgets" in counted and "refused" not in counted
