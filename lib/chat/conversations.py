"""Saved conversations: sessions, messages with their sources, and 👍/👎 feedback.

Every function that reads or changes one conversation takes the acting `owner` (`Identity.owner`: the provider's
subject when signed in) and treats another owner's conversation as one that does not exist, so an id taken
from a URL, a log or a guess reveals nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lib.core.tables import ChatMessage, ChatSession, Feedback, utcnow


class ChatStoreError(ValueError):
    """A conversation or answer does not exist (or is not the acting user's), or the input is invalid."""


GONE = "That conversation no longer exists."
MESSAGES_PER_PAGE = 50  # Chat shows a conversation's newest messages, and this many more per "show earlier"


def _session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def _text(value: str) -> str:
    """Text as it can be stored everywhere: PostgreSQL refuses NUL characters (SQLite would keep them)."""
    return value.replace("\x00", "")


def create_session(
    engine: Engine, user: str | None, title: str = "New conversation", collection: str | None = None
) -> ChatSession:
    """Start a conversation."""
    with _session(engine) as s, s.begin():
        chat = ChatSession(id=uuid.uuid4().hex, user=user, title=_text(title)[:255], collection=collection)
        s.add(chat)
    return chat


def list_sessions(engine: Engine, user: str | None, limit: int = 50) -> list[ChatSession]:
    """A user's conversations, most recently active first."""
    with _session(engine) as s:
        return list(
            s.scalars(
                select(ChatSession).where(ChatSession.user == user).order_by(ChatSession.updated_at.desc()).limit(limit)
            )
        )


def get_session(engine: Engine, session_id: str, owner: str | None) -> ChatSession | None:
    """One of `owner`'s conversations, or None (also for another owner's)."""
    with _session(engine) as s:
        chat = s.get(ChatSession, session_id)
    return chat if chat is not None and chat.user == owner else None


def _owned(s: Session, session_id: str, owner: str | None) -> ChatSession:
    chat = s.get(ChatSession, session_id)
    if chat is None or chat.user != owner:
        raise ChatStoreError(GONE)
    return chat


def rename_session(engine: Engine, session_id: str, title: str, owner: str | None) -> None:
    """Give one of `owner`'s conversations a new title."""
    title = _text(title).strip()
    if not title:
        raise ChatStoreError("A conversation title cannot be empty.")
    with _session(engine) as s, s.begin():
        _owned(s, session_id, owner).title = title[:255]


def delete_session(engine: Engine, session_id: str, owner: str | None) -> None:
    """Delete one of `owner`'s conversations with its messages and feedback."""
    with _session(engine) as s, s.begin():
        chat = _owned(s, session_id, owner)
        ids = list(s.scalars(select(ChatMessage.id).where(ChatMessage.session_id == session_id)))
        if ids:
            for fb in s.scalars(select(Feedback).where(Feedback.message_id.in_(ids))):
                s.delete(fb)
            for msg in s.scalars(select(ChatMessage).where(ChatMessage.session_id == session_id)):
                s.delete(msg)
        s.delete(chat)


def add_message(
    engine: Engine,
    session_id: str,
    role: str,
    content: str,
    *,
    sources: list[dict] | None = None,
    request_id: str | None = None,
    summary: str | None = None,
    offline: bool = False,
    collection: str | None = None,
) -> ChatMessage:
    """Append a message; the first question titles the conversation."""
    content, summary = _text(content), None if summary is None else _text(summary)
    with _session(engine) as s, s.begin():
        chat = s.get(ChatSession, session_id)
        if chat is None:
            raise ChatStoreError("That conversation no longer exists.")
        msg = ChatMessage(
            session_id=session_id,
            role=role,
            content=content,
            sources=sources,
            request_id=request_id,
            summary=summary,
            offline=offline,
        )
        s.add(msg)
        if role == "user" and chat.title == "New conversation":
            lines = content.strip().splitlines()  # none when the question is blank
            chat.title = (lines[0][:80] if lines else "") or chat.title
        chat.updated_at = utcnow()
        if collection is not None:
            chat.collection = collection
    return msg


def load_messages(engine: Engine, session_id: str, owner: str | None, last: int | None = None) -> list[dict[str, Any]]:
    """`owner`'s conversation as dicts (role, content, sources, summary, offline, id, request_id, rating), oldest
    first; only its `last` messages when given (a 10,000-message conversation opens on its newest page)."""
    with _session(engine) as s:
        _owned(s, session_id, owner)
        query = (
            select(ChatMessage, Feedback.rating)
            .outerjoin(Feedback, Feedback.message_id == ChatMessage.id)
            .where(ChatMessage.session_id == session_id)
            .order_by(ChatMessage.id.desc())
        )
        rows = s.execute(query if last is None else query.limit(max(0, last))).all()
    return [message_row(m, rating) for m, rating in reversed(rows)]


def load_history(engine: Engine, session_id: str, owner: str | None, last: int) -> list[dict[str, str]]:
    """The role and text of the `last` messages of `owner`'s conversation, oldest first: what the next prompt needs
    (no sources, no feedback: reading and decoding those took ~6 ms of a turn for 200 messages)."""
    with _session(engine) as s:
        _owned(s, session_id, owner)
        rows = s.execute(
            select(ChatMessage.role, ChatMessage.content)
            .where(ChatMessage.session_id == session_id)
            .order_by(ChatMessage.id.desc())
            .limit(max(0, last))
        ).all()
    return [{"role": role, "content": content} for role, content in reversed(rows)]


def count_messages(engine: Engine, session_id: str, owner: str | None) -> int:
    """How many messages `owner`'s conversation holds."""
    with _session(engine) as s:
        _owned(s, session_id, owner)
        return s.scalar(select(func.count(ChatMessage.id)).where(ChatMessage.session_id == session_id)) or 0


def message_row(message: ChatMessage, rating: int | None = None) -> dict[str, Any]:
    """A stored message as `load_messages` gives it."""
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "sources": message.sources or [],
        "summary": message.summary,
        "offline": message.offline,
        "request_id": message.request_id,
        "rating": rating,
    }


def set_feedback(
    engine: Engine, message_id: int, rating: int, comment: str | None = None, user: str | None = None
) -> None:
    """Record (or change) 👍 (+1) or 👎 (-1) on an answer in `user`'s own conversation."""
    if rating not in (1, -1):
        raise ChatStoreError("Feedback is +1 (helpful) or -1 (not helpful).")
    with _session(engine) as s, s.begin():
        msg = s.get(ChatMessage, message_id)
        chat = s.get(ChatSession, msg.session_id) if msg is not None else None
        if msg is None or msg.role != "assistant" or chat is None or chat.user != user:
            raise ChatStoreError("Feedback goes on an answer that exists, in one of your conversations.")
        fb = s.scalar(select(Feedback).where(Feedback.message_id == message_id))
        if fb is None:
            fb = Feedback(message_id=message_id, request_id=msg.request_id)
            s.add(fb)
        fb.rating, fb.comment, fb.user, fb.created_at = rating, (_text(comment or "") or None), user, utcnow()
