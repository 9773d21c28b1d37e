"""Usage: where the money goes, whether it grows, who and what drives it, and what would change it."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from lib.gateway.pricing import find_price, load_price_table
from lib.ui.resources import get_engine, get_settings, require_page, run_usage_query
from lib.usage import charts
from lib.usage import queries as usage
from lib.usage.demo import is_demo_dir
from lib.usage.forecast import forecast_month_end

require_page("pages/usage.py")
settings = get_settings()
engine = get_engine(settings)
st.title("Usage")
if settings.demo or is_demo_dir(settings.data_dir):
    st.warning(
        "**Demo data.** These calls are synthetic, written by `python -m lib.cli demo-usage`; they are not real usage.",
        icon=":material/science:",
    )
if not usage.has_calls(engine):
    st.info(
        "No calls are logged yet. Every model call made through the workbench (Chat, Compare, "
        "embeddings) writes a row to the call log, and this page reads that log. Use Chat to make one, or "
        "see the page full with demo data: `python -m lib.cli demo-usage --days 90 --calls 50000`, then "
        "`WORKBENCH_DATA_DIR=data/demo make run`.",
        icon=":material/info:",
    )
    st.stop()


def q(name, f, *args):
    return run_usage_query(settings, name, f, *args)


def table(df, name: str) -> None:
    st.dataframe(df, hide_index=True, width="stretch")
    st.download_button(
        "Download CSV",
        df.to_csv(index=False).encode(),
        f"{name}.csv",
        "text/csv",
        key=f"csv_{name}",
        icon=":material/download:",
    )


tz = st.context.timezone or "UTC"  # the viewer's browser zone
now = datetime.now(UTC)
today = now.astimezone(ZoneInfo(tz)).date()
left, right = st.columns([1, 2])
preset = left.selectbox("Period", [*usage.PRESETS, "Custom"], index=2)
if preset == "Custom":
    picked = right.date_input("Dates", (today.replace(day=1), today), max_value=today)
    first, last = (picked[0], picked[-1]) if picked else (today, today)
    start, end = usage.date_range(first, last, tz)
else:
    start, end = usage.preset_range(preset, now, tz)
    right.caption(f"{start:%d %b %Y} – {end - timedelta(days=1):%d %b %Y}, times in {tz}")
opts = q("filter_options", usage.UsageFilter(start, end, tz=tz))
with st.expander("Filters", icon=":material/filter_list:"):
    cols = st.columns(4)
    picks = {
        key: cols[i % 4].multiselect(label, opts[col], key=f"f_{key}")
        for i, (key, label, col) in enumerate(
            [
                ("features", "Feature", "feature"),
                ("users", "User", "user"),
                ("models", "Model", "model"),
                ("providers", "Provider", "provider"),
                ("templates", "Template", "template_name"),
                ("template_versions", "Template version", "template_version"),
                ("statuses", "Status", "status"),
            ]
        )
    }
f = usage.UsageFilter(start, end, tz=tz, **{k: tuple(v) for k, v in picks.items()})

current, previous = q("headline", f), q("headline", f.previous())
for row, col in zip(
    charts.metric_cards(usage.compare_headlines(current, previous)), st.columns(5) + st.columns(4), strict=True
):
    col.metric(**row)
if current["unpriced"]:
    st.warning(
        f"**{current['unpriced']:,} calls have no price** and are not in the spend (never counted as $0). "
        "See *Unpriced calls* below, and add their prices in Settings.",
        icon=":material/money_off:",
    )

if (saved := q("cache_savings", f))["hits"]:
    st.caption(
        f"The response cache answered {saved['hits']:,} calls in this period and saved ${saved['saved_usd']:,.4f}."
    )

spend_tab, tokens_tab, latency_tab, errors_tab = st.tabs(["Spend", "Tokens", "Latency", "Errors"])
by = spend_tab.radio("Stack by", ["model", "feature"], horizontal=True)
spend_tab.plotly_chart(charts.spend_chart(q("spend_over_time", f, by), by), width="stretch")
tokens_tab.plotly_chart(charts.tokens_chart(q("tokens_over_time", f)), width="stretch")
latency_tab.plotly_chart(charts.latency_chart(q("latency_over_time", f)), width="stretch")
errors_tab.plotly_chart(charts.errors_chart(q("errors_over_time", f)), width="stretch")

st.subheader("Who and what drives it")
for tab, by_key in zip(st.tabs(["By user", "By feature", "By model", "By template version"]), usage.BREAKDOWNS):
    with tab:
        table(q("breakdown", f, by_key), f"usage_by_{by_key.replace(' ', '_')}")

money_left, money_mid, money_right = st.columns(3)
useful = q("cost_per_useful_answer", f)
money_left.metric(
    "Cost per useful answer",
    charts.format_value("avg_cost", useful["cost_per_useful_answer"]),
    help="Spend divided by answers (ok or cached) that got no 👎.",
)
money_left.caption(
    f"{useful['useful_answers']:,} useful answers of {useful['answers']:,}."
    + ("" if useful["feedback_collected"] else " Feedback isn't collected yet, so every answer counts as useful.")
)
month_start, month_end = usage.preset_range("This month", now, tz)
daily = q("daily_spend", replace(f, start=month_start, end=month_end))
fc = forecast_month_end({date.fromisoformat(r.day): r.spend for r in daily.itertuples()}, today)
money_mid.metric(
    "Month-end forecast", charts.format_value("spend", fc.projected), help="For the filters above, whatever the period."
)
money_mid.caption(f"{charts.format_value('spend', fc.spent)} so far. Method: {fc.method}")
prices = load_price_table()
target = money_right.selectbox("What if every call had used", sorted(prices.prices), key="whatif_model")
price = find_price(target, prices, engine)
whatif = q("what_if", f, price)
money_right.metric(
    f"Spend with {target}",
    charts.format_value("spend", whatif["what_if_spend"].sum()),
    delta=charts.format_value("spend", whatif["difference"].sum()),
    delta_color="inverse",
    help="The same tokens (cached input at its own rate) priced as the chosen model.",
)
with st.expander("What-if by model"):
    table(whatif, "usage_what_if")

st.subheader("Most expensive calls")
top = q("top_calls", f)
table(top, "usage_top_calls")
if not top.empty:
    call_id = st.selectbox("Open a call", top["id"], format_func=lambda i: f"#{i}", key="drill_call")
    st.json(usage.get_call(engine, int(call_id), tz), expanded=False)
st.subheader("Unpriced calls")
table(q("unpriced_calls", f), "usage_unpriced")
