"""The assistant where users meet it: Chat's "Assistant (tools)" mode and the Usage page's "Ask about usage".

A turn (lib.assistant.turn.AssistantTurn) lives in session_state between reruns, so a confirmation survives the
click that answers it; the agent's checkpoints live in Services.assistant (one per process). Above the answer a
step timeline (st.status) shows each model call (tokens, cost, latency) and each tool call (arguments, a preview
of the result, latency, errors); a guard that stopped the turn is a warning. Model text, tool names, arguments
and results are untrusted: markdown goes through lib.ui.untrusted, everything else through st.code or tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import streamlit as st
from pydantic import BaseModel, ValidationError

from lib.chat.turn import source_label
from lib.core.identity import Identity
from lib.services import Services
from lib.ui.untrusted import show_untrusted, stream_untrusted, untrusted_label, untrusted_markdown

if TYPE_CHECKING:  # LangChain's agent stack and pandas load when the assistant is first used, not with the Chat page
    import pandas as pd

    from lib.assistant.turn import AssistantTurn

ASSISTANT_MODE = "Assistant (tools)"
CHAT_MODES = ("Chat", ASSISTANT_MODE)
USAGE_ROLES = frozenset({"manager", "admin"})
HISTORY_TURNS = 10  # earlier questions and answers of this tab that go with a new question
KEPT_TURNS = 30  # finished turns this tab keeps and redraws (each redraw costs its timeline)
MAX_EDIT_CHARS = 20_000
GUARD_NAMES = {"step_cap": "step cap", "cost_cap": "cost cap", "loop": "loop detection"}
_TIME_WORDS = ("date", "day", "week", "month", "hour", "time", "period", "bucket")


class EditError(ValueError):
    """Edited tool arguments that are not a JSON object the tool accepts."""


def parse_edited_args(tool: str, text: str) -> dict[str, Any]:
    """The edited arguments of a pending `tool` call, checked as the tool will check them (EditError if not)."""
    if len(text) > MAX_EDIT_CHARS:
        raise EditError(f"The arguments are {len(text):,} characters; the limit is {MAX_EDIT_CHARS:,}.")
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EditError(
            f"The arguments are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    if not isinstance(args, dict):
        raise EditError('The arguments must be a JSON object, such as {"expression": "6*7"}.')
    from lib.assistant.tools import all_tools

    schema = next((t.args_schema for t in all_tools() if t.name == tool), None)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            schema.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise EditError(f"{tool} does not accept these arguments: {problems}.") from None
    return args


def step_caption(event: dict[str, Any]) -> str:
    """`Step 2 · model: 84 + 9 tokens · $0.000018 · 375 ms` for a step_done event."""
    cost = event.get("cost_usd")
    money = "no price" if cost is None else f"${cost:.6f}"
    tokens = f"{event.get('prompt_tokens', 0):,} + {event.get('completion_tokens', 0):,} tokens"
    return f"Step {event['step']} · model: {tokens} · {money} · {event.get('latency_ms', 0):,.0f} ms"


def result_caption(event: dict[str, Any]) -> str:
    """`ok · 2 characters · 1.8 ms` for a tool_result event (with its decision when the user made one)."""
    decision = event.get("decision")
    said = f" ({decision})" if decision in ("approved", "edited", "denied") and decision != event["status"] else ""
    return f"{event['status']}{said} · {event.get('chars', 0):,} characters · {event.get('latency_ms') or 0:,.1f} ms"


def timeline_label(events: list[dict[str, Any]], status: str) -> str:
    """The timeline's one-line summary: model calls, tool calls, tokens and cost so far."""
    steps = [e for e in events if e["type"] == "step_done"]
    tools = {e["call_id"] for e in events if e["type"] == "tool_result"}
    tokens = sum(e.get("prompt_tokens", 0) + e.get("completion_tokens", 0) for e in steps)
    costs = [e.get("cost_usd") for e in steps]
    money = f"${sum(c for c in costs if c):.6f}" + ("" if all(c is not None for c in costs) else " (some unpriced)")
    word = {
        "paused": "waiting for you",
        "stopped": "stopped by a guard",
        "error": "failed",
        "interrupted": "interrupted",
    }.get(status, "")
    parts = [f"{len(steps)} model call{'s' * (len(steps) != 1)}", f"{len(tools)} tool call{'s' * (len(tools) != 1)}"]
    return " · ".join([*parts, f"{tokens:,} tokens", money, *([word] if word else [])])


