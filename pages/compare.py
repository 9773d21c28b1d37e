"""Compare: two variants (template version + model) side by side, over test sets, and live in Chat."""

import pandas as pd
import streamlit as st

from lib.compare.live_ab import ExperimentError, live_report, report_table, start_experiment, stop_experiment
from lib.compare.runs import (
    DEFAULT_CONCURRENCY,
    VERDICTS,
    CompareError,
    blind_swapped,
    get_run,
    list_runs,
    promote,
    record_vote,
    run_rows,
    start_run,
    stream_pair,
)
from lib.compare.summary import summarize_run, summary_table
from lib.compare.test_sets import (
    EXPECTED,
    TestSetError,
    create_test_set,
    list_test_sets,
    load_cases,
    parse_csv,
    replace_cases,
)
from lib.prompts.language import TemplateError, template_variables
from lib.prompts.live import active_experiment
from lib.prompts.store import TemplateStore
from lib.ui.compare_view import (
    NO_JUDGE,
    TEMPLATE_MODEL,
    answer_markdown,
    answer_text,
    batch_checks,
    case_records,
    experiment_caption,
    first_version_index,
    follow_pair,
    pick_variant,
    progress_line,
    promote_question,
    review_sides,
    row_verdict,
    rows_table,
    vote_choices,
)
from lib.ui.resources import current_user, get_engine, get_gateway, get_run_jobs, get_settings, require_page

require_page("pages/compare.py")
settings, state, user = get_settings(), st.session_state, current_user()
engine, gateway, jobs = get_engine(settings), get_gateway(settings), get_run_jobs()
store = TemplateStore(engine)

st.title("Compare")
name = st.selectbox("Template", store.names(), key="cmp_name")
versions = [v.version for v in store.history(name)]
models = [TEMPLATE_MODEL, *gateway.model_names()]
variants, templates = {}, {}
for side, col in zip("AB", st.columns(2)):
    version = col.selectbox(f"{side}: version", versions, first_version_index(side, len(versions)), key=f"cmp_v{side}")
    variants[side] = pick_variant(version, col.selectbox(f"{side}: model", models, key=f"cmp_m{side}"))
    templates[side] = store.get_version(name, version).template
names = template_variables(templates["A"])
side_tab, sets_tab, batch_tab, results_tab, live_tab = st.tabs(
    ["Side by side", "Test sets", "Batch run", "Results", "Live A/B"]
)

with side_tab:
    values = {v: st.text_area(v, key=f"cmp_in:{v}", height=80) for v in names}
    run_both = st.button("Run both", type="primary")
    boxes, last = dict(zip("AB", [c.empty() for c in st.columns(2)])), state.get("cmp_last")
    if run_both:
        last = {"name": name, "variants": dict(variants), "inputs": values}
        try:
            for side, shown in follow_pair(stream_pair(gateway, templates, variants, values, user), last):
                boxes[side].markdown(shown)
            state.cmp_last = last
        except TemplateError as exc:
            last = state.get("cmp_last")
            st.error(str(exc))
    elif last:  # the answers being voted on stay in view (and the vote goes to the variants that gave them)
        for side in "AB":
            boxes[side].markdown(last["shown"][side])
    if last:
        verdict = st.radio(
            "Which is better?", list(VERDICTS), format_func=VERDICTS.get, horizontal=True, key="cmp_verdict"
        )
        comment = st.text_input("Comment (optional)", key="cmp_comment")
        if st.button("Save vote"):
            record_vote(
                engine,
                last["name"],
                last["variants"]["A"],
                last["variants"]["B"],
                last["inputs"],
                last["A"],
                last["B"],
                verdict,
                user=user,
                comment=comment,
            )
            st.success(f"Vote saved: {VERDICTS[verdict]}.")

set_names = {s["name"]: s for s in list_test_sets(engine)}  # no widget keys below: they would keep stale choices
with sets_tab:
    new_name = st.text_input("New test set name", key="cmp_set_name")
    upload = st.file_uploader(f"CSV with columns {', '.join(names)} (and optionally {EXPECTED})", type="csv")
    if st.button("Create test set"):
        try:
            cases = parse_csv(upload.getvalue(), names) if upload else []
            create_test_set(engine, new_name, names, user, cases)
            st.success(f"Created {new_name.strip()} with {len(cases)} cases.")
            set_names = {s["name"]: s for s in list_test_sets(engine)}
        except TestSetError as exc:
            st.error(str(exc))
    if edit := st.selectbox("Edit test set", list(set_names)):
        ts = set_names[edit]
        frame = pd.DataFrame(case_records(load_cases(engine, ts["id"])), columns=[*ts["variables"], EXPECTED])
        edited = st.data_editor(frame, num_rows="dynamic", key=f"cmp_editor:{ts['id']}", use_container_width=True)
        if st.button("Save cases"):
            try:
                n = replace_cases(engine, ts["id"], edited.to_dict("records"))
                st.success(f"Saved {n} cases.")
            except TestSetError as exc:
                st.error(str(exc))

