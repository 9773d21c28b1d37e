"""What the Compare page shows, and what its boxes mean, as plain values without Streamlit (the page draws them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from lib.compare.live_ab import start_experiment
from lib.compare.runs import (
    VERDICTS,
    Checks,
    RunProgress,
    Variant,
    VariantAnswer,
    get_run,
    promote,
    record_row_vote,
    record_vote,
    stream_pair,
)
from lib.compare.test_sets import EXPECTED, Case, create_test_set, list_test_sets, load_cases, parse_csv, replace_cases
from lib.core.tables import Experiment
from lib.gateway.client import Gateway
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore
from lib.ui.untrusted import untrusted_label, untrusted_markdown


def outcome_line(outcome: VariantAnswer) -> str:
    """Tokens, cost and latency of one side; an unpriced model says so instead of showing $0."""
    cost = "unpriced" if outcome.cost_usd is None else f"${outcome.cost_usd:.5f}"
    return f"`{outcome.tokens} tokens · {cost} · {outcome.latency_ms or 0:.0f} ms`"


def side_markdown(text: str, outcome: VariantAnswer | None) -> str:
    """One side's answer so far; once it has finished, with its error (if any) and its numbers."""
    answer = untrusted_markdown(text)  # a model's answer: nothing in it may load, link or restyle
    if outcome is None:
        return answer
    error = f":red[{untrusted_label(outcome.error)}]\n\n" if outcome.error else ""
    return f"{answer}\n\n{error}{outcome_line(outcome)}"


def follow_pair(
    events: Iterable[tuple[str, str | None, VariantAnswer | None]], last: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """(side, its markdown so far) for each event of `stream_pair`; texts and markdown are kept in `last`."""
    for side, piece, outcome in events:
        last[side] = last.get(side, "") + (piece or "")
        last.setdefault("shown", {})[side] = side_markdown(last[side], outcome)
        if outcome is not None:
            last.setdefault("failed", {})[side] = outcome.status == "error"
        yield side, last["shown"][side]


def failed_sides(pair: Mapping[str, Any]) -> list[str]:
    """The sides of the pair in view whose answer failed (e.g. dropped mid-answer): each gets a Retry."""
    return [side for side in "AB" if pair.get("failed", {}).get(side)]


def retry_side(
    gateway: Gateway, store: TemplateStore, pair: dict[str, Any], side: str, user: str | None
) -> Iterator[tuple[str, str]]:
    """Run one side of the pair in view again, with its own variant and inputs; its new answer replaces the failed
    one in `pair` (the other side stays). Yields (side, its markdown so far) like `follow_pair`."""
    variant = pair["variants"][side]
    template = store.get_version(pair["name"], variant.version).template
    pair[side] = ""
    events = stream_pair(gateway, {side: template}, {side: variant}, pair["inputs"], user, sides=(side,))
    yield from follow_pair(events, pair)


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
    return f"**{heading}**\n\n" + (untrusted_markdown(answer_text(result) or "") or "—")


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
    return (
        f"Yes, point production of {untrusted_label(run['template_name'])} at B ({untrusted_label(run['B'].label())})"
    )


def chosen_variants(
    store: TemplateStore, name: str, picks: Mapping[str, tuple[int, str]]
) -> tuple[dict[str, Variant], dict[str, Template]]:
    """Each side's variant and saved template from its (version, model) boxes."""
    variants = {side: pick_variant(version, model) for side, (version, model) in picks.items()}
    return variants, {side: store.get_version(name, v.version).template for side, v in variants.items()}


def new_pair(name: str, variants: Mapping[str, Variant], values: Mapping[str, str]) -> dict[str, Any]:
    """What a side-by-side run keeps for its vote: the template, both variants and the inputs (answers follow)."""
    return {"name": name, "variants": dict(variants), "inputs": dict(values)}


def save_pair_vote(engine: Engine, pair: Mapping[str, Any], verdict: str, user: str | None, comment: str) -> str:
    """Store a vote on the side-by-side answers in view (for the variants that gave them); the message to show."""
    variants = pair["variants"]
    record_vote(
        engine,
        pair["name"],
        variants["A"],
        variants["B"],
        pair["inputs"],
        pair["A"],
        pair["B"],
        verdict,
        user=user,
        comment=comment,
    )
    return f"Vote saved: {VERDICTS[verdict]}."


def sets_by_name(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every test set, by name."""
    return {s["name"]: s for s in list_test_sets(engine)}


def create_set(engine: Engine, name: str, variables: list[str], user: str | None, csv_data: bytes | None) -> str:
    """Create a test set, with the cases of an uploaded CSV if any; the message to show (TestSetError if not)."""
    cases = parse_csv(csv_data, variables) if csv_data is not None else []
    create_test_set(engine, name, variables, user, cases)
    return f"Created {name.strip()} with {len(cases)} cases."


def cases_frame(engine: Engine, test_set: Mapping[str, Any]) -> pd.DataFrame:
    """A test set's cases as the editable table: one column per variable, then the expected answer."""
    records = case_records(load_cases(engine, test_set["id"]))
    return pd.DataFrame(records, columns=[*test_set["variables"], EXPECTED])


def save_cases(engine: Engine, test_set_id: int, edited: pd.DataFrame) -> str:
    """Replace a test set's cases with the edited table's rows; the message to show (TestSetError if not)."""
    return f"Saved {replace_cases(engine, test_set_id, edited.to_dict('records'))} cases."


def finished_caption(engine: Engine, run_id: int) -> str:
    """The line under a batch run that is no longer working: its status and where to open it."""
    return f"Run #{run_id} is {get_run(engine, run_id)['status']}; open it on the Results tab."


def save_row_vote(
    engine: Engine,
    run: Mapping[str, Any],
    row: Mapping[str, Any],
    pick: str,
    sides: list[tuple[str, str]],
    user: str | None,
    blind: bool,
) -> None:
    """Store `user`'s vote on one row of a batch run, `pick` being the position voted for (see row_verdict)."""
    record_row_vote(engine, run, row, row_verdict(pick, sides), user=user, case_id=row["case_id"], blind=blind)


def promote_b(store: TemplateStore, run: Mapping[str, Any], user: str | None) -> str:
    """Point production at the run's B; the message to show (CompareError or TemplateError when it cannot)."""
    return f"production now points at v{promote(store, run['template_name'], run['A'], run['B'], user)}."


def live_start_label(variants: Mapping[str, Variant]) -> str:
    """The button that starts a live experiment between the chosen versions."""
    return f"Start live experiment: A v{variants['A'].version} vs B v{variants['B'].version}"


def start_live(
    engine: Engine, store: TemplateStore, name: str, variants: Mapping[str, Variant], user: str | None, share: float
) -> str:
    """Start splitting `name`'s traffic between A's and B's versions; the experiment id (ExperimentError if not)."""
    return start_experiment(engine, store, name, variants["A"].version, variants["B"].version, user, share)