def table_frame(table: dict[str, Any]) -> pd.DataFrame:
    """A query_usage result as a DataFrame (columns de-duplicated, so Streamlit can show it)."""
    import pandas as pd

    names: list[str] = []
    seen: dict[str, int] = {}
    for c in table.get("columns", []):
        seen[c] = seen.get(c, 0) + 1
        names.append(c if seen[c] == 1 else f"{c}_{seen[c]}")
    return pd.DataFrame(table.get("rows", []), columns=names)


def time_series(df: pd.DataFrame) -> pd.DataFrame | None:
    """The frame indexed by its time column with its numeric columns, when the result is a time series, else None."""
    import pandas as pd

    if len(df) < 2:
        return None
    for col in df.columns:
        values = df[col]
        if not (pd.api.types.is_datetime64_any_dtype(values) or any(w in str(col).lower() for w in _TIME_WORDS)):
            continue
        times = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        if times.isna().any():
            continue
        numeric = df.drop(columns=[col]).apply(pd.to_numeric, errors="coerce")
        numeric = numeric.loc[:, numeric.notna().any() & df.drop(columns=[col]).isna().eq(numeric.isna()).all()]
        if numeric.shape[1]:
            return numeric.set_axis(times.dt.tz_localize(None)).sort_index()
    return None


@dataclass
class Finished:
    """A finished turn as this tab redraws it."""

    question: str
    answer: str
    status: str
    events: list[dict[str, Any]]
    sources: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    guard: dict[str, str] | None = None
    error: str | None = None
    turn_id: str = ""


def finished(turn: AssistantTurn) -> Finished:
    """What is kept of a finished (or interrupted) turn."""
    status = "interrupted" if turn.status in ("running", "paused") else turn.status
    error = turn.error or (
        "The page reran while this turn ran; it was not finished." if status == "interrupted" else None
    )
    return Finished(
        turn.question,
        turn.answer,
        status,
        list(turn.events),
        [s.to_dict() for s in turn.cited()],
        list(turn.tables),
        turn.guard,
        error,
        turn.id,
    )


