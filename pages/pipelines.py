"""Pipelines: build and version multi-step pipelines, try one row, run them over many rows, watch and export."""

import streamlit as st

from lib.compare.test_sets import list_test_sets
from lib.pipelines.definition import PipelineError
from lib.pipelines.examples import install_examples, load_examples
from lib.pipelines.export import export_csv, export_jsonl
from lib.pipelines.inputs import preview, resolve_templates, rows_from_test_set
from lib.pipelines.runs import cancel_run, list_runs, load_run, resume_run, retry_failed, run_status, start_run
from lib.pipelines.trial import estimate_cost, try_row
from lib.ui import pipelines_view as view
from lib.ui.prompt_form import section_heading
from lib.ui.resources import current_user, get_services, get_settings, require_page
from lib.ui.untrusted import clean_name, untrusted_label

require_page("pages/pipelines.py")
settings, state, user = get_settings(), st.session_state, current_user()
services = get_services(settings)
engine, store, deps = services.engine, services.pipelines, services.pipeline_deps

st.title("Pipelines")
for key in ("pl_name", "pl_version"):  # set by a save before the widgets exist (a widget's value cannot be moved)
    if (pick := state.pop(key + "_next", None)) is not None:
        state[key] = pick
name = st.selectbox("Pipeline", [view.NEW, *store.names()], key="pl_name")
pipeline = None
if name != view.NEW:
    labels, history = store.labels(name), {p.version: p for p in store.history(name)}
    versions = list(history)
    at = versions.index(labels["production"]) if labels.get("production") in history else 0
    pipeline = history[
        st.selectbox("Version", versions, at, format_func=lambda v: view.version_label(history[v], labels))
    ]
notices = st.container()  # one fixed block: notices come and go without remounting the tabs below
if msg := view.offline_message(deps, pipeline):
    notices.warning(untrusted_label(msg), icon=":material/warning:")
if flash := state.pop("pl_flash", None):
    notices.success(untrusted_label(flash))
with st.expander("Examples: Support triage, Review intelligence"):
    if st.button("Install the examples"):
        made = install_examples(store, services.templates, user)
        state.pl_flash = f"Installed {', '.join(made)}." if made else "The examples are already installed."
        st.rerun()
    for ex in load_examples():
        st.download_button(f"Sample rows: {ex.pipeline.name}", ex.sample.read_bytes(), ex.sample.name, "text/csv")
build, run_tab, runs_tab, cost_tab = st.tabs(["Build", "Try and run", "Runs and results", "Cost"])

with build:
    new_name = st.text_input("New pipeline name", key="pl_new_name") if pipeline is None else name
    start = view.definition_text(pipeline) if pipeline else view.starter_text(services.templates.names())
    st.caption(
        "Steps as JSON: prompt steps (template, template_ref, model, output_schema, condition, max_attempts) "
        "and gates (rule, edits_step, timeout_s, timeout_decision). Saving makes a new, immutable version."
    )
    text = st.text_area("Definition", start, height=420, key=f"pl_def:{name}:{pipeline and pipeline.version}")
    note = st.text_input("Note for this version", key="pl_note")
    if st.button("Save as a new version", type="primary"):
        try:
            version, said = view.save_definition(deps, store, new_name, text, user, note)
            state.pl_name_next, state.pl_version_next, state.pl_flash = new_name.strip(), version, said
            st.rerun()
        except PipelineError as exc:
            st.error(untrusted_label(str(exc)), icon=":material/error:")
    if pipeline is not None:
        c1, c2, c3 = st.columns(3)
        label = c1.selectbox("Label", sorted({"production", "staging", *labels}), key="pl_label")
        target = c2.selectbox("Points at", versions, key="pl_label_v")
        if c3.button("Move label"):
            moved = store.set_label(name, label, target, user)
            state.pl_flash = f"{label} {'now points' if moved else 'already pointed'} at v{target}."
            st.rerun()
        left, right = st.columns(2)
        a = left.selectbox("Diff: left", versions, min(1, len(versions) - 1), key=f"pl_diff_a:{name}:{versions[0]}")
        b = right.selectbox("Diff: right", versions, 0, key=f"pl_diff_b:{name}:{versions[0]}")
        for section in store.diff(name, a, b):
            st.markdown(section_heading(section))
            for which, col in zip(("left", "right"), st.columns(2)):
                col.code(section.side(which) or " ", language="diff", wrap_lines=True)

