"""The Pipelines page under AppTest: build and version a pipeline, try a row, run it through a gate, costs, offline."""

import json

import pytest
from fake_openai import FakeOpenAI, Reply
from pipeline_fixtures import DEFINITION, NAME, answer, button, create_templates, loopback_engine, run_page, tickets
from shown import shown
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from waiting import wait_for

from lib.compare.test_sets import Case, create_test_set
from lib.core.db import make_engine, migrate
from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.gateway.pricing import set_price_override
from lib.pipelines.definition import Pipeline
from lib.pipelines.review import decide, review_queue
from lib.pipelines.runs import run_status
from lib.pipelines.store import PipelineStore
from lib.prompts.store import TemplateStore

PAGE = "../pages/pipelines.py"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def engine(server, monkeypatch):
    engine = loopback_engine(server, monkeypatch)
    yield engine
    engine.dispose()


def page() -> AppTest:
    return run_page(PAGE)


def texts(elements) -> str:
    return " ".join(shown(e.value) for e in elements)


def progress(at: AppTest) -> str:
    return shown(at.get("progress")[0].proto.text)


def saved(engine) -> None:
    PipelineStore(engine).save(Pipeline.from_dict(NAME, DEFINITION), "ada")


def test_an_author_saves_a_pipeline_sees_a_bad_edit_refused_without_losing_it_and_diffs_two_versions(engine):
    at = page()
    assert not at.exception
    at.text_input(key="pl_new_name").input(NAME)
    at.text_area(key="pl_def:(new pipeline):None").input(json.dumps(DEFINITION))
    button(at, "Save as a new version").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.selectbox(key="pl_name").value == NAME
    assert "Saved Ticket desk v1" in texts(at.success)
    assert PipelineStore(engine).labels(NAME) == {"production": 1}

    broken = json.dumps(DEFINITION, indent=2).replace('"check"', '"check",', 1)
    box = at.text_area(key=f"pl_def:{NAME}:1")
    box.input(broken)
    button(at, "Save as a new version").click().run()
    assert "not JSON" in texts(at.error) and "line" in texts(at.error)
    assert at.text_area(key=f"pl_def:{NAME}:1").value == broken  # the edit is kept to be fixed
    unknown_step = json.loads(json.dumps(DEFINITION))
    unknown_step["steps"][1]["rule"] = "later.field > 1"
    at.text_area(key=f"pl_def:{NAME}:1").input(json.dumps(unknown_step))
    button(at, "Save as a new version").click().run()
    assert "'later.field' refers to step 'later', which does not exist" in texts(at.error)

    changed = json.loads(json.dumps(DEFINITION))
    changed["steps"][1]["rule"] = "classify.confidence < 0.8"
    at.text_area(key=f"pl_def:{NAME}:1").input(json.dumps(changed))
    button(at, "Save as a new version").click().run()
    assert "Saved Ticket desk v2" in texts(at.success)
    assert at.selectbox(key=f"pl_version:{NAME}").value == 2  # the editor now shows what was saved
    assert json.loads(at.text_area(key=f"pl_def:{NAME}:2").value)["steps"][1]["rule"] == "classify.confidence < 0.8"
    assert [h.value for h in at.markdown if h.value.startswith("**Step check")] == ["**Step check**"]
    diff = " ".join(c.value for c in at.code)
    assert "- " in diff and "0.7" in diff and "+ " in diff and "0.8" in diff
    at.selectbox(key="pl_label").select("production")
    at.selectbox(key="pl_label_v").select(2)
    button(at, "Move label").click().run()
    assert PipelineStore(engine).labels(NAME) == {"production": 2}
    assert "production now points at v2" in texts(at.success)


def test_a_missing_column_is_named_before_anything_runs(engine, server):
    saved(engine)
    create_test_set(engine, "bodies", ["body"], "ada", [Case(None, {"body": "hello"})])
    at = page()
    at.selectbox(key="pl_name").select(NAME).run()
    at.radio(key="pl_source").set_value("A test set").run()
    assert "no column 'ticket'" in texts(at.error) and "Columns found: body" in texts(at.error)
    assert not any(b.label.startswith("Start the run") for b in at.button)
    assert server.requests == []


