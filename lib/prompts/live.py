"""Which version of a template serves this request: a running live A/B experiment assigns each user a side.

Chat calls `live_variant_for` before running a template; lib.compare starts, stops and reports experiments.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.core.tables import Experiment


class LiveAssignment(NamedTuple):
    """The side of a running experiment a user is on, and the template version that side runs."""

    experiment_id: str
    variant: str  # "A" or "B"
    version: int


def assign_variant(experiment_id: str, user: str | None, share_b: float) -> str:
    """A or B for this user in this experiment: a hash, so the same user always gets the same side."""
    digest = hashlib.sha256(f"{experiment_id}:{user or ''}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "B" if point < share_b else "A"


def active_experiment(engine: Engine, template_name: str) -> Experiment | None:
    """The running experiment on a template, if any."""
    with Session(engine, expire_on_commit=False) as s:
        return s.scalars(
            select(Experiment)
            .where(Experiment.template_name == template_name, Experiment.status == "active")
            .order_by(Experiment.created_at.desc())
            .limit(1)
        ).first()


def live_variant_for(engine: Engine, template_name: str, user: str | None) -> LiveAssignment | None:
    """The experiment side and template version to run for this user, or None to run production."""
    exp = active_experiment(engine, template_name)
    if exp is None:
        return None
    variant = assign_variant(exp.id, user, exp.share_b)
    return LiveAssignment(exp.id, variant, exp.version_b if variant == "B" else exp.version_a)