class Timeline:
    """The step timeline in an st.status box: model calls, tool calls with arguments and results, guards."""

    def __init__(self, events: list[dict[str, Any]], expanded: bool, engine: Any = None, turn_id: str = "") -> None:
        self.box = st.status(timeline_label(events, "running"), expanded=expanded, state="running")
        self.engine, self.turn_id = engine, turn_id  # to show what run_template's own model call used
        self.drawn: set[str] = set()
        self.step_text = ""

    def draw(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        with self.box:
            if kind == "step":
                self.step_text = ""
            elif kind == "text":
                self.step_text += event["text"]
            elif kind == "step_done":
                st.caption(step_caption(event))
                if event.get("tool_calls") and self.step_text.strip():  # the model's words before its tool calls
                    show_untrusted(self.step_text)
                self.step_text = ""
            elif kind == "tool_call" and event["call_id"] not in self.drawn:  # a resumed call is announced again
                self.drawn.add(event["call_id"])
                mode = " · asks first" if event.get("mode") == "confirm" else ""
                st.markdown(f":material/build: **{untrusted_label(event['tool'])}**{mode}")
                st.code(json.dumps(event["args"], indent=2, ensure_ascii=False), language="json")
            elif kind == "tool_result":
                self._result(event)
            elif kind == "confirm":
                st.caption(f":material/pan_tool: Paused for you to run, edit or deny {untrusted_label(event['tool'])}.")
            elif kind == "guard":
                st.warning(guard_text(event), icon=":material/front_hand:")
            elif kind == "error":
                st.error(untrusted_markdown(event["message"]), icon=":material/error:")

    def _result(self, event: dict[str, Any]) -> None:
        if event["status"] == "error":
            st.error(f"{untrusted_label(event['tool'])} failed: {untrusted_markdown(event.get('error') or '')}")
        elif event["status"] == "denied":
            st.caption(f"Denied by you; the model was told. {result_caption(event)}")
            return
        elif event["status"] == "refused":
            st.warning(untrusted_markdown(event.get("error") or event.get("preview") or "Refused."))
            return
        st.caption(result_caption(event))
        if event["tool"] == "run_template" and self.engine is not None and self.turn_id:
            from lib.assistant.records import step_usage

            used = step_usage(self.engine, self.turn_id, f"{event['step']}:run_template")  # type: ignore[arg-type]
            if used.calls:
                st.caption(template_caption(used))
        if event["status"] == "ok":
            st.code(event.get("preview") or "", language="text", wrap_lines=True)

    def finish(self, events: list[dict[str, Any]], status: str) -> None:
        state = {"error": "error", "interrupted": "error", "offline": "error", "paused": "running"}.get(
            status, "complete"
        )
        self.box.update(label=timeline_label(events, status), state=state, expanded=status == "paused")  # type: ignore[arg-type]


def template_caption(used: Any) -> str:
    """`The template's model call: 40 + 12 tokens · $0.000010 · 320 ms` (run_template's own call-log rows)."""
    money = "no price" if used.cost_usd is None else f"${used.cost_usd:.6f}"
    calls = "The template's model call" if used.calls == 1 else f"The step's {used.calls} template model calls"
    tokens = f"{used.prompt_tokens:,} + {used.completion_tokens:,} tokens"
    return f"{calls}: {tokens} · {money} · {used.latency_ms:,.0f} ms"


def guard_text(event: dict[str, Any]) -> str:
    """`Stopped by the step cap: ...` (the guard's own words, which may quote a tool name)."""
    name = GUARD_NAMES.get(event.get("guard", ""), untrusted_label(str(event.get("guard"))))
    return f"**Stopped by the {name}.** {untrusted_markdown(event.get('message', ''))}"


def show_finished(done: Finished, engine: Any, tables_first: bool = False) -> None:
    """Redraw a finished turn: question, timeline, answer, guard, citations, tables."""
    with st.chat_message("user"):
        show_untrusted(done.question)
    with st.chat_message("assistant"):
        timeline = Timeline(done.events, expanded=False, engine=engine, turn_id=done.turn_id)
        for event in done.events:
            timeline.draw(event)
        timeline.finish(done.events, done.status)
        _show_end(done, tables_first)


def _show_end(done: Finished, tables_first: bool, answer_shown: bool = False) -> None:
    if tables_first:
        show_tables(done.tables, expanded=True)
    if done.answer and not answer_shown:
        show_untrusted(done.answer)
    if done.guard:
        st.warning(guard_text(done.guard), icon=":material/front_hand:")
    if done.error and done.status != "offline":
        st.error(untrusted_markdown(done.error), icon=":material/error:")
    for src in done.sources:
        with st.expander(untrusted_label(source_label(src))):
            show_untrusted("> " + src["text"].replace("\n", "\n> "))
    if not tables_first:
        show_tables(done.tables, expanded=False)


def show_tables(tables: list[dict[str, Any]], expanded: bool) -> None:
    """Each query the turn ran, its result as a table, and a chart when the result is a time series."""
    for i, table in enumerate(tables, 1):
        with st.expander(f"Query {i}: {table.get('row_count', 0):,} rows", expanded=expanded, icon=":material/table:"):
            st.code(table.get("sql", ""), language="sql", wrap_lines=True)
            df = table_frame(table)
            st.dataframe(df, hide_index=True, width="stretch")
            if table.get("truncated"):
                st.caption("More rows matched; the assistant saw only these.")
            if (series := time_series(df)) is not None:
                st.line_chart(series)


def _keys(slot: str) -> tuple[str, str, str, str]:
    return f"asst_{slot}_turn", f"asst_{slot}_history", f"asst_{slot}_editing", f"asst_{slot}_edit_error"


def _answer(slot: str, action: str, call_id: str) -> None:
    """Button callback: run, edit or deny the pending call (a bad edit stays pending with its error)."""
    state = st.session_state
    turn_key, _, editing_key, error_key = _keys(slot)
    turn: AssistantTurn | None = state.get(turn_key)
    if turn is None or turn.status != "paused":
        return
    pending = next((p for p in turn.pending if p.call_id == call_id), None)
    if pending is None:
        return
    args = None
    if action == "edit":
        try:
            args = parse_edited_args(pending.tool, state.get(f"asst_{slot}_args_{call_id}", ""))
        except EditError as exc:
            state[error_key] = str(exc)
            return
    turn.resume(action, args, reason=state.get(f"asst_{slot}_reason_{call_id}", "") or "", call_id=call_id)
    state[editing_key], state[error_key] = None, None


def _show_confirmation(turn: AssistantTurn, slot: str) -> None:
    state = st.session_state
    _, _, editing_key, error_key = _keys(slot)
    pending = turn.pending[0]
    cid = pending.call_id
    with st.container(border=True):
        st.markdown(f"**The assistant wants to run {untrusted_label(pending.tool)}** with these arguments:")
        if state.get(editing_key) == cid:
            st.text_area(
                "Arguments (JSON)",
                json.dumps(pending.args, indent=2, ensure_ascii=False),
                key=f"asst_{slot}_args_{cid}",
                max_chars=MAX_EDIT_CHARS,
                height=160,
            )
            if error := state.get(error_key):
                st.error(untrusted_markdown(error), icon=":material/error:")
            c1, c2 = st.columns(2)
            c1.button("Run edited", key=f"asst_{slot}_runedit_{cid}", on_click=_answer, args=(slot, "edit", cid))
            c2.button(
                "Cancel edit", key=f"asst_{slot}_noedit_{cid}", on_click=state.update, args=({editing_key: None},)
            )
            return
        st.code(json.dumps(pending.args, indent=2, ensure_ascii=False), language="json")
        st.text_input("Reason, if you deny it (optional; the model is told)", key=f"asst_{slot}_reason_{cid}")
        c1, c2, c3 = st.columns(3)
        c1.button("Run", key=f"asst_{slot}_run_{cid}", type="primary", on_click=_answer, args=(slot, "run", cid))
        c2.button(
            "Edit", key=f"asst_{slot}_edit_{cid}", on_click=state.update, args=({editing_key: cid, error_key: None},)
        )
        c3.button("Deny", key=f"asst_{slot}_deny_{cid}", on_click=_answer, args=(slot, "deny", cid))


def _play(turn: AssistantTurn, slot: str, tables_first: bool) -> None:
    """Draw the turn so far, run what is left of it (streaming), then its confirmation or its end."""
    turn_key, history_key, _, _ = _keys(slot)
    before = list(turn.events)
    engine = turn.context.services.engine if turn.context else None
    timeline = Timeline(before, expanded=True, engine=engine, turn_id=turn.id)
    for event in before:
        timeline.draw(event)
    answer = st.empty()
    streamed = ""
    events = iter(turn)
    for event in events:
        timeline.draw(event)
        if event["type"] in ("step", "text"):
            first = event["text"] if event["type"] == "text" else ""
            with answer.container():
                streamed = stream_untrusted(_step_text(first, events, timeline))
            if timeline.step_text == "" and _last_step_called_tools(turn.events):
                answer.empty()  # the words came before tool calls: the timeline has them now
                streamed = ""
    timeline.finish(turn.events, "interrupted" if turn.status == "running" else turn.status)
    if turn.status == "paused":
        _show_confirmation(turn, slot)
        return
    done = finished(turn)
    if done.status == "interrupted" and turn.assistant is not None:
        turn.assistant.forget(turn.id)  # its checkpoints: nothing will resume it
    if done.answer != streamed:
        with answer.container():
            show_untrusted(done.answer)
    _show_end(done, tables_first, answer_shown=True)
    history = st.session_state.setdefault(history_key, [])
    history.append(done)
    del history[:-KEPT_TURNS]
    st.session_state[turn_key] = None


def _step_text(first: str, events: Iterator[dict[str, Any]], timeline: Timeline) -> Iterator[str]:
    """The text pieces of one step, drawing its other events in the timeline, until the step ends."""
    if first:
        yield first
    for event in events:
        timeline.draw(event)
        if event["type"] == "text":
            yield event["text"]
        elif event["type"] in ("step_done", "done", "confirm", "error"):
            return


def _last_step_called_tools(events: list[dict[str, Any]]) -> bool:
    last = next((e for e in reversed(events) if e["type"] in ("step_done", "done")), None)
    return bool(last and last["type"] == "step_done" and last.get("tool_calls"))


def _ask(services: Services, identity: Identity, model: str, question: str, slot: str) -> AssistantTurn:
    from lib.assistant.turn import start_turn

    _, history_key, _, _ = _keys(slot)
    history: list[dict[str, str]] = []
    for done in st.session_state.get(history_key, [])[-HISTORY_TURNS:]:
        if done.answer:
            history += [{"role": "user", "content": done.question}, {"role": "assistant", "content": done.answer}]
    return start_turn(services.assistant, services, identity.name, identity.roles, question, history, model=model)


def show_assistant(services: Services, identity: Identity, model: str, slot: str = "chat") -> None:
    """Chat's assistant mode: this tab's turns, the one running or waiting for a confirmation, and the input."""
    turn_key, history_key, _, _ = _keys(slot)
    offline = model.startswith("offline/")
    if offline:
        from lib.assistant.turn import OFFLINE_NOTICE

        st.info(OFFLINE_NOTICE, icon=":material/cloud_off:")
    st.caption(
        "The assistant decides which tools it needs (documents, usage data, templates, a calculator) and shows each step."
    )
    for done in st.session_state.get(history_key, []):
        show_finished(done, services.engine)
    turn: AssistantTurn | None = st.session_state.get(turn_key)
    if turn is not None:
        with st.chat_message("user"):
            show_untrusted(turn.question)
        with st.chat_message("assistant"):
            _play(turn, slot, tables_first=False)
    paused = turn is not None and turn.status == "paused"
    hint = "Answer the pending tool call first" if paused else "Ask the assistant"
    question = st.chat_input(hint, key=f"asst_{slot}_input", disabled=paused or offline, max_chars=20_000)
    if question:
        _start(services, identity, model, question, slot, tables_first=False)


def _start(services: Services, identity: Identity, model: str, question: str, slot: str, tables_first: bool) -> None:
    turn_key, _, _, _ = _keys(slot)
    with st.chat_message("user"):
        show_untrusted(question)
    try:
        turn = _ask(services, identity, model, question, slot)
    except ValueError as exc:
        st.error(untrusted_markdown(str(exc)), icon=":material/error:")
        return
    st.session_state[turn_key] = turn
    with st.chat_message("assistant"):
        _play(turn, slot, tables_first)
    if turn.status == "paused":  # redraw with the input closed until the pending call is answered
        st.rerun()


def show_usage_question(services: Services, identity: Identity) -> None:
    """Usage's "Ask about usage" (managers and admins): the assistant answers with the query it ran and its result."""
    if not identity.roles & USAGE_ROLES:
        return
    slot = "usage"
    turn_key, history_key, _, _ = _keys(slot)
    st.subheader("Ask about usage")
    model = services.settings.default_model
    if model.startswith("offline/"):
        from lib.assistant.turn import OFFLINE_NOTICE

        st.info(OFFLINE_NOTICE, icon=":material/cloud_off:")
        return
    history = st.session_state.get(history_key, [])
    if history:
        show_finished(history[-1], services.engine, tables_first=True)
    turn: AssistantTurn | None = st.session_state.get(turn_key)
    if turn is not None:
        with st.chat_message("user"):
            show_untrusted(turn.question)
        with st.chat_message("assistant"):
            _play(turn, slot, tables_first=True)
    paused = turn is not None and turn.status == "paused"
    with st.form(f"asst_{slot}_form", clear_on_submit=True, border=False):
        question = st.text_input(
            "Your question", placeholder="Which feature cost most last week, and how did that change?", max_chars=2000
        )
        asked = st.form_submit_button("Ask", icon=":material/query_stats:", disabled=paused)
    if asked and question.strip():
        _start(services, identity, model, question.strip(), slot, tables_first=True)


def policy_frame(table: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The tool policies as a table: one row per tool, one column per role."""
    import pandas as pd

    from lib.core.identity import ROLES

    return pd.DataFrame([{"tool": tool, **{r: modes.get(r, "off") for r in ROLES}} for tool, modes in table.items()])


def show_policy_editor(engine: Any, user: str) -> None:
    """Settings: per tool and role, auto (runs), confirm (asks the user first) or off (not offered)."""
    from lib.assistant.policies import MODES, TOOLS, PolicyError, policy_table, reset_policies, set_policy
    from lib.core.identity import ROLES

    st.caption(
        "auto: the tool runs when the assistant calls it · confirm: the user sees the arguments and runs, edits or "
        "denies the call · off: the assistant is not offered the tool. query_usage stays off for staff and authors."
    )
    st.dataframe(policy_frame(policy_table(engine)), hide_index=True, width="stretch")
    c1, c2, c3 = st.columns(3)
    tool = c1.selectbox("Tool", TOOLS, key="policy_tool")
    role = c2.selectbox("Role", ROLES, key="policy_role")
    mode = c3.radio("Policy", MODES, key="policy_mode", horizontal=True)
    s1, s2 = st.columns(2)
    if s1.button("Save policy", icon=":material/save:"):
        try:
            set_policy(engine, tool, role, mode, user)
            st.rerun()
        except PolicyError as exc:
            st.error(untrusted_markdown(str(exc)), icon=":material/error:")
    if s2.button("Back to the shipped defaults", icon=":material/restart_alt:"):
        reset_policies(engine)
        st.rerun()
