"""Stored pipelines: immutable versions, labels (`production` runs by default) and diffs, like templates."""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lib.core.tables import PipelineLabel, PipelineRecord, PipelineVersion, utcnow
from lib.pipelines.definition import PRODUCTION, Pipeline, PipelineError
from lib.prompts.diff import SectionDiff, diff_lines

LABEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class PipelineNotFound(PipelineError):
    """No pipeline, version or label by that name."""


@dataclass(frozen=True)
class PipelineInfo:
    """A pipeline in the list: its newest version and labels."""

    name: str
    description: str
    latest: int
    labels: dict[str, int]
    created_by: str | None
    created_at: datetime


def content_hash(p: Pipeline) -> str:
    """A hash of the versioned content; equal content, equal hash."""
    canonical = json.dumps(p.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class PipelineStore:
    """Pipelines in the database behind `engine`."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ---- reading -------------------------------------------------------------------------------

    def names(self) -> builtins.list[str]:
        """Every pipeline's name, alphabetically."""
        with self._session() as s:
            return list(s.scalars(select(PipelineRecord.name).order_by(PipelineRecord.name)))

    def list(self) -> builtins.list[PipelineInfo]:
        """Every pipeline with its newest version number and labels, by name."""
        with self._session() as s:
            out = []
            for rec in s.scalars(select(PipelineRecord).order_by(PipelineRecord.name)):
                last = s.scalar(
                    select(PipelineVersion)
                    .where(PipelineVersion.pipeline_id == rec.id)
                    .order_by(PipelineVersion.version.desc())
                    .limit(1)
                )
                if last is None:
                    continue
                labels = dict(
                    s.execute(
                        select(PipelineLabel.label, PipelineLabel.version).where(PipelineLabel.pipeline_id == rec.id)
                    )
                    .tuples()
                    .all()
                )
                desc = str(last.definition.get("description") or "")
                out.append(PipelineInfo(rec.name, desc, last.version, labels, rec.created_by, rec.created_at))
            return out

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Pipeline:
        """Version `version`, else the one `label` points at, else `production` (else the newest version)."""
        with self._session() as s:
            rec = self._record(s, name)
            if version is None:
                wanted = label or PRODUCTION
                version = s.scalar(
                    select(PipelineLabel.version).where(
                        PipelineLabel.pipeline_id == rec.id, PipelineLabel.label == wanted
                    )
                )
                if version is None and label is not None:
                    raise PipelineNotFound(f"Pipeline {name!r} has no label {label!r}.")
            query = select(PipelineVersion).where(PipelineVersion.pipeline_id == rec.id)
            row = s.scalar(
                query.where(PipelineVersion.version == version)
                if version is not None
                else query.order_by(PipelineVersion.version.desc()).limit(1)
            )
            if row is None:
                raise PipelineNotFound(f"Pipeline {name!r} has no version {version}.")
            return _pipeline(name, row)

    def history(self, name: str) -> builtins.list[Pipeline]:
        """Every version of `name`, newest first."""
        with self._session() as s:
            rec = self._record(s, name)
            rows = s.scalars(
                select(PipelineVersion)
                .where(PipelineVersion.pipeline_id == rec.id)
                .order_by(PipelineVersion.version.desc())
            )
            return [_pipeline(name, r) for r in rows]

    def labels(self, name: str) -> dict[str, int]:
        """label -> version for `name`."""
        with self._session() as s:
            rec = self._record(s, name)
            return dict(
                s.execute(
                    select(PipelineLabel.label, PipelineLabel.version)
                    .where(PipelineLabel.pipeline_id == rec.id)
                    .order_by(PipelineLabel.label)
                )
                .tuples()
                .all()
            )

    def diff(self, name: str, a: int, b: int) -> builtins.list[SectionDiff]:
        """Side-by-side diff of versions `a` (left) and `b` (right): one section per step name, then the rest."""
        left, right = self.get(name, a), self.get(name, b)
        return diff_pipelines(left, right)

    # ---- writing -------------------------------------------------------------------------------

    def save(self, pipeline: Pipeline, author: str | None, note: str = "", labels: tuple[str, ...] = ()) -> int:
        """Validate and save `pipeline` as its next version (v1 for a new name); returns the version number.

        Content equal to the newest version saves nothing and returns that version. A new pipeline's first
        version is labelled production, so it runs by default.
        """
        pipeline.validate()
        digest = content_hash(pipeline)
        try:
            with self._session() as s, s.begin():
                rec = s.scalar(select(PipelineRecord).where(PipelineRecord.name == pipeline.name).with_for_update())
                if rec is None:
                    rec = PipelineRecord(name=pipeline.name, created_by=author, created_at=utcnow())
                    s.add(rec)
                    s.flush()
                    labels = tuple(dict.fromkeys((PRODUCTION, *labels)))
                last = s.scalar(
                    select(PipelineVersion)
                    .where(PipelineVersion.pipeline_id == rec.id)
                    .order_by(PipelineVersion.version.desc())
                    .limit(1)
                )
                if last is not None and last.content_hash == digest:
                    number = last.version
                else:
                    number = (last.version if last else 0) + 1
                    s.add(
                        PipelineVersion(
                            pipeline_id=rec.id,
                            version=number,
                            definition=pipeline.to_dict(),
                            content_hash=digest,
                            author=author,
                            note=note or "",
                            created_at=utcnow(),
                        )
                    )
                    s.flush()
                for label in labels:
                    _move(s, rec.id, label, number, author)
        except IntegrityError as exc:
            raise PipelineError(
                f"Someone else saved {pipeline.name!r} at the same moment. Reload, check their version, save again."
            ) from exc
        return number

    def set_label(self, name: str, label: str, version: int, user: str | None) -> bool:
        """Point `label` at `version` (deploy or roll back); False when it already points there."""
        if not LABEL.fullmatch(label or ""):
            raise PipelineError(f"Label {label!r} must be lowercase letters, digits, '_' or '-' (e.g. staging).")
        with self._session() as s, s.begin():
            rec = self._record(s, name)
            if (
                s.scalar(
                    select(PipelineVersion.id).where(
                        PipelineVersion.pipeline_id == rec.id, PipelineVersion.version == version
                    )
                )
                is None
            ):
                raise PipelineNotFound(f"Pipeline {name!r} has no version {version}, so {label} cannot point at it.")
            return _move(s, rec.id, label, version, user)

    def _record(self, s: Session, name: str) -> PipelineRecord:
        rec = s.scalar(select(PipelineRecord).where(PipelineRecord.name == name))
        if rec is None:
            raise PipelineNotFound(f"There is no pipeline named {name!r}.")
        return rec


def _move(s: Session, pid: int, label: str, version: int, user: str | None) -> bool:
    if not LABEL.fullmatch(label or ""):
        raise PipelineError(f"Label {label!r} must be lowercase letters, digits, '_' or '-' (e.g. staging).")
    row = s.scalar(select(PipelineLabel).where(PipelineLabel.pipeline_id == pid, PipelineLabel.label == label))
    if row is not None and row.version == version:
        return False
    if row is None:
        s.add(PipelineLabel(pipeline_id=pid, label=label, version=version, moved_by=user, moved_at=utcnow()))
    else:
        row.version, row.moved_by, row.moved_at = version, user, utcnow()
    return True


def _pipeline(name: str, row: PipelineVersion) -> Pipeline:
    p = Pipeline.from_dict(name, row.definition, row.version)
    p.meta.update(author=row.author, note=row.note, created_at=row.created_at)
    return p


def _step_lines(p: Pipeline, name: str) -> list[str]:
    try:
        step = p.step(name)
    except PipelineError:
        return []
    return json.dumps(step.to_dict(), indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def diff_pipelines(a: Pipeline, b: Pipeline) -> list[SectionDiff]:
    """Section by section diff of `a` (left) against `b` (right): description, step order, then each step."""
    sections = [
        SectionDiff("Description", diff_lines(a.description.splitlines(), b.description.splitlines())),
        SectionDiff("Steps", diff_lines([s.name for s in a.steps], [s.name for s in b.steps])),
    ]
    names = list(dict.fromkeys([s.name for s in a.steps] + [s.name for s in b.steps]))
    sections += [SectionDiff(f"Step {n}", diff_lines(_step_lines(a, n), _step_lines(b, n))) for n in names]
    return sections
