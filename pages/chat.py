"""Chat: talk to a model; answers stream in with their tokens and cost."""

import uuid

import streamlit as st

from lib.chat import build_chat_messages, describe_result
from lib.errors import GatewayError
from lib.gateway import CallContext
from lib.offline import HOW_TO_CONFIGURE, OFFLINE_LABEL
from lib.prompt_runs import chat_system_prompt
from lib.template_store import TemplateStore
from lib.ui_resources import current_user, get_engine, get_gateway, get_settings

settings = get_settings()
gateway = get_gateway(settings)
state = st.session_state
state.setdefault("chat_history", [])
state.setdefault("chat_session_id", uuid.uuid4().hex)

st.title("Chat")
left, right = st.columns([3, 1])
model = left.selectbox("Model", gateway.model_names(), key="chat_model")
if right.button("New conversation", icon=":material/add:", use_container_width=True):
    state.chat_history = []
    state.chat_session_id = uuid.uuid4().hex
if model.startswith("offline/"):
    st.info(f"**{OFFLINE_LABEL}s.** Answers quote the most relevant sentences; nothing is generated. "
            + HOW_TO_CONFIGURE, icon=":material/cloud_off:")


def show_meta(turn: dict) -> None:
    if turn.get("summary"):
        label = f"{OFFLINE_LABEL} · " if turn.get("offline") else ""
        st.caption(label + turn["summary"])


for turn in state.chat_history:
    with st.chat_message(turn["role"]):
        st.markdown(turn["content"])
        show_meta(turn)

if question := st.chat_input("Ask anything"):
    state.chat_history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(question)
    system, prompt = chat_system_prompt(TemplateStore(get_engine(settings)))  # the production version
    messages = build_chat_messages(state.chat_history, settings.history_token_budget, system)
    ctx = CallContext(feature="chat", user=current_user(), session_id=state.chat_session_id,
                      template_name=prompt and prompt.name, template_version=prompt and prompt.version)
    with st.chat_message("assistant"):
        stream = gateway.stream(messages, model, ctx, **(prompt.template.params() if prompt else {}))
        try:
            st.write_stream(stream)
        except GatewayError as err:
            st.error(f"{err}\n\nRequest id: `{err.request_id}`", icon=":material/error:")
        finally:
            stream.close()  # logs an abandoned stream as aborted
        result = stream.result
        if result is not None and result.status == "ok":
            turn = {"role": "assistant", "content": result.text, "summary": describe_result(result),
                    "offline": result.offline}
            state.chat_history.append(turn)
            show_meta(turn)
        elif result is not None:
            state.chat_history.pop()  # the question stays answerable: ask again