def test_an_author_tries_a_row_runs_twenty_rows_through_the_gate_and_sees_costs_per_step(engine, server):
    saved(engine)
    rows = tickets(20, urgent=(3, 11))
    create_test_set(engine, "tickets", ["ticket"], "ada", [Case(None, r) for r in rows])
    at = page()
    at.selectbox(key="pl_name").select(NAME).run()
    at.radio(key="pl_source").set_value("A test set").run()
    assert not at.error, texts(at.error)
    assert list(at.dataframe[0].value["ticket"]) == [r["ticket"] for r in rows[:5]]

    button(at, "Try the first row step by step").click().run()
    trace = at.dataframe[1].value
    assert list(trace["step"]) == ["classify", "check", "reply"]
    assert list(trace["status"]) == ["ok", "passed", "ok"]
    assert all(int(t) > 0 for t in trace["tokens"][[0, 2]])
    assert any('"label": "bug"' in c.value or "Ticket 0" in c.value for c in at.code)

    button(at, "Estimate the cost").click().run()
    assert "No estimate: A model has no price" in texts(at.info)  # never a silent $0
    set_price_override(engine, "acme/m1", 1.0, 2.0, user="ada")
    app_services().gateway.invalidate_prices()  # as the Settings page does after saving a price
    button(at, "Estimate the cost").click().run()
    assert "for 20 rows" in texts(at.info) and "from 3 tried" in texts(at.info)
    button(at, "Start the run").click().run()
    assert not at.exception and not at.error, texts(at.error)
    run_id = at.session_state["pl_run"]
    assert wait_for(lambda: run_status(engine, run_id).state == "waiting_review", 60)
    at.run()
    assert "waiting for review (2)" in progress(at)
    deps = app_services().pipeline_deps  # the page's own queue workers carry the rows on
    for item in review_queue(engine, run_id=run_id):
        decide(deps, item.id, "edit", "rita", edited_output={"label": "billing", "confidence": 1.0})
    assert wait_for(lambda: run_status(engine, run_id).state == "completed", 60), run_status(engine, run_id)
    at.run()
    assert "completed · 20/20 rows done (20 completed)" in progress(at)
    results = next(d.value for d in at.dataframe if "check.decided_by" in d.value)
    assert list(results["status"]) == ["completed"] * 20
    assert sorted(results["check.decided_by"].replace("", None).dropna()) == ["rita", "rita"]
    assert set(results.loc[results["check.decided_by"] == "rita", "classify.label"]) == {"billing"}
    with Session(engine) as s:
        run_calls = s.scalars(select(LlmCall).where(LlmCall.run_id == str(run_id))).all()
    assert len(run_calls) == 40 and {c.step for c in run_calls} == {"classify", "reply"}
    assert {(c.feature, c.pipeline_name, c.pipeline_version) for c in run_calls} == {("pipeline", NAME, 1)}
    costs = next(d.value for d in at.dataframe if "unpriced calls" in d.value)
    v1 = costs[costs["version"] == "v1"]
    assert dict(zip(v1["step"], v1["calls"])) == {"classify": 27, "reply": 27}  # the run's, 1 tried row, 2 estimates


def app_services():
    from lib.ui.resources import get_services, get_settings

    return get_services(get_settings())


