"""Chat page under AppTest: long conversations open on their newest messages, and only the owner's open."""

from pathlib import Path

from sqlalchemy import insert
from streamlit.testing.v1 import AppTest

from lib.chat import conversations as chat_store
from lib.core.db import make_engine, migrate
from lib.core.settings import load_settings
from lib.core.tables import ChatMessage

ROOT = Path(__file__).resolve().parent.parent


def app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["WORKBENCH_TEST"] = "1"
    return at


def long_conversation(owner: str, n: int) -> str:
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    chat = chat_store.create_session(engine, owner, title="Long one")
    rows = [
        {"session_id": chat.id, "role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(ChatMessage), rows)
    engine.dispose()
    return chat.id


def test_a_10000_message_conversation_opens_on_its_newest_page_and_shows_earlier_on_request(data_dir, monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "ada")
    long_conversation("ada", 10_000)
    at = app().run()
    next(b for b in at.sidebar.button if b.label == "Long one").click().run()
    assert not at.exception
    shown = [m.markdown[0].value for m in at.chat_message]
    assert len(shown) == chat_store.MESSAGES_PER_PAGE and shown[-1] == "message 9999" and shown[0] == "message 9950"
    next(b for b in at.button if b.label.startswith("Show earlier messages (9,950 more)")).click().run()
    shown = [m.markdown[0].value for m in at.chat_message]
    assert len(shown) == 2 * chat_store.MESSAGES_PER_PAGE and shown[0] == "message 9900"


def test_a_conversation_of_another_user_does_not_open_by_its_id(data_dir, monkeypatch):
    monkeypatch.setenv("WORKBENCH_USER", "bob")
    session_id = long_conversation("ada", 4)
    at = app()
    at.session_state["chat_session_id"] = session_id  # as if the id had been guessed or copied
    at.run()
    assert not at.exception
    assert at.chat_message == [] or all("message" not in m.markdown[0].value for m in at.chat_message)
    assert at.session_state["chat_session_id"] is None
