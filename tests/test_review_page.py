"""The Review page under AppTest: the queue and its filters, approve with an edit, invalid edits, rejects, roles."""

import json

import pytest
from fake_openai import FakeOpenAI
from pipeline_fixtures import DEFINITION, NAME, button, loopback_engine, run_page, tickets
from shown import shown
from streamlit.testing.v1 import AppTest
from waiting import wait_for

from lib.pipelines.definition import Pipeline
from lib.pipelines.review import review_queue
from lib.pipelines.runs import results, run_status, start_run
from lib.pipelines.store import PipelineStore

PAGE = "../pages/review.py"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def engine(server, monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "rita")
    engine = loopback_engine(server, monkeypatch)
    PipelineStore(engine).save(Pipeline.from_dict(NAME, DEFINITION), "ada")
    yield engine
    engine.dispose()


def app_services():
    from lib.ui.resources import get_services, get_settings

    return get_services(get_settings())


@pytest.fixture
def waiting_run(engine):
    """A run of 6 rows on the app's own queue, rows 2 and 5 held at the gate."""
    services = app_services()
    pipeline = PipelineStore(engine).get(NAME)
    run_id = start_run(services.pipeline_deps, pipeline, tickets(6, urgent=(1, 4)), "ada")
    assert wait_for(lambda: run_status(engine, run_id).state == "waiting_review", 60), run_status(engine, run_id)
    return run_id


def page() -> AppTest:
    return run_page(PAGE)


def texts(elements) -> str:
    return " ".join(shown(e.value) for e in elements)


def test_a_reviewer_sees_the_queue_fixes_an_invalid_edit_and_the_row_continues_to_the_end(engine, waiting_run):
    at = page()
    assert not at.exception and not at.error
    queue = at.dataframe[0].value
    # oldest first: rows 2 and 5 reach the gate at about the same time, in either order
    assert sorted(queue["row"]) == ["2", "5"] and set(queue["gate"]) == {"check"} and set(queue["pipeline"]) == {NAME}
    assert list(queue["row"]) == [str(i.position + 1) for i in review_queue(engine)]
    (row_two,) = [i.id for i in review_queue(engine) if i.position == 1]
    at.selectbox(key="rv_item").set_value(row_two).run()
    inputs, outputs = at.dataframe[1].value, at.dataframe[2].value
    assert dict(zip(inputs["field"], inputs["value"])) == {"ticket": "Ticket 1: the app crashes - urgent"}
    assert dict(zip(outputs["field"], outputs["value"])) == {"classify.label": "bug", "classify.confidence": "0.4"}
    assert "gate rule: classify.confidence < 0.7" in texts(at.caption)

    item = at.selectbox(key="rv_item").value
    at.radio(key=f"rv_action:{item}").set_value("edit").run()
    assert json.loads(at.text_area(key=f"rv_edit:{item}").value) == {"label": "bug", "confidence": 0.4}
    bad = '{"label": "feature", "confidence": 1}'
    at.text_area(key=f"rv_edit:{item}").input(bad)
    button(at, "Record the decision").click().run()
    assert "The edit is not valid for step 'classify'" in texts(at.error) and "label" in texts(at.error)
    assert at.text_area(key=f"rv_edit:{item}").value == bad  # kept, to be fixed
    assert [i.status for i in review_queue(engine, status=None)] == ["waiting", "waiting"]

    at.text_area(key=f"rv_edit:{item}").input('{"label": "billing", "confidence": 1}')
    button(at, "Record the decision").click().run()
    assert not at.error, texts(at.error)
    assert "Row 2 of run" in texts(at.success) and "edited by rita; the row continues from the gate" in texts(
        at.success
    )
    assert list(at.dataframe[0].value["row"]) == ["5"]
    decided = at.dataframe[-1].value
    assert (decided["row"][0], decided["decision"][0], decided["by"][0]) == ("2", "edited", "rita")
    assert json.loads(decided["edit"][0]) == {"label": "billing", "confidence": 1}

    assert wait_for(lambda: results(engine, waiting_run, [1])[0].status == "completed", 60)
    row = results(engine, waiting_run, [1])[0]
    assert row.values["classify.label"] == "billing" and row.outputs["reply"] == {
        "text": "Thanks, we are on it (billing)."
    }
    assert row.decisions["check"]["decided_by"] == "rita"

    at.run()
    item = at.selectbox(key="rv_item").value
    at.radio(key=f"rv_action:{item}").set_value("reject").run()
    button(at, "Record the decision").click().run()
    assert "Say why you reject this row" in texts(at.error)
    at.text_input(key=f"rv_reason:{item}").input("not a real ticket")
    button(at, "Record the decision").click().run()
    assert "rejected by rita; the row stops there" in texts(at.success)
    assert "Nothing is waiting for review here." in texts(at.info)
    assert wait_for(lambda: run_status(engine, waiting_run).state == "completed", 60), run_status(engine, waiting_run)
    status = run_status(engine, waiting_run)
    assert (status.rows["completed"], status.rows["rejected"]) == (5, 1)


