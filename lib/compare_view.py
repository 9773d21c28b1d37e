"""What the Compare page shows for a side-by-side run (plain text; the page draws it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lib.experiments import Outcome


def outcome_line(outcome: Outcome) -> str:
    """Tokens, cost and latency of one side; an unpriced model says so instead of showing $0."""
    cost = "unpriced" if outcome.cost_usd is None else f"${outcome.cost_usd:.5f}"
    return f"`{outcome.tokens} tokens · {cost} · {outcome.latency_ms or 0:.0f} ms`"


def side_markdown(text: str, outcome: Outcome | None) -> str:
    """One side's answer so far; once it has finished, with its error (if any) and its numbers."""
    if outcome is None:
        return text
    return f"{text}\n\n" + (f":red[{outcome.error}]\n\n" if outcome.error else "") + outcome_line(outcome)


def follow_pair(events: Iterable[tuple[str, str | None, Outcome | None]], last: dict[str, Any]
                ) -> Iterator[tuple[str, str]]:
    """(side, its markdown so far) for each event of `stream_pair`; texts and markdown are kept in `last`."""
    for side, piece, outcome in events:
        last[side] = last.get(side, "") + (piece or "")
        last.setdefault("shown", {})[side] = side_markdown(last[side], outcome)
        yield side, last["shown"][side]


def rows_table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A batch run's rows as table records: inputs, both answers (or errors), checks, judge and your vote."""
    def answer(r: dict[str, Any], side: str) -> Any:
        return (r[side] or {}).get("error") or (r[side] or {}).get("text")

    return [{**r["values"], "A": answer(r, "A"), "B": answer(r, "B"), "A checks": (r["A"] or {}).get("checks"),
             "B checks": (r["B"] or {}).get("checks"), "judge": r["judge"], "your vote": r["vote"]} for r in rows]
