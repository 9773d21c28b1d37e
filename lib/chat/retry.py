"""Retry for a chat answer that failed (e.g. the connection dropped mid-answer): the same turn, run again in place."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lib.chat.prompt import PreparedTurn
from lib.chat.turn import ChatSetup, ChatTurn
from lib.gateway.client import CallContext


@dataclass(frozen=True)
class FailedAnswer:
    """What a failed answer showed (its partial text and error), and the turn that Retry runs again."""

    session_id: str
    text: str  # what reached the user before it failed ("" when nothing did)
    error: str
    request_id: str | None
    prepared: PreparedTurn
    model: str
    ctx: CallContext


def failed_answer(turn: ChatTurn) -> FailedAnswer | None:
    """The answer of a finished turn that failed, kept so it can be retried; None when it answered or was stopped."""
    if turn.error is None or turn.answer is not None:
        return None
    text = turn.result.text if turn.result is not None else ""
    return FailedAnswer(
        turn.session_id, text, str(turn.error), turn.error.request_id, turn.prepared, turn.model, turn.ctx
    )


def retry_turn(setup: ChatSetup, failed: FailedAnswer) -> ChatTurn:
    """The failed turn again, as a new call with the same prompt, model and context; iterate it to answer.

    Its question is already stored, so it is not stored again; the new answer takes the failed one's place.
    """
    ctx = replace(failed.ctx, metadata={**failed.ctx.metadata, "retry_of": failed.request_id})
    return ChatTurn(setup, failed.session_id, failed.prepared, failed.model, ctx)
