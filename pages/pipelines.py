"""Pipelines: build and version multi-step pipelines, try one row, run them over many rows, watch and export."""

import streamlit as st

from lib.pipelines.definition import PipelineError
from lib.pipelines.export import export_csv, export_jsonl
from lib.pipelines.inputs import resolve_templates
from lib.pipelines.runs import list_runs, load_run, start_run
from lib.pipelines.trial import estimate_cost, try_row
from lib.ui import pipeline_panels as panels
from lib.ui import pipelines_view as view
from lib.ui.resources import current_user, get_services, get_settings, require_page
from lib.ui.untrusted import untrusted_label

require_page("pages/pipelines.py")
settings, state, user = get_settings(), st.session_state, current_user()
services = get_services(settings)
engine, store, deps = services.engine, services.pipelines, services.pipeline_deps

st.title("Pipelines")
if saved := state.pop("pl_saved", None):  # a save picks what it saved, before the widgets exist
    state.pl_name, state[f"pl_version:{saved[0]}"] = saved
name = st.selectbox("Pipeline", [view.NEW, *store.names()], key="pl_name")
pipeline = None
if name != view.NEW:
    labels, history = store.labels(name), {p.version: p for p in store.history(name)}
    versions = list(history)
    at = versions.index(labels["production"]) if labels.get("production") in history else 0
    pipeline = history[
        st.selectbox(
            "Version",
            versions,
            at,
            format_func=lambda v: view.version_label(history[v], labels),
            key=f"pl_version:{name}",
        )
    ]
notices = st.container()  # one fixed block: notices come and go without remounting the tabs below
if msg := view.offline_message(deps, pipeline):
    notices.warning(untrusted_label(msg), icon=":material/warning:")
if flash := state.pop("pl_flash", None):
    notices.success(untrusted_label(flash))
panels.examples(store, services.templates, user)
if goto := state.pop("pl_goto", None):  # a started run opens its tab
    state.pl_tab = goto
build, run_tab, runs_tab, cost_tab = st.tabs(view.TABS, key="pl_tab", on_change="rerun")  # kept across reruns

with build:
    new_name = st.text_input("New pipeline name", key="pl_new_name") if pipeline is None else name
    start = view.definition_text(pipeline) if pipeline else view.starter_text(services.templates.names())
    st.caption(
        "Steps as JSON: prompt steps (template, template_ref, model, output_schema, condition, max_attempts) "
        "and gates (rule, edits_step, timeout_s, timeout_decision). Saving makes a new, immutable version."
    )
    st.caption(untrusted_label(view.templates_line(services.templates)))
    text = st.text_area("Definition", start, height=420, key=f"pl_def:{name}:{pipeline and pipeline.version}")
    note = st.text_input("Note for this version", key="pl_note")
    if st.button("Save as a new version", type="primary"):
        try:
            version, said = view.save_definition(deps, store, new_name, text, user, note)
            state.pl_saved, state.pl_flash = (new_name.strip(), version), said
            st.rerun()
        except PipelineError as exc:
            st.error(untrusted_label(str(exc)), icon=":material/error:")
    if pipeline is not None:
        panels.labels_and_diff(store, name, versions, labels, user)

with run_tab:
    if pipeline is None:
        st.info("Save the pipeline, then choose it above to try and run it.")
    else:
        try:
            resolved = resolve_templates(pipeline, services.templates)
            rows, source = panels.choose_rows(engine, resolved, f"{name}:{pipeline.version}")
        except PipelineError as exc:
            rows, source = None, ""
            st.error(untrusted_label(str(exc)), icon=":material/error:")
    if pipeline is not None and rows:
        blocked, tried = bool(msg), state.get("pl_trace")
        try:
            if st.button("Try the first row step by step", disabled=blocked):
                tried = state.pl_trace = (name, pipeline.version, try_row(deps, pipeline, rows[0], user))
            if tried and tried[:2] == (name, pipeline.version):
                panels.show_trace(tried[2])
            sample = st.number_input("Rows to try for the estimate", 1, 10, 3, key="pl_sample")
            if st.button("Estimate the cost", disabled=blocked):
                st.info(untrusted_label(view.estimate_line(estimate_cost(deps, pipeline, rows, user, int(sample)))))
            c1, c2 = st.columns(2)
            budget = c1.number_input("Hard budget ($, 0: none)", 0.0, 100_000.0, 0.0, format="%.4f", key="pl_budget")
            at_once = c2.number_input("Rows at a time (0: the queue's default)", 0, 64, 0, key="pl_conc")
            if st.button("Start the run", type="primary", disabled=blocked):
                state.pl_run = start_run(
                    deps, pipeline, rows, user, budget_usd=budget or None, concurrency=at_once or None, source=source
                )
                state.pl_flash, state.pl_goto = f"Run #{state.pl_run} started.", view.TABS[2]
                st.rerun()
        except PipelineError as exc:
            st.error(untrusted_label(str(exc)), icon=":material/error:")

with runs_tab:
    runs = {r.id: r for r in list_runs(engine, None if pipeline is None else name)}
    ids = list(runs)
    chosen_run = st.selectbox(
        "Run",
        ids,
        ids.index(state["pl_run"]) if state.get("pl_run") in runs else 0,
        format_func=lambda i: view.run_title(runs[i]),
        key=f"pl_run_pick:{name}:{ids[0] if ids else 0}",
    )
    if chosen_run is not None:
        panels.watch_run(engine, deps, chosen_run, [s.name for s in load_run(engine, chosen_run).pipeline.steps])
        panels.show_results(engine, chosen_run)
        c1, c2 = st.columns(2)  # the files are written when clicked, not on every rerun
        c1.download_button(
            "Export CSV", lambda r=chosen_run: export_csv(engine, r), f"run-{chosen_run}.csv", "text/csv"
        )
        c2.download_button("Export JSONL", lambda r=chosen_run: export_jsonl(engine, r), f"run-{chosen_run}.jsonl")

with cost_tab:
    if pipeline is not None:
        st.caption("From the call log (feature pipeline): every call of runs and trials of this pipeline.")
        st.dataframe(view.cost_by_step(engine, name), hide_index=True)