with run_tab:
    rows, resolved = None, None
    try:
        if pipeline is None:
            raise view.NothingToRun("Save the pipeline, then choose it above to try and run it.")
        resolved = resolve_templates(pipeline, services.templates)
        source = st.radio("Rows from", view.SOURCES, horizontal=True, key="pl_source")
        if source == view.SOURCES[0]:
            up = st.file_uploader("Rows (.csv or .jsonl)", type=["csv", "jsonl"], key="pl_upload")
            rows = view.rows_from_upload(up.getvalue() if up else None, up.name if up else "")
        elif source == view.SOURCES[1]:
            sets = {clean_name(t["name"]): t["id"] for t in list_test_sets(engine)}
            if not (chosen := st.selectbox("Test set", list(sets), key="pl_set")):
                raise view.NothingToRun("There is no test set yet: make one on the Compare page.")
            rows = rows_from_test_set(engine, sets[chosen])
        else:
            frame = st.data_editor(view.editor_frame(resolved), num_rows="dynamic", key=f"pl_rows:{name}")
            rows = view.rows_from_editor(frame)
        st.caption(f"{len(rows)} row(s). The first ones, as the pipeline reads them:")
        st.dataframe(view.text_frame(preview(resolved, rows)), hide_index=True)
    except view.NothingToRun as exc:
        st.info(untrusted_label(str(exc)))
    except PipelineError as exc:
        rows = None
        st.error(untrusted_label(str(exc)), icon=":material/error:")
    if rows and pipeline is not None:
        blocked = bool(msg)
        if st.button("Try the first row step by step", disabled=blocked):
            state.pl_trace = try_row(deps, pipeline, rows[0], user)
        if trace := state.get("pl_trace"):
            st.dataframe(view.text_frame(view.trace_table(trace)), hide_index=True)
            for s in trace.steps:
                with st.expander(f"{s.step}: {s.status}"):
                    st.code(view.prompt_text(s.messages) or "(no call)", wrap_lines=True)
                    if s.error:
                        st.error(untrusted_label(s.error))
                    st.json(s.output or {})
        sample = st.number_input("Rows to try for the estimate", 1, 10, 3, key="pl_sample")
        if st.button("Estimate the cost", disabled=blocked):
            st.info(untrusted_label(view.estimate_line(estimate_cost(deps, pipeline, rows, user, int(sample)))))
        c1, c2 = st.columns(2)
        budget = c1.number_input("Hard budget ($, 0: none)", 0.0, 10_000.0, 0.0, format="%.4f", key="pl_budget")
        at_once = c2.number_input("Rows at a time (0: the queue's default)", 0, 64, 0, key="pl_conc")
        if st.button("Start the run", type="primary", disabled=blocked):
            try:
                state.pl_run = start_run(
                    deps, pipeline, rows, user, budget_usd=budget or None, concurrency=at_once or None, source=source
                )
                state.pl_flash = f"Run #{state.pl_run} started: follow it on the Runs and results tab."
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
    polling = chosen_run is not None and view.run_panel(runs[chosen_run], []).active
    steps = [] if chosen_run is None else [s.name for s in load_run(engine, chosen_run).pipeline.steps]

    @st.fragment(run_every=1.5 if polling else None)
    def show_run() -> None:
        if chosen_run is None:
            return
        status = run_status(engine, chosen_run)
        panel = view.run_panel(status, steps)
        st.progress(panel.fraction, text=untrusted_label(panel.text))
        st.dataframe(view.text_frame(panel.steps), hide_index=True)
        if status.note:
            st.caption(untrusted_label(status.note))
        if panel.cancel and st.button("Cancel the run"):
            cancel_run(engine, chosen_run)
            st.rerun()
        if panel.retry and st.button("Retry failed rows", icon=":material/replay:"):
            retry_failed(deps, chosen_run)
            st.rerun()
        if panel.resume:
            raised = st.number_input("New budget ($)", 0.0, 10_000.0, (status.budget_usd or 0) * 2, format="%.4f")
            if st.button("Raise the budget and resume"):
                try:
                    resume_run(deps, chosen_run, raised)
                    st.rerun()
                except PipelineError as exc:
                    st.error(untrusted_label(str(exc)))
        if polling and not panel.active:
            st.rerun()  # finished: redraw the whole page once (results, downloads) and stop polling

    show_run()
    if chosen_run is not None:
        st.dataframe(view.results_frame(engine, chosen_run), hide_index=True)
        c1, c2 = st.columns(2)
        c1.download_button("Export CSV", export_csv(engine, chosen_run), f"run-{chosen_run}.csv", "text/csv")
        c2.download_button("Export JSONL", export_jsonl(engine, chosen_run), f"run-{chosen_run}.jsonl")

with cost_tab:
    if pipeline is not None:
        st.caption("From the call log (feature pipeline): every call of runs and trials of this pipeline.")
        st.dataframe(view.cost_by_step(engine, name), hide_index=True)
