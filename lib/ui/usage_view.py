"""What the Usage page shows, as plain values without Streamlit (the page draws them)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pandas as pd

from lib.core.cells import neutralise_cell
from lib.usage import charts
from lib.usage.access import HIDDEN_CONTENT_NOTE, Viewer
from lib.usage.forecast import forecast_month_end
from lib.usage.queries import BREAKDOWNS
from lib.usage.sql import PRESETS, UsageFilter, date_range, preset_range

DEMO_BANNER = (
    "**Demo data.** These calls are synthetic, written by `python -m lib.cli demo-usage`; they are not real usage."
)
NO_CALLS = (
    "No calls are logged yet. Every model call made through the workbench (Chat, Compare, "
    "embeddings) writes a row to the call log, and this page reads that log. Use Chat to make one, or "
    "see the page full with demo data: `python -m lib.cli demo-usage --days 90 --calls 50000`, then "
    "`WORKBENCH_DATA_DIR=data/demo make run`."
)
CUSTOM = "Custom"
PERIODS = [*PRESETS, CUSTOM]
DEFAULT_PERIOD = PERIODS.index("Last 30 days")
# (UsageFilter field, box label, column of filter_options)
FILTER_FIELDS = (
    ("features", "Feature", "feature"),
    ("users", "User", "user"),
    ("models", "Model", "model"),
    ("providers", "Provider", "provider"),
    ("templates", "Template", "template_name"),
    ("template_versions", "Template version", "template_version"),
    ("statuses", "Status", "status"),
)
BREAKDOWN_TABS = dict(
    zip(["By user", "By feature", "By model", "By template version", "By pipeline step"], BREAKDOWNS, strict=True)
)


def local_today(now: datetime, tz: str) -> date:
    """The viewer's calendar day at `now`."""
    return now.astimezone(ZoneInfo(tz)).date()


def period_range(period: str, now: datetime, tz: str, picked: Sequence[date] = ()) -> tuple[datetime, datetime]:
    """[start, end) of a preset, or of the Custom days picked (first to last; today while none is picked)."""
    if period != CUSTOM:
        return preset_range(period, now, tz)
    today = local_today(now, tz)
    first, last = (picked[0], picked[-1]) if picked else (today, today)
    return date_range(first, last, tz)


def period_caption(start: datetime, end: datetime, tz: str) -> str:
    """The days a preset covers, e.g. `01 Jan 2026 – 30 Jan 2026, times in Europe/Berlin`."""
    return f"{start:%d %b %Y} – {end - timedelta(days=1):%d %b %Y}, times in {tz}"


def build_filter(start: datetime, end: datetime, tz: str, picks: Mapping[str, Sequence[Any]]) -> UsageFilter:
    """The filter the period and the filter boxes describe (an empty box filters nothing)."""
    return UsageFilter(start, end, tz=tz, **{key: tuple(values) for key, values in picks.items()})


def unpriced_warning(headline: Mapping[str, Any]) -> str | None:
    """The warning over calls without a price (left out of the spend, never counted as $0), None when all are priced."""
    if not headline["unpriced"]:
        return None
    return (
        f"**{headline['unpriced']:,} calls have no price** and are not in the spend (never counted as $0). "
        "See *Unpriced calls* below, and add their prices in Settings."
    )


def cache_caption(savings: Mapping[str, Any]) -> str | None:
    """What the response cache saved in the period, None when it answered nothing."""
    if not savings["hits"]:
        return None
    return (
        f"The response cache answered {savings['hits']:,} calls in this period and saved ${savings['saved_usd']:,.4f}."
    )


def useful_answer_card(useful: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """st.metric arguments for cost per useful answer, and the caption under it."""
    card = {
        "label": "Cost per useful answer",
        "value": charts.format_value("avg_cost", useful["cost_per_useful_answer"]),
        "help": "Spend divided by answers (ok or cached) that got no 👎.",
    }
    caption = f"{useful['useful_answers']:,} useful answers of {useful['answers']:,}." + (
        "" if useful["feedback_collected"] else " Feedback isn't collected yet, so every answer counts as useful."
    )
    return card, caption


def month_filter(f: UsageFilter, now: datetime) -> UsageFilter:
    """The same filter over this month in the viewer's zone (what the forecast reads, whatever the period)."""
    start, end = preset_range("This month", now, f.tz)
    return replace(f, start=start, end=end)


def forecast_card(daily: pd.DataFrame, today: date) -> tuple[dict[str, Any], str]:
    """st.metric arguments for the month-end forecast from this month's spend per day, and its caption."""
    fc = forecast_month_end({date.fromisoformat(r.day): r.spend for r in daily.itertuples()}, today)
    card = {
        "label": "Month-end forecast",
        "value": charts.format_value("spend", fc.projected),
        "help": "For the filters above, whatever the period.",
    }
    return card, f"{charts.format_value('spend', fc.spent)} so far. Method: {fc.method}"


def what_if_card(model: str, what_if: pd.DataFrame) -> dict[str, Any]:
    """st.metric arguments for the period's spend had every call used `model`, against the actual spend."""
    return {
        "label": f"Spend with {model}",
        "value": charts.format_value("spend", what_if["what_if_spend"].sum()),
        "delta": charts.format_value("spend", what_if["difference"].sum()),
        "delta_color": "inverse",
        "help": "The same tokens (cached input at its own rate) priced as the chosen model.",
    }


def breakdown_table_name(by: str) -> str:
    """The CSV name of a breakdown table, e.g. `usage_by_template_version`."""
    return f"usage_by_{by.replace(' ', '_')}"


def call_caption(call: Mapping[str, Any], viewer: Viewer) -> str | None:
    """What the call detail says when the viewer sees its metadata only, None when they see it all."""
    return None if viewer.may_read(call.get("user")) else HIDDEN_CONTENT_NOTE


TRACE_ID = re.compile(r"[0-9a-f]{32}")


def trace_line(call: Mapping[str, Any], url_pattern: str | None) -> tuple[str, str | None] | None:
    """The call's trace: a caption naming its trace id, and its link when WORKBENCH_TRACE_URL is set; None without.

    Only a stored id of 32 hex digits is shown or put in the link (as a percent-quoted path or query value), so
    the operator's pattern (checked at start-up: http(s), one {trace_id}) gets nothing else substituted into it.
    """
    trace_id = str(call.get("trace_id") or "")
    if not TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        return None
    link = url_pattern.replace("{trace_id}", quote(trace_id, safe="")) if url_pattern else None
    return f"Trace {trace_id}", link


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, CSV injection).
def csv_bytes(df: pd.DataFrame) -> bytes:
    """A table as the CSV its download button serves, with text cells that look like formulas neutralised."""
    safe = df.copy()
    safe.columns = [neutralise_cell(str(name)) for name in df.columns]
    for i, dtype in enumerate(df.dtypes):
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):  # text, never a number
            safe.isetitem(i, df.iloc[:, i].map(neutralise_cell))
    # CRLF rows (RFC 4180) make the writer quote a cell holding a lone CR too, which a spreadsheet would
    # otherwise read as a row break, starting a new (unprefixed) cell after it.
    return safe.to_csv(index=False, lineterminator="\r\n").encode()
