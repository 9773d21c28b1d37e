"""Review: rows that pipeline gates hold for a person; approve, edit the output, or reject with a reason."""

import streamlit as st

from lib.pipelines.review import ReviewError
from lib.ui import review_view as view
from lib.ui.resources import current_user, get_services, get_settings, require_page
from lib.ui.untrusted import clean_name, untrusted_label

require_page("pages/review.py")
settings, state, user = get_settings(), st.session_state, current_user()
services = get_services(settings)
engine, deps = services.engine, services.pipeline_deps

st.title("Review")
notices = st.container()  # one fixed block: a notice comes and goes without moving the widgets below
if flash := state.pop("rv_flash", None):
    notices.success(untrusted_label(flash))
options = view.filter_options(engine)
c1, c2, c3, c4 = st.columns(4)
pipeline = c1.selectbox("Pipeline", [view.ALL, *options.pipelines], format_func=clean_name, key="rv_pipeline")
run = c2.selectbox("Run", [view.ALL, *options.runs], key="rv_run")
gate = c3.selectbox("Gate", [view.ALL, *options.gates], key="rv_gate")
age = c4.selectbox("Waiting", list(view.AGES), key="rv_age")
items = view.waiting_items(engine, pipeline, run, gate, age)
st.caption(f"{len(items)} row(s) waiting for review.")
st.dataframe(view.queue_frame(items), hide_index=True)

if not items:
    st.info("Nothing is waiting for review here.")
else:
    by_id = {i.id: i for i in items}
    picked = st.selectbox("Row to decide", list(by_id), format_func=lambda i: view.item_title(by_id[i]), key="rv_item")
    item = by_id[picked]
    st.caption(untrusted_label(f"{item.pipeline_name} v{item.pipeline_version} · gate rule: {item.rule}"))
    left, right = st.columns(2)
    left.markdown("**Input**")
    left.dataframe(view.fields_frame(item.input), hide_index=True)
    right.markdown("**Outputs so far**")
    right.dataframe(view.outputs_frame(item), hide_index=True)
    action = st.radio(
        "Decision", view.actions(item), format_func=view.ACTIONS.get, horizontal=True, key=f"rv_action:{item.id}"
    )
    edit = None
    if action == "edit":
        edit = st.text_area(f"Output of {item.edits_step}", view.edit_start(item), height=200, key=f"rv_edit:{item.id}")
        st.caption(untrusted_label(view.edit_help(item)))
    reason = st.text_input("Reason (required to reject)", key=f"rv_reason:{item.id}")
    if st.button("Record the decision", type="primary"):
        try:
            state.rv_flash = view.record_decision(deps, item, action, user, edit, reason)
            st.rerun()
        except ReviewError as exc:  # the edit and the reason stay in their boxes to be fixed
            st.error(untrusted_label(str(exc)), icon=":material/error:")

st.subheader("Latest decisions")
st.dataframe(view.decided_frame(engine), hide_index=True)
