"""The Chat page's rerun with many saved conversations: it reads and draws only what it shows, and stored text is
made safe once per process, not on every rerun (bench/chat_turn.py measures the time)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, insert
from streamlit.testing.v1 import AppTest

from lib.chat import conversations as chat_store
from lib.core.db import make_engine, migrate
from lib.core.settings import load_settings
from lib.core.tables import ChatMessage
from lib.ui import resources
from lib.ui.untrusted import untrusted_markdown

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "See ![tracker](https://evil.example/pixel.png) and [this](https://evil.example) [1]"
SOURCE = {
    "number": 1,
    "chunk_id": "d1-v1-c0",
    "document_id": 1,
    "document": "notes.txt",
    "page": None,
    "chunk_index": 0,
    "text": "A passage with ![img](https://evil.example/p.png) inside.",
    "score": 0.5,
}


def seed(owner: str, conversations: int, messages: int) -> str:
    """`conversations` of `messages` each (answers cite one passage); the id of the most recent one."""
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    last = ""
    for c in range(conversations):
        last = chat_store.create_session(engine, owner, title=f"Conversation {c}").id
        rows = [
            {
                "session_id": last,
                "role": "user" if i % 2 == 0 else "assistant",
                "content": f"question {c}-{i}" if i % 2 == 0 else HOSTILE,
                "sources": None if i % 2 == 0 else [SOURCE],
            }
            for i in range(messages)
        ]
        with engine.begin() as conn:
            conn.execute(insert(ChatMessage), rows)
    engine.dispose()
    return last


def test_a_rerun_with_50_conversations_of_200_messages_draws_only_its_page_and_escapes_stored_text_once(
    data_dir, monkeypatch
):
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    session_id = seed("ada", 50, 200)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["WORKBENCH_TEST"] = "1"
    at.session_state["chat_session_id"] = session_id
    at.run()
    assert not at.exception
    assert len(at.chat_message) == chat_store.MESSAGES_PER_PAGE  # of 200
    listed = [b for b in at.sidebar.button if b.label.startswith("Conversation")]
    assert len(listed) == 20  # of 50
    answers = [m for m in at.chat_message if m.name == "assistant"]
    passage = next(e for e in at.expander if "notes" in e.label)
    # exactly what show_untrusted draws: the same escaping, image and links inert
    assert answers[0].markdown[0].value == untrusted_markdown(HOSTILE) != HOSTILE
    assert passage.markdown[0].value == untrusted_markdown("> " + SOURCE["text"])

    rows_read: list[int] = []
    engine = resources.get_engine(load_settings())

    def count_rows(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM chat_messages" in statement:
            rows_read.append(-1)  # a read of messages; its size is checked by what is drawn

    event.listen(engine, "after_cursor_execute", count_rows)
    misses = resources._stored_markdown.cache_info().misses
    try:
        at.run()  # the rerun after an answer: same conversation, same messages
    finally:
        event.remove(engine, "after_cursor_execute", count_rows)
    assert not at.exception
    assert len(at.chat_message) == chat_store.MESSAGES_PER_PAGE
    assert resources._stored_markdown.cache_info().misses == misses  # nothing escaped and parsed again
    assert len(rows_read) == 2  # one count and one page of the newest messages, not the conversation
    assert at.chat_message[1].markdown[0].value == untrusted_markdown(HOSTILE)
