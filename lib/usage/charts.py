"""Plotly figures and headline formatting for the Usage page (pure: aggregated rows in, figures out)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

# For these metrics a rise is bad news, so Streamlit shows it in red.
RISE_IS_BAD = {"spend", "avg_cost", "error_rate", "p50_ms", "p95_ms"}
NEUTRAL = {"input_tokens", "output_tokens"}


def format_value(metric: str, value: Any) -> str:
    """A headline value as a person reads it; '—' when there is nothing to show."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if metric in ("spend", "avg_cost"):
        digits = 2 if abs(value) >= 1 else 4  # small sums stay visible instead of rounding to $0.00
        return f"{'-' if value < 0 else ''}${abs(value):,.{digits}f}"
    if metric in ("error_rate", "cache_hit_rate"):
        return f"{value:.1%}"
    if metric in ("p50_ms", "p95_ms"):
        return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.0f} ms"
    return f"{int(value):,}"


def metric_cards(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """st.metric arguments for each headline row of lib.usage.queries.compare_headlines."""
    cards = []
    for r in rows:
        delta = None if r["change"] is None else f"{r['change']:+.1%} vs previous period"
        color = "off" if r["metric"] in NEUTRAL else "inverse" if r["metric"] in RISE_IS_BAD else "normal"
        cards.append(
            {
                "label": r["label"],
                "value": format_value(r["metric"], r["value"]),
                "delta": delta,
                "delta_color": color,
                "help": f"Previous period: {format_value(r['metric'], r['previous'])}",
            }
        )
    return cards


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, annotations=[{"text": "No calls in this range", "showarrow": False}])
    return fig


def spend_chart(df: pd.DataFrame, by: str) -> go.Figure:
    """Spend per bucket, stacked by model or feature."""
    if df.empty:
        return _empty("Spend over time")
    fig = px.bar(
        df,
        x="bucket",
        y="spend",
        color=by,
        title="Spend over time (USD, priced calls)",
        labels={"bucket": "", "spend": "USD"},
    )
    return fig.update_layout(barmode="stack", legend_title_text=by)


def tokens_chart(df: pd.DataFrame) -> go.Figure:
    """Input and output tokens per bucket."""
    if df.empty:
        return _empty("Tokens over time")
    long = df.melt(id_vars="bucket", value_vars=["input_tokens", "output_tokens"], var_name="kind", value_name="tokens")
    return px.line(
        long, x="bucket", y="tokens", color="kind", markers=True, title="Tokens in and out", labels={"bucket": ""}
    )


def latency_chart(df: pd.DataFrame) -> go.Figure:
    """p50 and p95 latency per bucket."""
    if df.empty:
        return _empty("Latency")
    long = df.melt(id_vars="bucket", value_vars=["p50_ms", "p95_ms"], var_name="percentile", value_name="ms")
    return px.line(
        long, x="bucket", y="ms", color="percentile", markers=True, title="Latency percentiles", labels={"bucket": ""}
    )


def errors_chart(df: pd.DataFrame) -> go.Figure:
    """Failed calls per bucket, stacked by error type."""
    if df.empty:
        return _empty("Errors")
    return px.bar(
        df, x="bucket", y="errors", color="error_type", title="Errors by type", labels={"bucket": ""}
    ).update_layout(barmode="stack")
