"""Saved conversations on SQLite and PostgreSQL: list, resume, rename, delete, feedback."""

import pytest

from lib.chat import conversations as chat_store
from lib.chat.conversations import ChatStoreError
from lib.chat.turn import citations_for

SOURCES = [
    {
        "number": 1,
        "chunk_id": "d1-v1-c0",
        "document_id": 1,
        "document": "a.pdf",
        "page": 3,
        "chunk_index": 0,
        "text": "alpha",
        "score": 0.9,
        "flagged": False,
    },
    {
        "number": 2,
        "chunk_id": "d2-v1-c4",
        "document_id": 2,
        "document": "b.txt",
        "page": None,
        "chunk_index": 4,
        "text": "beta",
        "score": 0.8,
        "flagged": True,
    },
]


def test_a_conversation_is_titled_by_its_first_question_and_keeps_sources(any_engine):
    chat = chat_store.create_session(any_engine, "ada", collection="Docs")
    chat_store.add_message(any_engine, chat.id, "user", "What is alpha?\nMore detail")
    msg = chat_store.add_message(any_engine, chat.id, "assistant", "Alpha [1].", sources=SOURCES, request_id="r1")
    [listed] = chat_store.list_sessions(any_engine, "ada")
    assert listed.title == "What is alpha?" and listed.collection == "Docs"
    messages = chat_store.load_messages(any_engine, chat.id, "ada")
    assert messages[1]["sources"] == SOURCES and messages[1]["id"] == msg.id and messages[1]["rating"] is None
    assert chat_store.list_sessions(any_engine, "bob") == []


def test_feedback_is_stored_changed_and_tied_to_the_call(any_engine):
    chat = chat_store.create_session(any_engine, "ada")
    msg = chat_store.add_message(any_engine, chat.id, "assistant", "Answer", request_id="req-9")
    chat_store.set_feedback(any_engine, msg.id, -1, "wrong page", "ada")
    chat_store.set_feedback(any_engine, msg.id, 1, None, "ada")
    assert chat_store.load_messages(any_engine, chat.id, "ada")[0]["rating"] == 1
    with pytest.raises(ChatStoreError):
        chat_store.set_feedback(any_engine, msg.id, 5, user="ada")


def test_rename_and_delete_remove_everything_of_the_conversation(any_engine):
    chat = chat_store.create_session(any_engine, "ada")
    msg = chat_store.add_message(any_engine, chat.id, "assistant", "Answer")
    chat_store.set_feedback(any_engine, msg.id, -1, user="ada")
    chat_store.rename_session(any_engine, chat.id, "Renamed", "ada")
    assert chat_store.get_session(any_engine, chat.id, "ada").title == "Renamed"
    with pytest.raises(ChatStoreError, match="cannot be empty"):
        chat_store.rename_session(any_engine, chat.id, "  ", "ada")
    chat_store.delete_session(any_engine, chat.id, "ada")
    assert chat_store.get_session(any_engine, chat.id, "ada") is None
    with pytest.raises(ChatStoreError, match="no longer exists"):
        chat_store.load_messages(any_engine, chat.id, "ada")


def test_a_citation_number_always_points_at_the_source_it_names():
    cited = citations_for("Beta first [2], then alpha [1][2], and a bogus [7].", SOURCES)
    assert [(c["number"], c["document"]) for c in cited] == [(2, "b.txt"), (1, "a.pdf")]


def test_nobody_reads_or_changes_another_users_conversation_by_its_id(any_engine):
    chat = chat_store.create_session(any_engine, "ada-subject", title="Salary talk")
    chat_store.add_message(any_engine, chat.id, "user", "My salary is 90k")
    answer = chat_store.add_message(any_engine, chat.id, "assistant", "Noted.")
    assert chat_store.get_session(any_engine, chat.id, "bob-subject") is None
    for attempt in (
        lambda: chat_store.load_messages(any_engine, chat.id, "bob-subject"),
        lambda: chat_store.count_messages(any_engine, chat.id, "bob-subject"),
        lambda: chat_store.rename_session(any_engine, chat.id, "Mine now", "bob-subject"),
        lambda: chat_store.delete_session(any_engine, chat.id, "bob-subject"),
        lambda: chat_store.set_feedback(any_engine, answer.id, -1, "bad", "bob-subject"),
    ):
        with pytest.raises(ChatStoreError):
            attempt()
    kept = chat_store.get_session(any_engine, chat.id, "ada-subject")
    assert kept is not None and kept.title == "Salary talk"
    assert [m["rating"] for m in chat_store.load_messages(any_engine, chat.id, "ada-subject")] == [None, None]


def test_a_long_conversation_loads_only_its_newest_messages_in_order(any_engine):
    chat = chat_store.create_session(any_engine, "ada")
    for i in range(30):
        chat_store.add_message(any_engine, chat.id, "user" if i % 2 == 0 else "assistant", f"message {i}")
    newest = chat_store.load_messages(any_engine, chat.id, "ada", last=5)
    assert [m["content"] for m in newest] == [f"message {i}" for i in range(25, 30)]
    assert chat_store.count_messages(any_engine, chat.id, "ada") == 30
    assert len(chat_store.load_messages(any_engine, chat.id, "ada")) == 30
