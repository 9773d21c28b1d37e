"""A whole chat turn without Streamlit: question in, stored answer (with its sources) and its call-log row out."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from fake_openai import Reply, Status
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.chat import conversations as chat_store
from lib.chat.turn import ChatSetup, start_turn
from lib.compare.live_ab import start_experiment
from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.documents.citations import Source
from lib.documents.retrieval import RetrievalSettings
from lib.gateway.client import Gateway
from lib.prompts.store import TemplateStore, ensure_builtin_templates

MODEL = "acme/fake-small"
HOLIDAY = Source(1, "d1-v1-c2", 1, "handbook.pdf", 2, 2, "Every employee gets 28 days of paid holiday per year.", 0.9)


class ShelfRetriever:
    """A retriever with one fixed answer; records what it was asked."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources, self.asked = sources, []

    def search(self, collection: str, query: str, settings: RetrievalSettings) -> list[Source]:
        self.asked.append((collection, query, settings.k))
        return self.sources


def served_setup(engine, server, **fields) -> ChatSetup:
    """A setup whose gateway calls the loopback server (model acme/fake-small), with the stored prompts."""
    providers = {"acme": {"base_url": server.base_url, "api_key": "sk-test", "models": ["fake-small"], "timeout_s": 5}}
    settings = load_settings(env={"WORKBENCH_PROVIDERS": json.dumps(providers)})
    ensure_builtin_templates(engine)
    gateway = Gateway(settings, engine, sleep=lambda s: None)
    return ChatSetup(engine, gateway, budget=3000, store=TemplateStore(engine), **fields)


