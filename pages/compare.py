"""Compare: two variants (template version + model) side by side, over test sets, and live in Chat."""

import pandas as pd
import streamlit as st

from lib.compare.live_ab import ExperimentError, live_report, report_table, stop_experiment
from lib.compare.runs import (
    VERDICTS,
    CompareError,
    blind_swapped,
    cancel_run,
    list_runs,
    retry_run,
    run_rows,
    stream_pair,
)
from lib.compare.summary import summarize_run, summary_table
from lib.compare.test_sets import EXPECTED, TestSetError
from lib.prompts.language import MAX_VALUE_CHARS, TemplateError, template_variables
from lib.prompts.live import active_experiment
from lib.prompts.store import TemplateStore
from lib.ui import compare_view as view
from lib.ui import jobs_view
from lib.ui.resources import current_user, get_engine, get_gateway, get_settings, get_work_queue, require_page
from lib.ui.untrusted import untrusted_label

require_page("pages/compare.py")
settings, state, user = get_settings(), st.session_state, current_user()
engine, gateway, queue = get_engine(settings), get_gateway(settings), get_work_queue(settings)
store = TemplateStore(engine)

st.title("Compare")
name = st.selectbox("Template", store.names(), key="cmp_name")
versions = [v.version for v in store.history(name)]
models = [view.TEMPLATE_MODEL, *gateway.model_names()]
picks = {
    side: (
        col.selectbox(f"{side}: version", versions, view.first_version_index(side, len(versions)), key=f"cmp_v{side}"),
        col.selectbox(f"{side}: model", models, key=f"cmp_m{side}"),
    )
    for side, col in zip("AB", st.columns(2))
}
variants, templates = view.chosen_variants(store, name, picks)
names = template_variables(templates["A"])
side_tab, sets_tab, batch_tab, results_tab, live_tab = st.tabs(
    ["Side by side", "Test sets", "Batch run", "Results", "Live A/B"]
)

with side_tab:
    values = {v: st.text_area(v, key=f"cmp_in:{v}", height=80, max_chars=MAX_VALUE_CHARS) for v in names}
    run_both = st.button("Run both", type="primary")
    boxes, last = dict(zip("AB", [c.empty() for c in st.columns(2)])), state.get("cmp_last")
    if run_both:
        last = view.new_pair(name, variants, values)
        try:
            for side, shown in view.follow_pair(stream_pair(gateway, templates, variants, values, user), last):
                boxes[side].markdown(shown)
            state.cmp_last = last
        except TemplateError as exc:
            last = state.get("cmp_last")
            st.error(untrusted_label(str(exc)))
    elif last:  # the answers being voted on stay in view (and the vote goes to the variants that gave them)
        for side in "AB":
            boxes[side].markdown(last["shown"][side])
    for side in view.failed_sides(last or {}):  # e.g. dropped mid-answer: that side runs again, in place
        if st.button(f"Retry {side}", key=f"cmp_retry{side}", icon=":material/refresh:"):
            try:
                for shown_side, shown in view.retry_side(gateway, store, last, side, user):
                    boxes[shown_side].markdown(shown)
                st.rerun()
            except TemplateError as exc:
                st.error(untrusted_label(str(exc)))
    if last:
        verdict = st.radio(
            "Which is better?", list(VERDICTS), format_func=VERDICTS.get, horizontal=True, key="cmp_verdict"
        )
        comment = st.text_input("Comment (optional)", key="cmp_comment")
        if st.button("Save vote"):
            st.success(untrusted_label(view.save_pair_vote(engine, last, verdict, user, comment)))

set_names = view.sets_by_name(engine)  # no widget keys below: they would keep stale choices
with sets_tab:
    new_name = st.text_input("New test set name", key="cmp_set_name")
    upload = st.file_uploader(f"CSV with columns {', '.join(names)} (and optionally {EXPECTED})", type="csv")
    if st.button("Create test set"):
        try:
            st.success(
                untrusted_label(view.create_set(engine, new_name, names, user, upload.getvalue() if upload else None))
            )
            set_names = view.sets_by_name(engine)
        except TestSetError as exc:
            st.error(untrusted_label(str(exc)))
    if edit := st.selectbox("Edit test set", list(set_names)):
        ts = set_names[edit]
        frame = view.cases_frame(engine, ts)
        edited = st.data_editor(frame, num_rows="dynamic", key=f"cmp_editor:{ts['id']}", use_container_width=True)
        if st.button("Save cases"):
            try:
                st.success(untrusted_label(view.save_cases(engine, ts["id"], edited)))
            except TestSetError as exc:
                st.error(untrusted_label(str(exc)))

