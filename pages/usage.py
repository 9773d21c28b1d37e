"""Usage: where the money goes, whether it grows, who and what drives it, and what would change it."""

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from lib.gateway.pricing import find_price, load_price_table
from lib.ui import usage_view as view
from lib.ui.assistant_view import show_usage_question
from lib.ui.resources import get_engine, get_services, get_settings, require_page, run_usage_query
from lib.usage import charts
from lib.usage import queries as usage
from lib.usage.access import viewer_of
from lib.usage.demo import is_demo_dir
from lib.usage.sql import viewer_zone

identity = require_page("pages/usage.py")
viewer = viewer_of(identity)  # whose call text this session may read
settings = get_settings()
engine = get_engine(settings)
st.title("Usage")
if settings.demo or is_demo_dir(settings.data_dir):
    st.warning(view.DEMO_BANNER, icon=":material/science:")
if not usage.has_calls(engine):
    st.info(view.NO_CALLS, icon=":material/info:")
    st.stop()


def q(name: str, f: usage.UsageFilter, *args: Any) -> Any:
    return run_usage_query(settings, name, f, *args)


def table(df: pd.DataFrame, name: str) -> None:
    st.dataframe(df, hide_index=True, width="stretch")
    icon = ":material/download:"
    st.download_button("Download CSV", view.csv_bytes(df), f"{name}.csv", "text/csv", key=f"csv_{name}", icon=icon)


tz = viewer_zone(st.context.timezone)  # the viewer's browser zone; UTC when it sends one we do not know
now = datetime.now(UTC)
today = view.local_today(now, tz)
left, right = st.columns([1, 2])
period = left.selectbox("Period", view.PERIODS, index=view.DEFAULT_PERIOD)
if period == view.CUSTOM:
    picked = right.date_input("Dates", (today.replace(day=1), today), max_value=today)
    start, end = view.period_range(period, now, tz, picked)
else:
    start, end = view.period_range(period, now, tz)
    right.caption(view.period_caption(start, end, tz))
opts = q("filter_options", usage.UsageFilter(start, end, tz=tz))
with st.expander("Filters", icon=":material/filter_list:"):
    cols = st.columns(4)
    picks = {
        key: cols[i % 4].multiselect(label, opts[col], key=f"f_{key}")
        for i, (key, label, col) in enumerate(view.FILTER_FIELDS)
    }
f = view.build_filter(start, end, tz, picks)

current, previous = q("headline", f), q("headline", f.previous())
for row, col in zip(
    charts.metric_cards(usage.compare_headlines(current, previous)), st.columns(5) + st.columns(4), strict=True
):
    col.metric(**row)
if warning := view.unpriced_warning(current):
    st.warning(warning, icon=":material/money_off:")
if saved := view.cache_caption(q("cache_savings", f)):
    st.caption(saved)

spend_tab, tokens_tab, latency_tab, errors_tab = st.tabs(["Spend", "Tokens", "Latency", "Errors"])
by = spend_tab.radio("Stack by", ["model", "feature"], horizontal=True)
spend_tab.plotly_chart(charts.spend_chart(q("spend_over_time", f, by), by), width="stretch")
tokens_tab.plotly_chart(charts.tokens_chart(q("tokens_over_time", f)), width="stretch")
latency_tab.plotly_chart(charts.latency_chart(q("latency_over_time", f)), width="stretch")
errors_tab.plotly_chart(charts.errors_chart(q("errors_over_time", f)), width="stretch")

st.subheader("Who and what drives it")
for tab, by_key in zip(st.tabs(list(view.BREAKDOWN_TABS)), view.BREAKDOWN_TABS.values()):
    with tab:
        table(q("breakdown", f, by_key), view.breakdown_table_name(by_key))

money_left, money_mid, money_right = st.columns(3)
card, caption = view.useful_answer_card(q("cost_per_useful_answer", f))
money_left.metric(**card)
money_left.caption(caption)
card, caption = view.forecast_card(q("daily_spend", view.month_filter(f, now)), today)
money_mid.metric(**card)
money_mid.caption(caption)
prices = load_price_table()
target = money_right.selectbox("What if every call had used", sorted(prices.prices), key="whatif_model")
whatif = q("what_if", f, find_price(target, prices, engine))
money_right.metric(**view.what_if_card(target, whatif))
with st.expander("What-if by model"):
    table(whatif, "usage_what_if")

st.subheader("Most expensive calls")
top = q("top_calls", f)
table(top, "usage_top_calls")
if not top.empty:
    call_id = st.selectbox("Open a call", top["id"], format_func=lambda i: f"#{i}", key="drill_call")
    call = usage.get_call(engine, int(call_id), viewer, tz)
    if call and (note := view.call_caption(call, viewer)):
        st.caption(note)
    if call and (trace := view.trace_line(call, settings.trace_url)):
        st.caption(trace[0])  # 32 hex digits, nothing else
        if trace[1]:
            st.link_button("Open trace", trace[1], icon=":material/account_tree:")
    st.json(call, expanded=False)
st.subheader("Unpriced calls")
table(q("unpriced_calls", f), "usage_unpriced")

show_usage_question(get_services(settings), identity)  # managers and admins: the assistant with query_usage
