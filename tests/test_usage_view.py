"""What the Usage page shows, checked without Streamlit."""

import csv
import io
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from lib.ui import usage_view as view
from lib.usage.access import Viewer
from lib.usage.queries import BREAKDOWNS
from lib.usage.sql import FILTER_DIMS, UsageFilter

BERLIN = "Europe/Berlin"
NOW = datetime(2026, 1, 20, 23, 30, tzinfo=UTC)  # already the 21st in Berlin


def test_today_is_the_viewers_day_not_utcs():
    assert view.local_today(NOW, BERLIN) == date(2026, 1, 21)
    assert view.local_today(NOW, "UTC") == date(2026, 1, 20)


def test_a_custom_period_covers_the_picked_days_or_today_while_none_is_picked():
    start, end = view.period_range(view.CUSTOM, NOW, BERLIN, (date(2026, 1, 5), date(2026, 1, 7)))
    assert (start.isoformat(), end.isoformat()) == ("2026-01-05T00:00:00+01:00", "2026-01-08T00:00:00+01:00")
    start, end = view.period_range(view.CUSTOM, NOW, BERLIN, (date(2026, 1, 5),))  # first click of two
    assert (start.day, end.day) == (5, 6)
    start, end = view.period_range(view.CUSTOM, NOW, BERLIN)
    assert (start.day, end.day) == (21, 22)


def test_a_preset_period_is_captioned_with_its_first_and_last_local_day():
    start, end = view.period_range("Last 7 days", NOW, BERLIN)
    assert view.period_caption(start, end, BERLIN) == "15 Jan 2026 – 21 Jan 2026, times in Europe/Berlin"
    assert view.PERIODS[view.DEFAULT_PERIOD] == "Last 30 days"


def test_the_filter_boxes_become_a_filter_and_empty_boxes_filter_nothing():
    start, end = view.period_range("Today", NOW, BERLIN)
    f = view.build_filter(start, end, BERLIN, {"users": ["alice"], "template_versions": [2], "models": []})
    assert (f.users, f.template_versions, f.models, f.tz) == (("alice",), (2,), (), BERLIN)
    assert {key: col for key, _, col in view.FILTER_FIELDS} == FILTER_DIMS  # a box for every filterable column


def test_unpriced_calls_and_cache_hits_are_mentioned_only_when_there_are_some():
    assert view.unpriced_warning({"unpriced": 0}) is None
    assert view.unpriced_warning({"unpriced": 1200}).startswith("**1,200 calls have no price**")
    assert view.cache_caption({"hits": 0, "saved_usd": 0.0}) is None
    assert view.cache_caption({"hits": 3, "saved_usd": 0.01234}) == (
        "The response cache answered 3 calls in this period and saved $0.0123."
    )


def test_cost_per_useful_answer_says_when_feedback_is_not_collected_yet():
    useful = {"cost_per_useful_answer": 0.005, "useful_answers": 6, "answers": 8, "feedback_collected": True}
    card, caption = view.useful_answer_card(useful)
    assert (card["label"], card["value"], caption) == ("Cost per useful answer", "$0.0050", "6 useful answers of 8.")
    _, caption = view.useful_answer_card({**useful, "feedback_collected": False})
    assert caption.endswith("Feedback isn't collected yet, so every answer counts as useful.")


def test_the_forecast_reads_this_month_with_the_same_filters_whatever_the_period():
    start, end = view.period_range("Today", NOW, BERLIN)
    month = view.month_filter(UsageFilter(start, end, tz=BERLIN, users=("alice",)), NOW)
    assert (month.start.isoformat(), month.end.day, month.users) == ("2026-01-01T00:00:00+01:00", 22, ("alice",))


def test_the_forecast_card_projects_the_month_from_its_daily_spend():
    daily = pd.DataFrame({"day": [f"2026-01-{d:02d}" for d in range(1, 11)], "spend": [1.0] * 10})
    card, caption = view.forecast_card(daily, date(2026, 1, 10))
    assert card["value"] == "$31.00"  # $10 so far plus 21 days left at $1/day
    assert caption.startswith("$10.00 so far. Method: ")


def test_the_what_if_card_shows_the_repriced_spend_and_its_difference():
    what_if = pd.DataFrame({"what_if_spend": [0.004, 0.005], "difference": [-0.01, -0.011]})
    card = view.what_if_card("openai/gpt-5", what_if)
    assert (card["label"], card["value"], card["delta"]) == ("Spend with openai/gpt-5", "$0.0090", "-$0.0210")


def test_every_breakdown_has_a_tab_and_a_csv_name():
    assert list(view.BREAKDOWN_TABS.values()) == list(BREAKDOWNS)
    assert view.breakdown_table_name("template version") == "usage_by_template_version"
    assert view.csv_bytes(pd.DataFrame({"user": ["alice"], "spend": [0.5]})) == b"user,spend\r\nalice,0.5\r\n"


def read_csv(data: bytes) -> list[list[str]]:
    """The cells a spreadsheet reads from a CSV (newline='' keeps CR and LF inside quoted cells)."""
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised():
    users = ['=HYPERLINK("http://attacker.invalid")', "@SUM(1)", "+1-2", "-3+4", "\t=1", "\r=1", "alice@acme.com"]
    df = pd.DataFrame(
        {"user": users, "spend": [-0.5, 0.25, -1.0, 2.0, 0.0, 1.0, 3.0], "requests": [-1, 2, 3, 4, 5, 6, 7]}
    )
    rows = read_csv(view.csv_bytes(df))
    assert [r[0] for r in rows[1:]] == ["'" + u for u in users[:-1]] + ["alice@acme.com"]
    assert [r[1] for r in rows[1:]] == ["-0.5", "0.25", "-1.0", "2.0", "0.0", "1.0", "3.0"]  # numbers stay numbers
    assert [r[2] for r in rows[1:]] == ["-1", "2", "3", "4", "5", "6", "7"]


def test_a_line_break_inside_a_csv_cell_cannot_start_a_formula_cell():
    df = pd.DataFrame({"user": ["a\r=1+1", "b\n@SUM(1)"], "note": [None, "=x"], "n": [1, 2]})
    rows = read_csv(view.csv_bytes(df))
    assert rows == [
        ["user", "note", "n"],
        ["a\r=1+1", "", "1"],
        ["b\n@SUM(1)", "'=x", "2"],
    ]  # two rows, breaks kept inside


def test_csv_headers_and_text_columns_of_any_kind_are_neutralised():
    df = pd.DataFrame({"=cmd": pd.Series(["-x", "ok"], dtype="string"), "when": pd.to_datetime(["2026-01-01"] * 2)})
    rows = read_csv(view.csv_bytes(df))
    assert rows == [["'=cmd", "when"], ["'-x", "2026-01-01"], ["ok", "2026-01-01"]]


def test_the_call_detail_says_why_a_viewer_sees_metadata_only():
    call = {"user": "bob@acme.com", "model": "openai/gpt-4.1"}
    assert "only to admins and to the person who made the call" in view.call_caption(call, Viewer("mike@acme.com"))
    assert view.call_caption(call, Viewer("bob@acme.com")) is None
    assert view.call_caption(call, Viewer("root@acme.com", admin=True)) is None


def test_the_only_csv_exports_are_the_neutralised_ones():
    """st.dataframe's toolbar writes its own CSV with cells raw: the app turns it off."""
    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["disableDataExport"] is True
