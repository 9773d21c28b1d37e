"""Chat: talk to a model, or ask a collection; answers stream in with citations, tokens and cost."""

import streamlit as st

from lib.chat import conversations as chat_store
from lib.chat.retry import FailedAnswer, failed_answer, retry_turn
from lib.chat.turn import (
    MAX_QUESTION_CHARS,
    ChatSetup,
    ChatTurn,
    QuestionTooLong,
    answer_caption,
    citations_for,
    source_label,
    start_turn,
)
from lib.compare.test_sets import TestSetError, add_case_from_message, list_test_sets
from lib.documents.indexing import list_collections
from lib.gateway.offline import HOW_TO_CONFIGURE, OFFLINE_LABEL
from lib.ui.assistant_view import ASSISTANT_MODE, CHAT_MODES, show_assistant
from lib.ui.resources import current_owner, current_user, get_services, get_settings, require_page, show_stored
from lib.ui.untrusted import show_untrusted, stream_untrusted, untrusted_label, untrusted_markdown

identity = require_page("pages/chat.py")
settings, user, owner = get_settings(), current_user(), current_owner()  # owner: whose conversations
services = get_services(settings)
engine, gateway = services.engine, services.gateway
setup = ChatSetup(
    engine,
    gateway,
    settings.history_token_budget,
    services.templates,  # production prompts, or a live A/B side
    services.retrieval(),
    lambda: services.retriever,  # built on the first question to a collection
)
state = st.session_state
state.setdefault("chat_session_id", None)

with st.sidebar:
    st.subheader("Conversations")
    if st.button("New conversation", icon=":material/add:", use_container_width=True):
        state.chat_session_id = None
    for listed in chat_store.list_sessions(engine, owner, limit=20):
        current = listed.id == state.chat_session_id
        kind = "primary" if current else "tertiary"
        if st.button(untrusted_label(listed.title), key=f"chat-{listed.id}", type=kind, use_container_width=True):
            state.chat_session_id = listed.id
            st.rerun()

st.title("Chat")
st.radio("Mode", CHAT_MODES, key="chat_mode", horizontal=True, label_visibility="collapsed")
collections = [c.name for c in list_collections(engine)]
left, right = st.columns(2)
model = left.selectbox("Model", gateway.model_names(), key="chat_model")
if st.session_state.get("chat_mode") == ASSISTANT_MODE:  # tools, a step timeline and confirmations
    show_assistant(services, identity, model)
    st.stop()
collection = right.selectbox(
    "Answer from collection",
    [None, *collections],
    key="chat_collection",
    format_func=lambda c: "None (plain chat)" if c is None else c,
)
if model.startswith("offline/"):
    st.info(
        f"**{OFFLINE_LABEL}s.** Answers quote the most relevant sentences; nothing is generated. " + HOW_TO_CONFIGURE,
        icon=":material/cloud_off:",
    )

chat = chat_store.get_session(engine, state.chat_session_id, owner) if state.chat_session_id else None
session_id = state.chat_session_id = chat.id if chat else None  # None when deleted elsewhere
if chat:
    with st.expander("This conversation"):
        title = st.text_input("Title", chat.title, key=f"title-{chat.id}")
        c1, c2 = st.columns(2)
        if c1.button("Rename", key="rename") and title != chat.title:
            chat_store.rename_session(engine, chat.id, title, owner)
            st.rerun()
        if c2.button("Delete conversation", key="delete", type="secondary"):
            chat_store.delete_session(engine, chat.id, owner)
            state.chat_session_id = None
            st.rerun()


def show_answer_extras(turn: dict) -> None:
    for src in citations_for(turn["content"], turn["sources"]):
        with st.expander(untrusted_label(source_label(src))):
            show_stored("> " + src["text"].replace("\n", "\n> "))
    if caption := answer_caption(turn):
        st.caption(caption)
    mid, stored = turn["id"], turn["rating"]
    default = None if stored is None else int(stored == 1)
    rating = st.feedback("thumbs", key=f"fb-{mid}", on_change=save_feedback, args=(mid,), default=default)
    if rating is not None:
        st.text_input("What was wrong or right? (optional)", key=f"fbc-{mid}", on_change=save_feedback, args=(mid,))
    if rating == 0 and (sets := {s["name"]: s["id"] for s in list_test_sets(engine)}):
        c1, c2 = st.columns([3, 1])
        target = c1.selectbox("Keep as a regression case in", list(sets), key=f"ts-{mid}")
        if c2.button("Add to test set", key=f"tsb-{mid}"):
            try:
                add_case_from_message(engine, sets[target], mid)
                st.toast(f"Added to {untrusted_label(target)}.")
            except TestSetError as exc:
                st.error(untrusted_markdown(str(exc)))


def save_feedback(message_id: int) -> None:
    rating = state.get(f"fb-{message_id}")
    if rating is not None:
        chat_store.set_feedback(engine, message_id, 1 if rating == 1 else -1, state.get(f"fbc-{message_id}"), owner)


shown = state.get(f"chat_shown-{session_id}", chat_store.MESSAGES_PER_PAGE)
if session_id and (earlier := chat_store.count_messages(engine, session_id, owner) - shown) > 0:
    more = {f"chat_shown-{session_id}": shown + chat_store.MESSAGES_PER_PAGE}
    st.button(
        f"Show earlier messages ({earlier:,} more)", icon=":material/expand_less:", on_click=state.update, args=(more,)
    )
for row in chat_store.load_messages(engine, session_id, owner, last=shown) if session_id else []:
    with st.chat_message(row["role"]):
        show_stored(row["content"])
        if row["role"] == "assistant":
            show_answer_extras(row)


def show_turn(turn: ChatTurn) -> None:
    stream_untrusted(turn)
    state.chat_failed = failed_answer(turn)  # kept, with a Retry, until the next answer in this tab
    if state.chat_failed is not None:
        show_failure(state.chat_failed)
    for notice in turn.notices:
        st.warning(notice, icon=":material/savings:")
    if turn.masked_note:
        st.caption(turn.masked_note)
    if turn.answer is not None:
        show_answer_extras(chat_store.message_row(turn.answer))


def show_failure(failed: FailedAnswer) -> None:
    st.error(f"{untrusted_markdown(failed.error)}\n\nRequest id: `{failed.request_id}`", icon=":material/error:")
    retry = {"chat_retry": failed.request_id}
    st.button(
        "Retry", key=f"retry-{failed.request_id}", icon=":material/refresh:", on_click=state.update, args=(retry,)
    )


if (failed := state.get("chat_failed")) is not None and failed.session_id == session_id:
    with st.chat_message("assistant"):
        if state.get("chat_retry") == failed.request_id:  # the failed answer is replaced by the new one
            with retry_turn(setup, failed) as turn:
                show_turn(turn)
        else:
            show_untrusted(failed.text)
            show_failure(failed)

if question := st.chat_input("Ask a question" if collection else "Ask anything", max_chars=MAX_QUESTION_CHARS):
    with st.chat_message("user"):
        show_untrusted(question)
    try:
        turn = start_turn(setup, question, model, user=user, owner=owner, session_id=session_id, collection=collection)
    except QuestionTooLong as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    state.chat_session_id = turn.session_id
    with st.chat_message("assistant"), turn:  # leaving it unfinished (Stop, a rerun) logs the call as aborted
        show_turn(turn)
