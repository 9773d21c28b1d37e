"""Month-end spend forecast from the month so far (pure; the spend per day comes from lib.usage.queries)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

RUN_RATE_DAYS = 7


@dataclass(frozen=True)
class Forecast:
    """Projected month-end spend, what it is built from, and the method in words."""

    spent: float  # month to date, today included
    projected: float  # month-end total
    daily_rate: float  # spend per day assumed for the rest of the month
    days_left: int  # whole days after today
    method: str


def forecast_month_end(daily: dict[date, float], today: date) -> Forecast:
    """Month so far plus the average of the last 7 complete days (fewer early in a month) per day left.

    Today is incomplete, so it counts in the spend but not in the rate; on the 1st the rate is today's.
    """
    first = today.replace(day=1)
    month_days = calendar.monthrange(today.year, today.month)[1]
    spent = sum(v for d, v in daily.items() if first <= d <= today)
    window = [today - timedelta(days=i) for i in range(1, RUN_RATE_DAYS + 1)]
    window = [d for d in window if d >= first] or [today]
    rate = sum(daily.get(d, 0.0) for d in window) / len(window)
    days_left = month_days - today.day
    method = (
        f"Spend so far this month plus {days_left} remaining days at ${rate:,.2f}/day, "
        f"the average of the last {len(window)} complete day{'s' if len(window) != 1 else ''}"
        if window != [today]
        else f"Today's spend so far (${rate:,.2f}) times the {days_left + 1} days of the month left, "
        "a rough guess on the 1st"
    )
    return Forecast(
        spent=spent,
        projected=spent + rate * days_left,
        daily_rate=rate,
        days_left=days_left,
        method=method + ". Unpriced calls are not included.",
    )