def test_a_run_over_its_hard_budget_pauses_and_goes_on_when_the_author_raises_it(engine, server):
    saved(engine)
    set_price_override(engine, "acme/m1", 1.0, 2.0, user="ada")  # a call may cost up to ~$0.008 (4,096 tokens out)
    create_test_set(engine, "tickets", ["ticket"], "ada", [Case(None, r) for r in tickets(4, urgent=())])
    at = page()
    at.selectbox(key="pl_name").select(NAME).run()
    at.radio(key="pl_source").set_value("A test set").run()
    at.number_input(key="pl_budget").set_value(0.005)
    button(at, "Start the run").click().run()
    run_id = at.session_state["pl_run"]
    assert wait_for(lambda: run_status(engine, run_id).state == "paused_budget", 60), run_status(engine, run_id)
    at.run()
    assert "paused: budget $0.0050 reached" in progress(at)
    assert server.requests == []  # paused before the call that could cross it, not after
    next(n for n in at.number_input if n.label == "New budget ($)").set_value(5.0)
    button(at, "Raise the budget and resume").click().run()
    assert not at.error, texts(at.error)
    assert wait_for(lambda: run_status(engine, run_id).state == "completed", 60), run_status(engine, run_id)
    assert run_status(engine, run_id).budget_usd == 5.0 and len(server.requests) == 8


def test_failed_rows_are_retried_from_the_page_and_a_run_can_be_cancelled(engine, server):
    saved(engine)
    rows = [{"ticket": "Ticket 0: fine"}, {"ticket": "Ticket 1: broken"}, {"ticket": "Ticket 2: fine"}]
    create_test_set(engine, "tickets", ["ticket"], "ada", [Case(None, r) for r in rows])
    server.responder = lambda body: Reply("not JSON") if "broken" in str(body) else answer(body)
    at = page()
    at.selectbox(key="pl_name").select(NAME).run()
    at.radio(key="pl_source").set_value("A test set").run()
    button(at, "Start the run").click().run()
    run_id = at.session_state["pl_run"]
    assert wait_for(lambda: run_status(engine, run_id).state == "failed", 60), run_status(engine, run_id)
    at.run()
    assert "finished, 1 row(s) failed" in progress(at)
    results = next(d.value for d in at.dataframe if "error" in d.value)
    assert "No valid answer after 3 attempt(s)" in results["error"][1] and results["step"][1] == "classify"
    at.selectbox(key=f"pl_rows_filter:{run_id}").select("failed").run()
    assert list(next(d.value for d in at.dataframe if "error" in d.value)["row"]) == ["2"]
    assert "1 row(s); showing 1." in texts(at.caption)

    server.responder = lambda body: answer({**body, "messages": [{"role": "user", "content": "Ticket: urgent"}]})
    button(at, "Retry failed rows").click().run()
    assert wait_for(lambda: run_status(engine, run_id).state == "waiting_review", 60), run_status(engine, run_id)
    at.run()
    assert "waiting for review (1)" in progress(at)
    button(at, "Cancel the run").click().run()
    assert run_status(engine, run_id).state == "cancelled" and "cancelled" in progress(at)
    assert review_queue(engine, run_id=run_id) == []  # the held row left the review queue


def test_the_examples_install_from_the_page(engine):
    at = page()
    button(at, "Install the examples").click().run()
    assert "Installed Review intelligence, Support triage" in texts(at.success) or "Installed" in texts(at.success)
    assert set(PipelineStore(engine).names()) == {"Review intelligence", "Support triage"}
    button(at, "Install the examples").click().run()
    assert "already installed" in texts(at.success)


def test_offline_the_page_says_structured_steps_need_a_model_and_does_not_start(monkeypatch):
    monkeypatch.delenv("WORKBENCH_PROVIDERS", raising=False)
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    create_templates(TemplateStore(engine))
    at = page()
    assert "pipelines whose steps have an output schema need a model" in texts(at.warning)
    saved(engine)
    create_test_set(engine, "tickets", ["ticket"], "ada", [Case(None, r) for r in tickets(3)])
    at.run()
    at.selectbox(key="pl_name").select(NAME).run()
    assert "offline answerer cannot answer in JSON, so step 'classify'" in texts(at.warning)
    at.radio(key="pl_source").set_value("A test set").run()
    assert button(at, "Start the run").disabled and button(at, "Try the first row").disabled
    engine.dispose()
