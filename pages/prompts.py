"""Prompts: write templates, save versions, try them, compare versions, move labels, export/import."""

import streamlit as st

from lib.prompts.language import (
    MAX_DESCRIPTION_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_VALUE_CHARS,
    Template,
    TemplateError,
)
from lib.prompts.store import TemplateStore, history_table, label_table
from lib.ui.prompt_form import (
    DEFAULT_MODEL,
    draft_from_form,
    label_caption,
    label_options,
    move_message,
    option_index,
    save_draft,
    schema_text,
    section_heading,
    summary,
    trial_caption,
    trial_version,
    try_template,
    variables_line,
)
from lib.ui.resources import current_user, get_engine, get_gateway, get_settings, require_page
from lib.ui.untrusted import untrusted_label, untrusted_markdown

NEW = "➕ New template"
require_page("pages/prompts.py")
settings, state, user = get_settings(), st.session_state, current_user()
store, gateway = TemplateStore(get_engine(settings)), get_gateway(settings)


def done(message: str, select: str | None = None) -> None:
    state.pt_flash, state.pt_select = message, select
    st.rerun()


st.title("Prompts")
if state.get("pt_select"):  # a widget's value can only be set before the widget is drawn
    state.pt_name = state.pop("pt_select")
flash = st.empty()  # always drawn, so the tabs below keep their place, and the open tab, across reruns
if message := state.pop("pt_flash", None):
    flash.success(untrusted_label(message), icon=":material/check_circle:")
names = store.names()
name = st.selectbox("Template", [*names, NEW], key="pt_name")
saved = store.latest(name) if name != NEW else None
labels = store.labels(name) if saved else {}
base = saved.template if saved else Template(name="")
if saved:
    st.caption(untrusted_label(summary(base, saved.version, labels)))
k = f"{name}:{saved.version if saved else 0}"  # the form resets to the newest version after a save
edit, trial, history, label_tab, files = st.tabs(["Edit", "Try it", "History & diff", "Labels", "Export / import"])

with edit:
    new_name = st.text_input(
        "Name", base.name, key=f"name:{k}", disabled=saved is not None, placeholder="support.reply"
    )
    description = st.text_input("Description", base.description, MAX_DESCRIPTION_CHARS, key=f"desc:{k}")
    system = st.text_area("System message", base.system, key=f"sys:{k}", height=160, max_chars=MAX_MESSAGE_CHARS)
    user_text = st.text_area(
        "User message",
        base.user,
        key=f"user:{k}",
        height=120,
        max_chars=MAX_MESSAGE_CHARS,
        help="Write {{ variable }} where a value goes; \\{{ writes a literal {{.",
    )
    c1, c2, c3 = st.columns(3)
    models = [DEFAULT_MODEL, *gateway.model_names()]
    model = c1.selectbox("Model", models, option_index(models, base.model), key=f"m:{k}")
    temperature = c2.number_input("Temperature", 0.0, 2.0, base.temperature, 0.1, key=f"t:{k}")
    max_tokens = c3.number_input("Max output tokens", 1, 1_000_000, base.max_tokens, 64, key=f"mt:{k}")
    schema = st.text_area("JSON schema for structured output (optional)", schema_text(base), key=f"js:{k}")
    draft, found, problem = draft_from_form(
        new_name, description, system, user_text, model, temperature, max_tokens, schema
    )
    if problem:
        st.error(untrusted_label(problem), icon=":material/error:")
    else:
        st.caption(variables_line(found))
    note = st.text_input("Change note", key=f"note:{k}", placeholder="What changed, and why")
    if st.button("Save version" if saved else "Create template", type="primary", disabled=draft is None):
        try:
            v, message = save_draft(store, saved, draft, user, note)
            if v is None:
                st.info(untrusted_label(message))
            else:
                done(message, v.name)
        except TemplateError as err:
            st.error(untrusted_label(str(err)), icon=":material/error:")

with trial:
    if draft is None:
        st.info("Fix the template on the Edit tab first.")
    else:
        version = trial_version(saved, draft)
        st.caption(trial_caption(version))
        values = {v: st.text_area(v, key=f"var:{name}:{v}", height=80, max_chars=MAX_VALUE_CHARS) for v in found}
        run_models = gateway.model_names()
        run_model = st.selectbox("Model", run_models, option_index(run_models, draft.model), key=f"tm:{k}")
        if st.button("Run", icon=":material/play_arrow:"):
            with st.spinner("Running…"):
                trial_run = try_template(gateway, draft, values, user, version, run_model)
            if trial_run.warning:
                st.warning(untrusted_label(trial_run.warning), icon=":material/warning:")
            if trial_run.error:
                st.error(untrusted_markdown(trial_run.error), icon=":material/error:")
            else:
                st.code(trial_run.text, language="json" if draft.json_schema else None, wrap_lines=True)
                st.caption(untrusted_label(trial_run.caption))

with history:
    if saved:
        versions = store.history(name)
        st.dataframe(history_table(versions, labels), hide_index=True, width="stretch")
        numbers = [v.version for v in versions]
        a, b = st.columns(2)
        left = a.selectbox("Left", numbers, min(1, len(numbers) - 1), format_func="v{}".format, key=f"da:{k}")
        right = b.selectbox("Right", numbers, 0, format_func="v{}".format, key=f"db:{k}")
        for section in store.diff(name, left, right):
            st.markdown(section_heading(section))
            for col, which in zip(st.columns(2), ("left", "right")):
                col.code(section.side(which) or " ", language="diff", wrap_lines=True)

with label_tab:
    if saved:
        label = st.selectbox(
            "Label",
            label_options(labels),
            key=f"lb:{name}",
            accept_new_options=True,
            help="Type a new name to add your own label.",
        )
        target = st.selectbox("Point it at", [v.version for v in versions], format_func="v{}".format, key=f"lt:{k}")
        st.caption(label_caption(label, labels))
        why = st.text_input("Why (kept in the label history)", key=f"lw:{name}")
        sure = st.checkbox(f"Yes, make {label} run v{target}", key=f"ls:{name}:{label}:{target}")
        if st.button("Move label", disabled=not sure):
            try:
                moved = store.move_label(name, label, target, user, why)
                done(move_message(label, target, moved), name)
            except TemplateError as err:
                st.error(untrusted_label(str(err)), icon=":material/error:")
        st.dataframe(label_table(store.label_history(name)), hide_index=True, width="stretch")

with files:
    if saved:
        fmt = st.radio("Format", ["yaml", "json"], horizontal=True, key="pt_fmt")
        st.download_button(
            "Download with all versions and labels",
            store.export(name, fmt),
            file_name=f"{name}.{fmt}",
            icon=":material/download:",
        )
    upload = st.file_uploader("Import a template file", type=["yaml", "yml", "json"], key="pt_upload")
    if upload is not None and st.button("Import", icon=":material/upload:"):
        try:
            report = store.import_text(upload.getvalue().decode("utf-8"), user)
            done(report.summary(), report.name)
        except (TemplateError, UnicodeDecodeError) as err:
            st.error(untrusted_label(f"Nothing was imported: {err}"), icon=":material/error:")