with batch_tab:
    chosen = st.selectbox("Test set", list(set_names))
    c1, c2, c3, c4 = st.columns(4)
    concurrency = c1.number_input("Concurrency", 1, 32, DEFAULT_CONCURRENCY, key="cmp_conc")
    checks = batch_checks(
        c2.text_input("Answers must match (regex)", key="cmp_regex"),
        c3.number_input("Max characters (0: any)", 0, 100_000, 0, key="cmp_max"),
        c4.selectbox("LLM judge", [NO_JUDGE, *gateway.model_names()], key="cmp_judge"),
    )
    if st.button("Start run", type="primary", disabled=not chosen):
        try:
            state.cmp_run = start_run(engine, name, set_names[chosen]["id"], variants["A"], variants["B"], checks, user)
            jobs.start(gateway, store, state.cmp_run, int(concurrency))
        except CompareError as exc:
            st.error(str(exc))

    @st.fragment(run_every=1.0 if state.get("cmp_run") else None)  # polls only once a run was started
    def show_progress() -> None:
        run_id = state.get("cmp_run")
        if run_id is None or (p := jobs.progress(run_id)) is None:
            return
        st.progress(*progress_line(run_id, p))
        if jobs.running(run_id) and st.button("Cancel run"):
            jobs.cancel(run_id)
        elif not jobs.running(run_id):
            st.caption(f"Run #{run_id} is {get_run(engine, run_id)['status']}; open it on the Results tab.")

    show_progress()

with results_tab:
    runs = {r["title"]: r for r in list_runs(engine)}
    if title := st.selectbox("Run", list(runs)):
        run = runs[title]
        voter = st.radio("Count votes from", ["human", "judge"], horizontal=True, key="cmp_voter")
        summary = summarize_run(engine, run["id"], voter)
        st.info(summary.verdict())
        st.dataframe(pd.DataFrame(summary_table(summary)).astype(str), hide_index=True)
        rows = run_rows(engine, run["id"], user)
        st.dataframe(pd.DataFrame(rows_table(rows)).astype(str))
        blind = st.toggle("Blind review (random order, no names)", key="cmp_blind")
        if rows:
            i = st.number_input("Row", 1, len(rows), 1, key=f"cmp_row:{run['id']}") - 1
            row = rows[i]
            sides = review_sides(blind, blind_swapped(run["id"], row["case_id"], user))
            for (side, heading), col in zip(sides, st.columns(2)):
                col.markdown(answer_markdown(heading, row[side]))
            choices = vote_choices(blind)
            pick = st.radio("Your vote", list(choices), format_func=choices.get, horizontal=True, key="cmp_rv")
            if st.button("Save row vote"):
                record_vote(
                    engine,
                    run["template_name"],
                    run["A"],
                    run["B"],
                    row["values"],
                    answer_text(row["A"]),
                    answer_text(row["B"]),
                    row_verdict(pick, sides),
                    user=user,
                    run_id=run["id"],
                    case_id=row["case_id"],
                    blind=blind,
                )
                st.rerun()
        sure = st.checkbox(promote_question(run), key=f"cmp_sure:{run['id']}")
        if st.button("Promote B", disabled=not sure):
            try:
                st.success(
                    f"production now points at v{promote(store, run['template_name'], run['A'], run['B'], user)}."
                )
            except (CompareError, TemplateError) as exc:
                st.error(str(exc))

with live_tab:
    if exp := active_experiment(engine, name):
        st.caption(experiment_caption(exp))
        st.dataframe(pd.DataFrame(report_table(live_report(engine, exp.id))), hide_index=True)
        if st.button("Stop experiment (all traffic back to production)"):
            stop_experiment(engine, exp.id)
            st.rerun()
    else:
        share = st.slider("Share of users on B", 0.05, 0.95, 0.5, key="cmp_share")
        if st.button(f"Start live experiment: A v{variants['A'].version} vs B v{variants['B'].version}"):
            try:
                start_experiment(engine, store, name, variants["A"].version, variants["B"].version, user, share)
                st.rerun()
            except (ExperimentError, TemplateError) as exc:
                st.error(str(exc))
