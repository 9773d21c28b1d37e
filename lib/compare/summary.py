"""The numbers under a Compare run: B's win rate over A, and cost, tokens and latency per variant."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.compare.stats import Interval, mean_interval, sign_test_p, wilson_interval
from lib.core.tables import CompareVote, RunResult


@dataclass
class VariantStats:
    """Totals and means of one variant's answers."""

    rows: int = 0
    errors: int = 0
    total_cost: float = 0.0
    unpriced: int = 0
    mean_cost: float | None = None
    total_tokens: int = 0
    mean_tokens: float | None = None
    mean_latency: Interval = field(default_factory=lambda: Interval(None, None, None))
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (passed, applicable)


@dataclass
class RunSummary:
    """B vs A over one run: votes, win rate with a Wilson interval, sign-test p-value, per-variant stats."""

    votes: dict[str, int]
    win_rate: Interval  # B wins / (A wins + B wins)
    p_value: float
    a: VariantStats
    b: VariantStats

    def differences(self) -> dict[str, float | None]:
        """B minus A for mean cost, mean tokens and mean latency."""

        def diff(x, y):
            return None if x is None or y is None else y - x

        return {
            "mean cost (USD)": diff(self.a.mean_cost, self.b.mean_cost),
            "mean tokens": diff(self.a.mean_tokens, self.b.mean_tokens),
            "mean latency (ms)": diff(self.a.mean_latency.value, self.b.mean_latency.value),
        }

    def verdict(self) -> str:
        """One sentence a person can act on."""
        wins, losses = self.votes.get("B", 0), self.votes.get("A", 0)
        if wins + losses == 0:
            return "No decisive votes yet: vote on rows, or turn on the LLM judge."
        rate = self.win_rate
        sure = "significant" if self.p_value < 0.05 else "not significant"
        return (
            f"B won {wins} of {wins + losses} decisive votes ({rate.value:.0%}, 95% CI {rate.low:.0%}–"
            f"{rate.high:.0%}); sign test p = {self.p_value:.3g} ({sure} at 5%)."
        )


def variant_stats(results: list[RunResult]) -> VariantStats:
    """Totals and means over one variant's stored results."""
    st = VariantStats(rows=len(results), errors=sum(r.status == "error" for r in results))
    answered = [r for r in results if r.status != "error"]
    costs = [r.cost_usd for r in answered if r.cost_usd is not None]
    st.unpriced = len(answered) - len(costs)
    st.total_cost = sum(costs)
    st.mean_cost = st.total_cost / len(costs) if costs else None
    st.total_tokens = sum(r.tokens for r in answered)
    st.mean_tokens = st.total_tokens / len(answered) if answered else None
    st.mean_latency = mean_interval([r.latency_ms for r in answered if r.latency_ms is not None])
    for r in results:
        for name, ok in (r.checks or {}).items():
            passed, n = st.checks.get(name, (0, 0))
            st.checks[name] = (passed + bool(ok), n + 1)
    return st


def summarize_run(engine: Engine, run_id: int, voter: str | None = None) -> RunSummary:
    """Summary of a run; `voter` "human" or "judge" counts only those votes (None: people's votes, else the judge's)."""
    with Session(engine) as s:
        results = list(s.scalars(select(RunResult).where(RunResult.run_id == run_id)))
        votes = list(s.scalars(select(CompareVote).where(CompareVote.run_id == run_id)))
    if voter is None:
        voter = "human" if any(v.voter == "human" for v in votes) else "judge"
    counts = Counter(v.verdict for v in votes if v.voter == voter)
    wins, losses = counts.get("B", 0), counts.get("A", 0)
    return RunSummary(
        {k: counts.get(k, 0) for k in ("A", "B", "tie", "both_bad")},
        wilson_interval(wins, wins + losses),
        sign_test_p(wins, losses),
        variant_stats([r for r in results if r.variant == "A"]),
        variant_stats([r for r in results if r.variant == "B"]),
    )


def summary_table(summary: RunSummary) -> list[dict[str, Any]]:
    """Rows for a table: one per measure, columns A, B and B − A."""
    a, b, d = summary.a, summary.b, summary.differences()
    rows = [
        ("rows", a.rows, b.rows, None),
        ("errors", a.errors, b.errors, b.errors - a.errors),
        ("total cost (USD)", a.total_cost, b.total_cost, b.total_cost - a.total_cost),
        ("mean cost (USD)", a.mean_cost, b.mean_cost, d["mean cost (USD)"]),
        ("total tokens", a.total_tokens, b.total_tokens, b.total_tokens - a.total_tokens),
        ("mean tokens", a.mean_tokens, b.mean_tokens, d["mean tokens"]),
        ("mean latency (ms)", str(a.mean_latency), str(b.mean_latency), d["mean latency (ms)"]),
    ]
    for name in sorted(set(a.checks) | set(b.checks)):
        pa, na = a.checks.get(name, (0, 0))
        pb, nb = b.checks.get(name, (0, 0))
        rows.append((f"passes: {name}", f"{pa}/{na}", f"{pb}/{nb}", pb - pa))
    return [{"measure": m, "A": x, "B": y, "B − A": z} for m, x, y, z in rows]