def test_the_filters_narrow_the_queue(engine, waiting_run):
    at = page()
    at.selectbox(key="rv_age").select("over 1 hour").run()
    assert "0 row(s) waiting" in texts(at.caption) and "Nothing is waiting" in texts(at.info)
    at.selectbox(key="rv_age").select("any time")
    at.selectbox(key="rv_run").select(waiting_run).run()
    assert "2 row(s) waiting" in texts(at.caption)
    at.selectbox(key="rv_gate").select("check")
    at.selectbox(key="rv_pipeline").select(NAME).run()
    assert sorted(at.dataframe[0].value["row"]) == ["2", "5"]


ROLES = {"sam@acme.com": ["staff"], "rita@acme.com": ["reviewer"], "root@acme.com": ["admin"]}


def signed_in(email: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("WORKBENCH_ROLES", json.dumps(ROLES))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
    at.user = {"is_logged_in": True, "email": email, "email_verified": True, "sub": email, "iss": "https://idp"}
    return at.run()


@pytest.mark.parametrize(
    ("email", "allowed"), [("sam@acme.com", False), ("rita@acme.com", True), ("root@acme.com", True)]
)
def test_only_reviewers_and_admins_open_the_review_page(engine, email, allowed, monkeypatch):
    at = signed_in(email, monkeypatch)
    assert not at.exception
    if allowed:
        assert not at.error and [t.value for t in at.title] == ["Review"]
    else:
        assert "needs the 'reviewer' role" in texts(at.error) and not at.title


def test_a_reviewer_cannot_open_the_pipelines_page(engine, monkeypatch):
    monkeypatch.setenv("WORKBENCH_ROLES", json.dumps(ROLES))
    at = AppTest.from_file("../pages/pipelines.py", default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}
    at.user = {"is_logged_in": True, "email": "rita@acme.com", "email_verified": True, "sub": "r", "iss": "https://i"}
    at.run()
    assert "needs the 'author' role" in texts(at.error) and not at.title


def test_hostile_row_text_is_shown_as_data_never_as_markdown(engine):
    hostile = "![pixel](https://evil.example/p.png) [click](https://evil.example) :red[alarm] - urgent"
    run_id = start_run(app_services().pipeline_deps, PipelineStore(engine).get(NAME), [{"ticket": hostile}], "ada")
    assert wait_for(lambda: run_status(engine, run_id).state == "waiting_review", 60), run_status(engine, run_id)
    at = page()
    inputs = at.dataframe[1].value
    assert list(inputs["value"]) == [hostile]  # in a table cell, as typed
    drawn = [e.value for e in [*at.markdown, *at.caption, *at.info, *at.success, *at.error]]
    assert not any("](https://" in text or ":red[" in text for text in drawn)
