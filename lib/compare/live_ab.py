"""Live A/B: split one template's real traffic between two versions, sticky per user, and report it.

Wiring (for the Chat side): before running `rag.answer`, call
`live_variant_for(engine, "rag.answer", user)`; when it returns (experiment_id, variant, version),
run that version and pass `experiment_id` and `variant` in the CallContext; when it returns None,
run production as today.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.compare.stats import Interval, mean_interval, wilson_interval
from lib.core.tables import Experiment, Feedback, LlmCall, utcnow
from lib.prompts.live import active_experiment
from lib.prompts.store import TemplateStore

ERROR_STATUSES = ("error", "blocked", "invalid")


class ExperimentError(ValueError):
    """An experiment cannot be started or stopped as asked; the message says why."""


def start_experiment(
    engine: Engine,
    store: TemplateStore,
    template_name: str,
    version_a: int,
    version_b: int,
    user: str | None,
    share_b: float = 0.5,
) -> str:
    """Start splitting `template_name`'s traffic; ExperimentError if one is already running or versions are bad."""
    if version_a == version_b:
        raise ExperimentError("A and B are the same version; pick two different versions.")
    if not 0 < share_b < 1:
        raise ExperimentError(f"The share of users on B must be between 0 and 1 (exclusive), not {share_b}.")
    for v in (version_a, version_b):
        store.get_version(template_name, v)  # TemplateNotFound names the missing version
    if active_experiment(engine, template_name) is not None:
        raise ExperimentError(f"An experiment on {template_name} is already running; stop it first.")
    exp_id = f"exp-{uuid.uuid4().hex[:12]}"
    with Session(engine) as s, s.begin():
        s.add(
            Experiment(
                id=exp_id,
                template_name=template_name,
                version_a=version_a,
                version_b=version_b,
                share_b=share_b,
                status="active",
                created_by=user,
            )
        )
    return exp_id


def stop_experiment(engine: Engine, experiment_id: str) -> None:
    """Stop an experiment: from the next call on, all traffic runs production again."""
    with Session(engine) as s, s.begin():
        exp = s.get(Experiment, experiment_id)
        if exp is None:
            raise ExperimentError("That experiment no longer exists.")
        exp.status, exp.stopped_at = "stopped", exp.stopped_at or utcnow()


@dataclass
class LiveVariant:
    """One side of a live experiment, from the call log and the 👍/👎 on its answers."""

    variant: str
    calls: int
    users: int
    error_rate: Interval
    cost: Interval  # mean USD per call
    latency: Interval  # mean ms per call
    thumbs_up: Interval  # share of rated answers rated 👍
    rated: int


def live_report(engine: Engine, experiment_id: str) -> list[LiveVariant]:
    """Per variant: calls, users, error rate, mean cost and latency, 👍 rate, each with a 95% interval."""
    with Session(engine) as s:
        calls = s.execute(
            select(LlmCall.variant, LlmCall.user, LlmCall.status, LlmCall.cost_usd, LlmCall.latency_ms, Feedback.rating)
            .outerjoin(Feedback, Feedback.request_id == LlmCall.request_id)
            .where(LlmCall.experiment_id == experiment_id)
        ).all()
    out = []
    for side in ("A", "B"):
        rows = [c for c in calls if c.variant == side]
        ok = [c for c in rows if c.status not in ERROR_STATUSES]
        ratings = [c.rating for c in rows if c.rating is not None]
        out.append(
            LiveVariant(
                side,
                len(rows),
                len({c.user for c in rows}),
                wilson_interval(len(rows) - len(ok), len(rows)),
                mean_interval([c.cost_usd for c in ok if c.cost_usd is not None]),
                mean_interval([c.latency_ms for c in ok if c.latency_ms is not None]),
                wilson_interval(sum(r > 0 for r in ratings), len(ratings)),
                len(ratings),
            )
        )
    return out


def report_table(report: list[LiveVariant]) -> list[dict[str, Any]]:
    """Rows for a table, one per variant."""
    return [
        {
            "variant": v.variant,
            "calls": v.calls,
            "users": v.users,
            "error rate": str(v.error_rate),
            "mean cost (USD)": str(v.cost),
            "mean latency (ms)": str(v.latency),
            "👍 rate": str(v.thumbs_up),
            "rated answers": v.rated,
        }
        for v in report
    ]
