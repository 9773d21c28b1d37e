"""The history a question is sent with: the role and text of the conversation's newest messages, oldest first, read
without their sources and feedback (a 200-message conversation read in full cost ~6 ms of every turn)."""

import pytest

from lib.chat import conversations as chat_store
from lib.chat.conversations import ChatStoreError

SOURCE = {"number": 1, "chunk_id": "d1-v1-c0", "document_id": 1, "document": "a.pdf", "page": 3, "chunk_index": 0}


def test_the_history_is_the_newest_messages_role_and_text_in_order_as_load_messages_has_them(any_engine):
    chat = chat_store.create_session(any_engine, "ada")
    for i in range(30):
        role = "user" if i % 2 == 0 else "assistant"
        sources = None if role == "user" else [{**SOURCE, "text": f"passage {i}", "score": 0.5}]
        chat_store.add_message(any_engine, chat.id, role, f"message {i}", sources=sources)
    history = chat_store.load_history(any_engine, chat.id, "ada", last=5)
    assert history == [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(25, 30)
    ]
    full = chat_store.load_messages(any_engine, chat.id, "ada", last=12)
    assert chat_store.load_history(any_engine, chat.id, "ada", last=12) == [
        {"role": m["role"], "content": m["content"]} for m in full
    ]
    assert chat_store.load_history(any_engine, chat.id, "ada", last=0) == []


def test_the_history_of_another_users_conversation_is_not_read(any_engine):
    chat = chat_store.create_session(any_engine, "ada")
    chat_store.add_message(any_engine, chat.id, "user", "My salary is 90k")
    with pytest.raises(ChatStoreError):
        chat_store.load_history(any_engine, chat.id, "bob", last=10)
