"""Parts of the Pipelines page that draw: examples, labels and diff, the row source and preview, a tried row's
steps, a run's live panel."""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlalchemy import Engine

from lib.compare.test_sets import list_test_sets
from lib.pipelines.definition import PipelineError
from lib.pipelines.examples import install_examples, load_examples
from lib.pipelines.inputs import ResolvedPipeline, preview, rows_from_test_set
from lib.pipelines.runs import RunDeps, cancel_run, resume_run, retry_failed, run_status
from lib.pipelines.store import PipelineStore
from lib.pipelines.trial import RowTrace
from lib.prompts.store import TemplateStore
from lib.ui import pipelines_view as view
from lib.ui.prompt_form import section_heading
from lib.ui.untrusted import clean_name, untrusted_label

POLL_S = 1.5


def examples(store: PipelineStore, templates: TemplateStore, user: str) -> None:
    """Install the two shipped example pipelines (and their templates); download their sample rows."""
    with st.expander("Examples: Support triage, Review intelligence"):
        if st.button("Install the examples"):
            made = install_examples(store, templates, user)
            st.session_state.pl_flash = (
                f"Installed {', '.join(made)}." if made else "The examples are already installed."
            )
            st.rerun()
        for ex in load_examples():
            st.download_button(f"Sample rows: {ex.pipeline.name}", ex.sample.read_bytes(), ex.sample.name, "text/csv")


def labels_and_diff(store: PipelineStore, name: str, versions: list[int], labels: dict[str, int], user: str) -> None:
    """Move a label (production, staging, …) to a version; diff two versions side by side, step by step."""
    c1, c2, c3 = st.columns(3)
    label = c1.selectbox("Label", sorted({"production", "staging", *labels}), key="pl_label")
    target = c2.selectbox("Points at", versions, key="pl_label_v")
    if c3.button("Move label"):
        moved = store.set_label(name, label, target, user)
        st.session_state.pl_flash = f"{label} {'now points' if moved else 'already pointed'} at v{target}."
        st.rerun()
    left, right = st.columns(2)
    a = left.selectbox("Diff: left", versions, min(1, len(versions) - 1), key=f"pl_diff_a:{name}:{versions[0]}")
    b = right.selectbox("Diff: right", versions, 0, key=f"pl_diff_b:{name}:{versions[0]}")
    for section in store.diff(name, a, b):
        st.markdown(section_heading(section))
        for which, col in zip(("left", "right"), st.columns(2)):
            col.code(section.side(which) or " ", language="diff", wrap_lines=True)


def choose_rows(engine: Engine, resolved: ResolvedPipeline, key: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The rows from the source the author picks, previewed as the pipeline reads them; (None, source) with the
    reason shown when there are none yet or they cannot be used (a missing column is named)."""
    source = st.radio("Rows from", view.SOURCES, horizontal=True, key="pl_source")
    try:
        if source == view.SOURCES[0]:
            up = st.file_uploader("Rows (.csv or .jsonl)", type=["csv", "jsonl"], key="pl_upload")
            rows = view.rows_from_upload(up.getvalue() if up else None, up.name if up else "")
        elif source == view.SOURCES[1]:
            sets = {clean_name(t["name"]): t["id"] for t in list_test_sets(engine)}
            if not (chosen := st.selectbox("Test set", list(sets), key="pl_set")):
                raise view.NothingToRun("There is no test set yet: make one on the Compare page.")
            rows = rows_from_test_set(engine, sets[chosen])
        else:
            frame = st.data_editor(view.editor_frame(resolved), num_rows="dynamic", key=f"pl_rows:{key}")
            rows = view.rows_from_editor(frame)
        shown = preview(resolved, rows)
    except view.NothingToRun as exc:
        st.info(untrusted_label(str(exc)))
        return None, source
    except PipelineError as exc:
        st.error(untrusted_label(str(exc)), icon=":material/error:")
        return None, source
    st.caption(f"{len(rows)} row(s). The first ones, as the pipeline reads them:")
    st.dataframe(view.text_frame(shown), hide_index=True)
    return rows, source


def show_trace(trace: RowTrace) -> None:
    """A tried row: a line per step, then each step's prompt as sent and its output (or why it failed)."""
    st.caption(f"Tried row: {trace.tokens} tokens, {view.money(trace.cost_usd)}.")
    st.dataframe(view.text_frame(view.trace_table(trace)), hide_index=True)
    for s in trace.steps:
        with st.expander(f"{s.step}: {s.status}"):
            st.code(view.prompt_text(s.messages) or "(no call)", language=None, wrap_lines=True)
            if s.error:
                st.error(untrusted_label(s.error))
            st.json(s.output or {})


def watch_run(engine: Engine, deps: RunDeps, run_id: int, steps: list[str]) -> None:
    """The run's progress per step and row, polled from the database while it moves, with its buttons."""
    polling = view.run_panel(run_status(engine, run_id), steps).active

    @st.fragment(run_every=POLL_S if polling else None)
    def panel_fragment() -> None:
        status = run_status(engine, run_id)
        panel = view.run_panel(status, steps)
        st.progress(panel.fraction, text=untrusted_label(panel.text))
        st.dataframe(view.text_frame(panel.steps), hide_index=True)
        if status.note:
            st.caption(untrusted_label(status.note))
        if panel.cancel and st.button("Cancel the run"):
            cancel_run(engine, run_id)
            st.rerun()
        if panel.retry and st.button("Retry failed rows", icon=":material/replay:"):
            retry_failed(deps, run_id)
            st.rerun()
        if panel.resume:
            raised = st.number_input("New budget ($)", 0.0, 100_000.0, (status.budget_usd or 0) * 2, format="%.4f")
            if st.button("Raise the budget and resume"):
                try:
                    resume_run(deps, run_id, raised)
                    st.rerun()
                except PipelineError as exc:
                    st.error(untrusted_label(str(exc)))
        if polling and not panel.active:
            st.rerun()  # it stopped moving: redraw the page once (results, downloads) and stop polling

    panel_fragment()


def show_results(engine: Engine, run_id: int) -> None:
    """A page of a run's rows (filtered by state) with every step's output and each gate's decision."""
    c1, c2 = st.columns(2)
    status = c1.selectbox("Rows", view.ROW_FILTERS, key=f"pl_rows_filter:{run_id}")
    positions = view.result_positions(engine, run_id, status)
    pages = max(1, -(-len(positions) // view.PAGE_ROWS))
    page = int(c2.number_input(f"Page (of {pages})", 1, pages, 1, key=f"pl_rows_page:{run_id}:{status}"))
    shown = positions[(page - 1) * view.PAGE_ROWS : page * view.PAGE_ROWS]
    st.caption(f"{len(positions)} row(s); showing {len(shown)}.")
    st.dataframe(view.results_frame(engine, run_id, shown), hide_index=True)