def calls(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


def test_a_turn_stores_the_question_and_the_streamed_answer_tied_to_its_call_log_row(any_engine, fake):
    fake.enqueue(Reply("Paris is the capital of France.", prompt_tokens=20, completion_tokens=7))
    turn = start_turn(served_setup(any_engine, fake), "What is the capital of France?", MODEL, user="ada")
    assert "".join(turn) == "Paris is the capital of France."
    assert turn.error is None and turn.answer is not None
    question, answer = chat_store.load_messages(any_engine, turn.session_id, "ada")
    assert (question["role"], question["content"]) == ("user", "What is the capital of France?")
    assert (answer["role"], answer["content"], answer["sources"]) == (
        "assistant",
        "Paris is the capital of France.",
        [],
    )
    assert answer["summary"].startswith("acme/fake-small · 20 in / 7 out tokens")
    [row] = calls(any_engine)
    assert (row.request_id, row.session_id, row.user, row.feature, row.status) == (
        answer["request_id"],
        turn.session_id,
        "ada",
        "chat",
        "ok",
    )
    assert (row.template_name, row.template_version, row.prompt_tokens, row.completion_tokens) == (
        "chat.system",
        1,
        20,
        7,
    )
    [session] = chat_store.list_sessions(any_engine, "ada")
    assert session.id == turn.session_id and session.title == "What is the capital of France?"


def test_the_next_question_in_a_conversation_is_sent_after_the_earlier_turns(fresh_engine, fake):
    fake.enqueue(Reply("Paris."), Reply("About two million."))
    setup = served_setup(fresh_engine, fake)
    first = start_turn(setup, "What is the capital of France?", MODEL, user="ada")
    list(first)
    second = start_turn(setup, "How many people live there?", MODEL, user="ada", session_id=first.session_id)
    list(second)
    sent = [(m["role"], m["content"]) for m in fake.requests[-1]["json"]["messages"]]
    assert sent[1:] == [
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
        ("user", "How many people live there?"),
    ]
    assert [m["content"] for m in chat_store.load_messages(fresh_engine, first.session_id, "ada")][
        -1
    ] == "About two million."


def test_a_question_to_a_collection_stores_the_answer_with_the_sources_it_was_given(fresh_engine, fake):
    fake.enqueue(Reply("Employees get 28 days [1]."))
    shelf = ShelfRetriever([HOLIDAY])
    setup = served_setup(fresh_engine, fake, retrieval=RetrievalSettings(k=3), retriever=lambda: shelf)
    turn = start_turn(setup, "How many days of paid holiday?", MODEL, user="bea", collection="Handbook")
    assert "".join(turn) == "Employees get 28 days [1]."
    assert shelf.asked == [("Handbook", "How many days of paid holiday?", 3)]
    assert HOLIDAY.text in fake.requests[-1]["json"]["messages"][-1]["content"]
    answer = chat_store.load_messages(fresh_engine, turn.session_id, "bea")[-1]
    assert answer["sources"] == [HOLIDAY.to_dict()] and answer["offline"] is False
    [row] = calls(fresh_engine)
    assert (row.request_id, row.template_name) == (answer["request_id"], "rag.answer")
    assert row.meta["collection"] == "Handbook"
    assert chat_store.get_session(fresh_engine, turn.session_id, "bea").collection == "Handbook"


def test_a_plain_question_never_asks_for_the_retriever(fresh_engine, fake):
    def no_retriever():
        raise AssertionError("plain chat built the retriever")

    turn = start_turn(served_setup(fresh_engine, fake, retriever=no_retriever), "Hi", MODEL, user="ada")
    assert "".join(turn) == "Hello from the fake model."


def test_a_failed_call_keeps_the_question_stores_no_answer_and_names_the_logged_request(fresh_engine, fake):
    fake.enqueue(Status(401))
    turn = start_turn(served_setup(fresh_engine, fake), "Hello?", MODEL, user="ada")
    assert list(turn) == []
    assert turn.error is not None and turn.answer is None
    assert [m["role"] for m in chat_store.load_messages(fresh_engine, turn.session_id, "ada")] == ["user"]
    [row] = calls(fresh_engine)
    assert (row.status, row.request_id) == ("error", turn.error.request_id)


def test_a_stopped_answer_is_logged_as_aborted_and_not_stored(fresh_engine, fake):
    fake.enqueue(Reply("one two three four five six seven eight"))
    turn = start_turn(served_setup(fresh_engine, fake), "Count slowly.", MODEL, user="ada")
    with turn:
        assert next(iter(turn))  # the first piece reached the user, then they pressed Stop
    assert turn.answer is None and turn.result is not None and turn.result.status == "aborted"
    assert [m["role"] for m in chat_store.load_messages(fresh_engine, turn.session_id, "ada")] == ["user"]
    [row] = calls(fresh_engine)
    assert (row.status, row.request_id) == ("aborted", turn.result.request_id)


def test_a_live_experiment_on_the_chat_prompt_is_recorded_on_each_users_call(fresh_engine, fake):
    setup = served_setup(fresh_engine, fake)
    v1 = setup.store.get_by_label("chat.system")
    v2 = setup.store.save_version(replace(v1.template, system=v1.template.system + "\nBe brief."), "lead", "brief")
    exp = start_experiment(fresh_engine, setup.store, "chat.system", v1.version, v2.version, "lead")
    turns = [start_turn(setup, f"Question {i}", MODEL, user=f"user{i}") for i in range(12)]
    for turn in turns:
        list(turn)
    rows = calls(fresh_engine)
    assert {r.experiment_id for r in rows} == {exp}
    assert {(r.variant, r.template_version) for r in rows} == {("A", v1.version), ("B", v2.version)}
    briefed = [r["json"]["messages"][0]["content"].endswith("Be brief.") for r in fake.requests]
    assert briefed == [r.variant == "B" for r in rows]


def test_a_question_to_a_collection_needs_a_retriever(fresh_engine, fake):
    with pytest.raises(ValueError, match="retriever"):
        start_turn(served_setup(fresh_engine, fake), "Anything?", MODEL, user="ada", collection="Handbook")


def test_a_turn_keys_the_conversation_by_owner_and_refuses_someone_elses(fresh_engine, fake):
    fake.enqueue(Reply("Paris."))
    setup = served_setup(fresh_engine, fake)
    first = start_turn(setup, "Capital of France?", MODEL, user="ada@example.com", owner="sub-ada")
    list(first)
    [row] = calls(fresh_engine)
    assert row.user == "ada@example.com"  # the call log keeps the verified email
    assert [s.id for s in chat_store.list_sessions(fresh_engine, "sub-ada")] == [first.session_id]
    with pytest.raises(chat_store.ChatStoreError):
        start_turn(
            setup, "What did Ada ask?", MODEL, user="bob@example.com", owner="sub-bob", session_id=first.session_id
        )
    assert len(chat_store.load_messages(fresh_engine, first.session_id, "sub-ada")) == 2
    assert len(fake.requests) == 1


def test_a_question_over_the_limit_is_refused_before_anything_is_stored_or_sent(fresh_engine, fake):
    from lib.chat.turn import MAX_QUESTION_CHARS, QuestionTooLong

    with pytest.raises(QuestionTooLong, match="limit is 20,000"):
        start_turn(served_setup(fresh_engine, fake), "x" * (MAX_QUESTION_CHARS + 1), "acme/fake-small", user="ada")
    assert chat_store.list_sessions(fresh_engine, "ada") == [] and calls(fresh_engine) == [] and not fake.requests
