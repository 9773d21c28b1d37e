"""Chat: talk to a model, or ask a collection; answers stream in with citations, tokens and cost."""

import streamlit as st

from lib.chat import conversations as chat_store
from lib.chat.turn import citations_for, describe_result, prepare_turn, source_label
from lib.compare.test_sets import TestSetError, add_case_from_message, list_test_sets
from lib.documents.indexing import list_collections
from lib.gateway.client import CallContext
from lib.gateway.errors import GatewayError
from lib.gateway.offline import HOW_TO_CONFIGURE, OFFLINE_LABEL
from lib.prompts.store import TemplateStore
from lib.ui.resources import (
    current_user,
    get_engine,
    get_gateway,
    get_retriever,
    get_settings,
    require_page,
    retrieval_settings,
)

require_page("pages/chat.py")
settings = get_settings()
engine, gateway, user = get_engine(settings), get_gateway(settings), current_user()
state = st.session_state
state.setdefault("chat_session_id", None)

with st.sidebar:
    st.subheader("Conversations")
    if st.button("New conversation", icon=":material/add:", use_container_width=True):
        state.chat_session_id = None
    for chat in chat_store.list_sessions(engine, user, limit=20):
        current = chat.id == state.chat_session_id
        if st.button(
            chat.title, key=f"chat-{chat.id}", type="primary" if current else "tertiary", use_container_width=True
        ):
            state.chat_session_id = chat.id
            st.rerun()

st.title("Chat")
collections = [c.name for c in list_collections(engine)]
left, mid = st.columns(2)
model = left.selectbox("Model", gateway.model_names(), key="chat_model")
collection = mid.selectbox(
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

session_id = state.chat_session_id
if session_id and chat_store.get_session(engine, session_id) is None:
    session_id = state.chat_session_id = None  # deleted elsewhere
if session_id:
    with st.expander("This conversation"):
        chat = chat_store.get_session(engine, session_id)
        title = st.text_input("Title", chat.title, key=f"title-{session_id}")
        c1, c2 = st.columns(2)
        if c1.button("Rename", key="rename") and title != chat.title:
            chat_store.rename_session(engine, session_id, title)
            st.rerun()
        if c2.button("Delete conversation", key="delete", type="secondary"):
            chat_store.delete_session(engine, session_id)
            state.chat_session_id = None
            st.rerun()
history = chat_store.load_messages(engine, session_id) if session_id else []


def show_answer_extras(turn: dict) -> None:
    for src in citations_for(turn["content"], turn["sources"]):
        with st.expander(source_label(src) + ("  ⚠ flagged" if src.get("flagged") else "")):
            st.markdown(f"> {src['text']}".replace("\n", "\n> "))
    if turn.get("summary"):
        st.caption((f"{OFFLINE_LABEL} · " if turn.get("offline") else "") + turn["summary"])
    if turn.get("id"):
        mid, stored = turn["id"], turn.get("rating")
        rating = st.feedback(
            "thumbs",
            key=f"fb-{mid}",
            on_change=save_feedback,
            args=(mid,),
            default=None if stored is None else int(stored == 1),
        )
        if rating is not None:
            st.text_input("What was wrong or right? (optional)", key=f"fbc-{mid}", on_change=save_feedback, args=(mid,))
        if rating == 0 and (sets := {s["name"]: s["id"] for s in list_test_sets(engine)}):
            c1, c2 = st.columns([3, 1])
            target = c1.selectbox("Keep as a regression case in", list(sets), key=f"ts-{mid}")
            if c2.button("Add to test set", key=f"tsb-{mid}"):
                try:
                    add_case_from_message(engine, sets[target], mid)
                    st.toast(f"Added to {target}.")
                except TestSetError as exc:
                    st.error(str(exc))


def save_feedback(message_id: int) -> None:
    rating = state.get(f"fb-{message_id}")
    if rating is not None:
        chat_store.set_feedback(engine, message_id, 1 if rating == 1 else -1, state.get(f"fbc-{message_id}"), user)


for turn in history:
    with st.chat_message(turn["role"]):
        st.markdown(turn["content"])
        if turn["role"] == "assistant":
            show_answer_extras(turn)

if question := st.chat_input("Ask a question" if collection else "Ask anything"):
    if not session_id:
        session_id = state.chat_session_id = chat_store.create_session(engine, user, collection=collection).id
    with st.chat_message("user"):
        st.markdown(question)
    retriever = get_retriever(settings) if collection else None
    turn = prepare_turn(
        history,
        question,
        settings.history_token_budget,
        collection,
        retriever,
        retrieval_settings(settings),
        TemplateStore(engine),
        user,
    )  # production, or a live A/B
    chat_store.add_message(engine, session_id, "user", question, collection=collection)
    ctx = CallContext(
        feature="chat",
        user=user,
        session_id=session_id,
        template_name=turn.template_name,
        template_version=turn.template_version,
        experiment_id=turn.experiment_id,
        variant=turn.variant,
        metadata={"collection": collection} if collection else {},
    )
    with st.chat_message("assistant"):
        stream = gateway.stream(turn.messages, model, ctx, **turn.params)
        try:
            st.write_stream(stream)
        except GatewayError as err:
            st.error(f"{err}\n\nRequest id: `{err.request_id}`", icon=":material/error:")
        finally:
            stream.close()  # logs an abandoned stream as aborted
        result = stream.result
        for notice in result.notices if result else []:
            st.warning(notice, icon=":material/savings:")
        if result is not None and result.redacted:
            st.caption(f"{result.redacted} personal detail(s) were masked before the question left this network.")
        if result is not None and result.status in ("ok", "cached"):
            msg = chat_store.add_message(
                engine,
                session_id,
                "assistant",
                result.text,
                sources=[s.to_dict() for s in turn.sources],
                request_id=result.request_id,
                summary=describe_result(result),
                offline=result.offline,
            )
            show_answer_extras(
                {
                    "id": msg.id,
                    "content": result.text,
                    "sources": msg.sources,
                    "summary": msg.summary,
                    "offline": msg.offline,
                }
            )
