"""What the Compare page shows, and what its boxes mean, as plain values without Streamlit (the page draws them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lib.compare.runs import Checks, RunProgress, Variant, VariantAnswer
from lib.compare.test_sets import EXPECTED, Case
from lib.core.tables import Experiment


def outcome_line(outcome: VariantAnswer) -> str:
    """Tokens, cost and latency of one side; an unpriced model says so instead of showing $0."""
    cost = "unpriced" if outcome.cost_usd is None else f"${outcome.cost_usd:.5f}"
    return f"`{outcome.tokens} tokens · {cost} · {outcome.latency_ms or 0:.0f} ms`"


def side_markdown(text: str, outcome: VariantAnswer | None) -> str:
    """One side's answer so far; once it has finished, with its error (if any) and its numbers."""
    if outcome is None:
        return text
    return f"{text}\n\n" + (f":red[{outcome.error}]\n\n" if outcome.error else "") + outcome_line(outcome)


def follow_pair(
    events: Iterable[tuple[str, str | None, VariantAnswer | None]], last: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """(side, its markdown so far) for each event of `stream_pair`; texts and markdown are kept in `last`."""
    for side, piece, outcome in events:
        last[side] = last.get(side, "") + (piece or "")
        last.setdefault("shown", {})[side] = side_markdown(last[side], outcome)
        yield side, last["shown"][side]


def rows_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch run's rows as table records: inputs, both answers (or errors), checks, judge and your vote."""

    def answer(r: dict[str, Any], side: str) -> Any:
        return (r[side] or {}).get("error") or (r[side] or {}).get("text")

    return [
        {
            **r["values"],
            "A": answer(r, "A"),
            "B": answer(r, "B"),
            "A checks": (r["A"] or {}).get("checks"),
            "B checks": (r["B"] or {}).get("checks"),
            "judge": r["judge"],
            "your vote": r["vote"],
        }
        for r in rows
    ]


TEMPLATE_MODEL = "(template's model)"  # the model choice that keeps each version's own model
NO_JUDGE = "(none)"


def pick_variant(version: int, model: str) -> Variant:
    """The variant one side's boxes describe; TEMPLATE_MODEL runs the version on its own model."""
    return Variant(version, None if model == TEMPLATE_MODEL else model)


def first_version_index(side: str, count: int) -> int:
    """Where a side's version box starts (newest first): A on the version before the newest, B on the newest."""
    return min(int(side == "A"), count - 1)


def batch_checks(regex: str, max_chars: int, judge: str) -> Checks:
    """The checks the batch-run boxes describe: an empty regex, 0 characters or NO_JUDGE leaves that check off."""
    return Checks(regex=regex or None, max_chars=max_chars or None, judge_model=None if judge == NO_JUDGE else judge)


def progress_line(run_id: int, progress: RunProgress) -> tuple[float, str]:
    """The progress bar's fraction and text for a batch run, e.g. `Run #3: 2/6 rows, 1 failed`."""
    return (
        progress.done / max(progress.total, 1),
        f"Run #{run_id}: {progress.done}/{progress.total} rows, {progress.failed} failed",
    )


def case_records(cases: Iterable[Case]) -> list[dict[str, str | None]]:
    """A test set's cases as editable table rows: each variable's value, then the expected answer."""
    return [{**c.values, EXPECTED: c.expected} for c in cases]


def answer_text(result: dict[str, Any] | None) -> str | None:
    """The text of one side's stored answer in a run row, None when it has none yet."""
    return (result or {}).get("text")


def review_sides(blind: bool, swapped: bool) -> list[tuple[str, str]]:
    """(side, heading) in the order a run row is shown; blind review hides the names and may show B first."""
    order = ("B", "A") if blind and swapped else ("A", "B")
    return list(zip(order, ("Answer 1", "Answer 2") if blind else order))


def answer_markdown(heading: str, result: dict[str, Any] | None) -> str:
    """One answer under review: its heading in bold, then its text, or a dash when there is none."""
    return f"**{heading}**\n\n" + (answer_text(result) or "—")


def vote_choices(blind: bool) -> dict[str, str]:
    """A row vote's options and their labels; blind review names the answers by position, not by A and B."""
    return {
        "first": "Answer 1 better" if blind else "A better",
        "second": "Answer 2 better" if blind else "B better",
        "tie": "Tie",
        "both_bad": "Both bad",
    }


def row_verdict(pick: str, sides: list[tuple[str, str]]) -> str:
    """The verdict stored for a row vote: `first` and `second` become the side that was shown there."""
    return {"first": sides[0][0], "second": sides[1][0]}.get(pick, pick)


def experiment_caption(exp: Experiment) -> str:
    """One line on a running live experiment: its id, both versions and the share of users on B."""
    return f"Running {exp.id}: A v{exp.version_a}, B v{exp.version_b}, {exp.share_b:.0%} of users on B."


def promote_question(run: dict[str, Any]) -> str:
    """The confirmation asked before promoting a run's B: which template's production label moves, and to what."""
    return f"Yes, point production of {run['template_name']} at B ({run['B'].label()})"
