"""The Compare page under AppTest: side by side, a batch run to the end, a blind vote, promotion, live A/B."""

import json

import pytest
from fake_openai import FakeOpenAI, Reply
from shown import shown
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from waiting import wait_for

from lib.compare.runs import get_run
from lib.compare.test_sets import create_test_set, parse_csv
from lib.core.db import make_engine, migrate
from lib.core.settings import load_settings
from lib.core.tables import CompareVote, LlmCall
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore

NAME = "support.reply"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def engine(server, monkeypatch):
    server.reset()
    server.default_reply = Reply("We are open at eight.")
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    store = TemplateStore(engine)
    store.create(Template(name=NAME, system="Answer.", user="Q: {{ question }}"), "ada", labels=("production",))
    store.save_version(Template(name=NAME, system="Answer kindly.", user="Q: {{ question }}"), "ada")
    yield engine
    engine.dispose()


def page() -> AppTest:
    at = AppTest.from_file("../pages/compare.py", default_timeout=60)
    at.secrets["dummy"] = "not used"
    at.run()
    at.selectbox(key="cmp_name").select(NAME).run()
    at.selectbox(key="cmp_vA").select(1)
    at.selectbox(key="cmp_vB").select(2).run()
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def calls(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


def test_the_page_opens_on_the_shipped_templates_without_errors():
    at = AppTest.from_file("../pages/compare.py", default_timeout=60)
    at.secrets["dummy"] = "not used"
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="cmp_name").options == ["chat.system", "rag.answer"]


def test_side_by_side_runs_both_variants_shows_their_numbers_and_stores_a_vote(engine):
    at = page()
    at.text_area(key="cmp_in:question").input("When do you open?")
    button(at, "Run both").click().run()
    assert not at.exception and not at.error
    shown = [m.value for m in at.markdown if "We are open at eight." in m.value]
    assert len(shown) == 2 and all("tokens · unpriced ·" in m and "ms" in m for m in shown)  # never a silent $0
    assert sorted((c.variant, c.template_version) for c in calls(engine)) == [("A", 1), ("B", 2)]
    at.radio(key="cmp_verdict").set_value("B")
    at.text_input(key="cmp_comment").input("warmer")
    button(at, "Save vote").click().run()
    assert [m.value for m in at.markdown if "We are open at eight." in m.value] == shown  # still in view
    with Session(engine) as s:
        vote = s.scalars(select(CompareVote)).one()
    assert (vote.verdict, vote.comment, vote.inputs, vote.variant_b["version"]) == (
        "B",
        "warmer",
        {"question": "When do you open?"},
        2,
    )


def test_a_batch_run_finishes_shows_a_summary_takes_a_blind_vote_and_promotes_b(engine):
    cases = parse_csv(b"question,expected\nopen?,eight\nclose?,six\nlunch?,noon\n", ["question"])
    create_test_set(engine, "hours", ["question"], "ada", cases)
    at = page()
    next(s for s in at.selectbox if s.label == "Test set").select("hours")
    button(at, "Start run").click().run()
    assert not at.exception and not at.error
    run_id = at.session_state["cmp_run"]
    assert wait_for(lambda: get_run(engine, run_id)["status"] == "done", 30)  # the app's own queue workers
    at.run()
    assert any(f"Run #{run_id} is done" in c.value for c in at.caption)
    assert len([c for c in calls(engine) if c.experiment_id == f"run:{run_id}"]) == 6

    at.toggle(key="cmp_blind").set_value(True).run()
    assert {"Answer 1", "Answer 2"} <= {m.value.split("**")[1] for m in at.markdown if m.value.startswith("**")}
    at.radio(key="cmp_rv").set_value("second")
    button(at, "Save row vote").click().run()
    with Session(engine) as s:
        vote = s.scalars(select(CompareVote)).one()
    assert vote.blind and vote.verdict in ("A", "B") and vote.run_id == run_id
    assert "of 1 decisive votes" in at.info[0].value

    assert button(at, "Promote B").disabled  # nothing moves without the confirmation
    at.checkbox(key=f"cmp_sure:{run_id}").check().run()
    button(at, "Promote B").click().run()
    assert shown(at.success[0].value) == "production now points at v2."
    assert TemplateStore(engine).get_by_label(NAME, "production").version == 2


def test_a_live_experiment_starts_reports_and_stops_from_the_page(engine):
    at = page()
    button(at, "Start live experiment").click().run()
    assert not at.exception and not at.error
    assert "Running exp-" in shown(at.caption[0].value)
    assert list(at.dataframe[-1].value["variant"]) == ["A", "B"]
    button(at, "Stop experiment").click().run()
    assert button(at, "Start live experiment")
