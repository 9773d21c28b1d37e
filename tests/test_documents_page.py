"""Documents page and the grounded Chat path under AppTest, on the real model and an embedded Chroma."""

from pathlib import Path

import pytest
from files import make_pdf
from shown import shown
from streamlit.testing.v1 import AppTest
from waiting import wait_for

from lib.chat import conversations as chat_store
from lib.core.settings import load_settings
from lib.documents.indexing import get_collection
from lib.services import build_services

ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = ["Welcome to Acme.", "Every employee gets 28 days of paid holiday per year.", "Receipts go to finance."]


def app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["WORKBENCH_TEST"] = "1"
    return at


@pytest.fixture
def indexed(local_embeddings):
    services = build_services(load_settings(), embeddings=local_embeddings)
    col = get_collection(services.engine, "Handbook", create=True)
    outcome = services.indexer.index_file(col, "handbook.pdf", make_pdf(HANDBOOK))
    assert outcome.status == "indexed"
    return services


def test_a_new_user_is_asked_to_create_a_collection_and_can(data_dir):
    at = app().run()
    at.switch_page("pages/documents.py").run()
    assert any("Create a collection first" in i.value for i in at.info)
    next(t for t in at.text_input if t.label == "New collection").input("HR policies").run()
    next(b for b in at.button if b.label == "Create collection").click().run()
    assert not at.exception
    assert "HR policies" in at.selectbox(key="upload_collection").options


def test_the_document_list_and_test_retrieval_show_pages_and_scores(indexed):
    at = app().run()
    at.switch_page("pages/documents.py").run()
    table = at.dataframe[0].value
    row = table[table["name"] == "handbook.pdf"].iloc[0]
    assert (row["collection"], row["pages"], row["status"], row["version"]) == ("Handbook", 3, "indexed", 1)
    at.text_input(key="test_query").input("How much paid holiday?").run()
    hits = at.dataframe[-1].value
    assert (hits.iloc[0]["document"], hits.iloc[0]["page"]) == ("handbook.pdf", 2)
    assert "28 days" in hits.iloc[0]["text"]


def test_chat_answers_from_a_collection_with_a_citation_to_the_right_page_and_saves_the_session(indexed, monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "bea")
    at = app().run()
    at.selectbox(key="chat_collection").select("Handbook").run()
    at.chat_input[0].set_value("How many days of paid holiday do employees get?").run()
    assert not at.exception
    answer = [m for m in at.chat_message if m.name == "assistant"][-1]
    assert "28 days of paid holiday" in shown(answer.markdown[0].value) and "[1]" in shown(answer.markdown[0].value)
    labels = [e.label for e in answer.expander]
    assert labels and shown(labels[0]).startswith("[1] handbook.pdf, p. 2")
    [session] = chat_store.list_sessions(indexed.engine, "bea")
    messages = chat_store.load_messages(indexed.engine, session.id, "bea")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["sources"][0]["page"] == 2 and messages[1]["request_id"]
    assert session.title.startswith("How many days")


def test_a_saved_conversation_can_be_resumed_from_the_sidebar(indexed, monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    chat = chat_store.create_session(indexed.engine, "ada")
    chat_store.add_message(indexed.engine, chat.id, "user", "An earlier question")
    chat_store.add_message(indexed.engine, chat.id, "assistant", "An earlier answer", summary="x · y")
    at = app().run()
    next(b for b in at.sidebar.button if b.label == "An earlier question").click().run()
    assert [m.markdown[0].value for m in at.chat_message] == ["An earlier question", "An earlier answer"]


def test_a_live_experiment_gives_each_user_a_sticky_answer_version_and_stopping_returns_production(indexed):
    from dataclasses import replace

    from lib.chat.turn import prepare_turn
    from lib.compare.live_ab import start_experiment, stop_experiment
    from lib.prompts.store import TemplateStore, ensure_builtin_templates

    ensure_builtin_templates(indexed.engine)
    store = TemplateStore(indexed.engine)
    v1 = store.get_by_label("rag.answer")
    v2 = store.save_version(replace(v1.template, system=v1.template.system + "\nBe brief."), "author", "brief")
    exp = start_experiment(indexed.engine, store, "rag.answer", v1.version, v2.version, "author")

    def turn(user):
        return prepare_turn([], "How much paid holiday?", 3000, "Handbook", indexed.retriever, store=store, user=user)

    seen = {}
    for user in [f"user{i}" for i in range(12)] * 2:
        t = turn(user)
        assert t.experiment_id == exp and t.template_name == "rag.answer"
        assert seen.setdefault(user, (t.variant, t.template_version)) == (t.variant, t.template_version)
    assert {v for v, _ in seen.values()} == {"A", "B"}
    assert {ver for _, ver in seen.values()} == {v1.version, v2.version}
    stop_experiment(indexed.engine, exp)
    after = turn("user0")
    assert (after.experiment_id, after.variant, after.template_version) == (None, None, v1.version)


def test_a_thumbs_down_answer_becomes_a_regression_case_in_a_test_set(indexed, monkeypatch):
    from lib.compare.test_sets import create_test_set, load_cases

    monkeypatch.setenv("WORKBENCH_USER", "cy")
    ts = create_test_set(indexed.engine, "Holiday regressions", ["question", "context"], "cy")
    at = app().run()
    at.selectbox(key="chat_collection").select("Handbook").run()
    at.chat_input[0].set_value("How many days of paid holiday do employees get?").run()
    [session] = chat_store.list_sessions(indexed.engine, "cy")
    answer = chat_store.load_messages(indexed.engine, session.id, "cy")[-1]
    at.session_state[f"fb-{answer['id']}"] = 0  # 👎, as the thumbs widget sets it
    at.run()
    next(b for b in at.button if b.label == "Add to test set").click().run()
    assert not at.exception
    [case] = load_cases(indexed.engine, ts)
    assert case.values["question"] == "How many days of paid holiday do employees get?"
    assert "28 days" in case.values["context"]


def test_a_failed_indexing_job_is_retried_from_its_kept_original_with_one_click(indexed, data_dir):
    from sqlalchemy.orm import Session

    from lib.core.tables import IngestJob
    from lib.documents.jobs import INTERRUPTED, create_job, recent_jobs

    kept = data_dir / "kept-policy.txt"
    kept.write_text("Parking permits are issued by the facilities desk on the ground floor.")
    col = get_collection(indexed.engine, "Handbook")
    job = create_job(indexed.engine, col, ["policy.txt"], "ada")
    with Session(indexed.engine) as s, s.begin():  # the state recovery leaves after a crash mid-indexing
        row = s.get(IngestJob, job.id)
        row.files = [{**row.files[0], "status": "failed", "error": INTERRUPTED, "original": str(kept)}]
        row.status = "failed"
    at = app().run()
    at.switch_page("pages/documents.py").run()
    next(b for b in at.button if b.label == "Retry failed files").click().run()
    assert not at.exception and not at.error
    newest = recent_jobs(indexed.engine, limit=1)[0]
    assert newest.id != job.id and [f["name"] for f in newest.files] == ["policy.txt"]
    # the retry runs on the queue, worked by this process's embedded workers, as an upload is
    assert wait_for(lambda: recent_jobs(indexed.engine, limit=1)[0].status not in ("queued", "running"), 120)
    assert recent_jobs(indexed.engine, limit=1)[0].status == "done"
    hits = indexed.retriever.search("Handbook", "Who issues parking permits?")
    assert hits[0].document == "policy.txt" and "facilities desk" in hits[0].text