with batch_tab:
    chosen = st.selectbox("Test set", list(set_names))
    c2, c3, c4 = st.columns(3)
    checks = view.batch_checks(
        c2.text_input("Answers must match (regex)", key="cmp_regex"),
        c3.number_input("Max characters (0: any)", 0, 100_000, 0, key="cmp_max"),
        c4.selectbox("LLM judge", [view.NO_JUDGE, *gateway.model_names()], key="cmp_judge"),
    )
    if st.button("Start run", type="primary", disabled=not chosen):
        try:
            set_id = set_names[chosen]["id"]
            state.cmp_run = jobs_view.start_batch(engine, queue, name, set_id, variants, checks, user)
        except CompareError as exc:
            st.error(untrusted_label(str(exc)))

    @st.fragment(run_every=1.0 if state.get("cmp_run") else None)  # polls only once a run was started
    def show_progress() -> None:
        if (run_id := state.get("cmp_run")) is None:
            return
        shown = jobs_view.batch_status(engine, run_id)
        st.progress(shown.fraction, text=shown.text)
        if shown.cancel and st.button("Cancel run"):
            cancel_run(engine, run_id)
        if shown.retry and st.button("Retry failed rows", icon=":material/replay:"):
            retry_run(engine, queue, run_id)
        st.caption(shown.caption)

    show_progress()

with results_tab:
    runs = {r["title"]: r for r in list_runs(engine)}
    if title := st.selectbox("Run", list(runs)):
        run = runs[title]
        voter = st.radio("Count votes from", ["human", "judge"], horizontal=True, key="cmp_voter")
        summary = summarize_run(engine, run["id"], voter)
        st.info(untrusted_label(summary.verdict()))
        st.dataframe(pd.DataFrame(summary_table(summary)).astype(str), hide_index=True)
        rows = run_rows(engine, run["id"], user)
        st.dataframe(pd.DataFrame(view.rows_table(rows)).astype(str))
        blind = st.toggle("Blind review (random order, no names)", key="cmp_blind")
        if rows:
            row = rows[st.number_input("Row", 1, len(rows), 1, key=f"cmp_row:{run['id']}") - 1]
            sides = view.review_sides(blind, blind_swapped(run["id"], row["case_id"], user))
            for (side, heading), col in zip(sides, st.columns(2)):
                col.markdown(view.answer_markdown(heading, row[side]))
            choices = view.vote_choices(blind)
            pick = st.radio("Your vote", list(choices), format_func=choices.get, horizontal=True, key="cmp_rv")
            if st.button("Save row vote"):
                view.save_row_vote(engine, run, row, pick, sides, user, blind)
                st.rerun()
        sure = st.checkbox(view.promote_question(run), key=f"cmp_sure:{run['id']}")
        if st.button("Promote B", disabled=not sure):
            try:
                st.success(untrusted_label(view.promote_b(store, run, user)))
            except (CompareError, TemplateError) as exc:
                st.error(untrusted_label(str(exc)))

with live_tab:
    if exp := active_experiment(engine, name):
        st.caption(untrusted_label(view.experiment_caption(exp)))
        st.dataframe(pd.DataFrame(report_table(live_report(engine, exp.id))), hide_index=True)
        if st.button("Stop experiment (all traffic back to production)"):
            stop_experiment(engine, exp.id)
            st.rerun()
    else:
        share = st.slider("Share of users on B", 0.05, 0.95, 0.5, key="cmp_share")
        if st.button(view.live_start_label(variants)):
            try:
                view.start_live(engine, store, name, variants, user, share)
                st.rerun()
            except (ExperimentError, TemplateError) as exc:
                st.error(untrusted_label(str(exc)))
