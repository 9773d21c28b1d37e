"""Stored prompt templates: immutable versions, labels and their history, export and import."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lib.core.tables import LabelMove, PromptTemplate, TemplateLabel, TemplateVersion, utcnow
from lib.prompts.builtin import BUILTINS
from lib.prompts.diff import SectionDiff, diff_templates
from lib.prompts.language import (
    InvalidTemplate,
    MissingVariables,
    Template,
    TemplateError,
    UnknownVariables,
    template_from_content,
    validate,
)

LABEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PRODUCTION, STAGING = "production", "staging"
EXPORT_FORMAT = "ai-workbench/prompt-template@1"
SYSTEM_USER = "workbench"


class TemplateNotFound(TemplateError):
    """No template, version or label by that name."""


class TemplateExists(TemplateError):
    """A template with that name already exists."""


class ConcurrentSave(TemplateError):
    """Someone else saved the same template at the same moment."""


class ImportFailed(TemplateError):
    """An export file could not be imported; nothing was changed."""


@dataclass(frozen=True)
class Version:
    """One stored version of a template."""

    name: str
    version: int
    template: Template
    author: str | None
    note: str
    created_at: datetime
    content_hash: str


@dataclass(frozen=True)
class LabelChange:
    """One move of a label."""

    label: str
    from_version: int | None
    to_version: int
    moved_by: str | None
    moved_at: datetime
    note: str


@dataclass
class ImportReport:
    """What an import did."""

    name: str
    created: bool = False
    added: list[tuple[int, int]] = field(default_factory=list)  # (version in the file, version here)
    skipped: list[int] = field(default_factory=list)  # file versions whose content is already here
    labels_set: dict[str, int] = field(default_factory=dict)
    labels_not_moved: dict[str, int] = field(default_factory=dict)  # existing templates keep their labels

    def summary(self) -> str:
        """One sentence for the user."""
        parts = [
            f"{'Created' if self.created else 'Updated'} {self.name}: {len(self.added)} version(s) added",
            f"{len(self.skipped)} already present",
        ]
        if self.labels_set:
            parts.append("labels " + ", ".join(f"{k}→v{v}" for k, v in self.labels_set.items()))
        if self.labels_not_moved:
            parts.append(
                "labels left as they were (move them yourself): "
                + ", ".join(f"{k} (file: v{v})" for k, v in self.labels_not_moved.items())
            )
        return "; ".join(parts) + "."


def check_builtin_variables(template: Template, names: list[str]) -> None:
    """A template the app runs must use exactly the variables the app fills in."""
    if template.name not in BUILTINS:
        return
    expected = BUILTINS[template.name][1]
    where = f" — {template.name} is run by the app, which fills in only {', '.join(sorted(expected)) or 'none'}"
    if unknown := sorted(set(names) - expected):
        raise UnknownVariables(unknown, where)
    if missing := sorted(expected - set(names)):
        raise MissingVariables(missing, where)


def validate_for_save(template: Template) -> list[str]:
    """validate() plus the rules of templates the app runs; returns the variables."""
    names = validate(template)
    check_builtin_variables(template, names)
    return names


class TemplateStore:
    """Templates in the database behind `engine`."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ---- reading -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """All template names, alphabetically."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.scalars(select(PromptTemplate.name).order_by(PromptTemplate.name)))

    def get_version(self, name: str, version: int) -> Version:
        """Version `version` of `name`; TemplateNotFound if either is missing."""
        with Session(self.engine, expire_on_commit=False) as s:
            tid = self._id(s, name)
            row = s.scalar(
                select(TemplateVersion).where(TemplateVersion.template_id == tid, TemplateVersion.version == version)
            )
            if row is None:
                raise TemplateNotFound(f"{name} has no version {version}.")
            return _version(name, row)

    def latest(self, name: str) -> Version:
        """The newest version of `name`."""
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.scalar(
                select(TemplateVersion)
                .where(TemplateVersion.template_id == self._id(s, name))
                .order_by(TemplateVersion.version.desc())
                .limit(1)
            )
            if row is None:
                raise TemplateNotFound(f"{name} has no versions.")
            return _version(name, row)

    def get_by_label(self, name: str, label: str = PRODUCTION) -> Version:
        """The version `label` points at (how the app reads its prompts)."""
        return self.get_version(name, self._label_version(name, label))

    def labels(self, name: str) -> dict[str, int]:
        """label → version for `name`."""
        with Session(self.engine, expire_on_commit=False) as s:
            return dict(
                s.execute(
                    select(TemplateLabel.label, TemplateLabel.version)
                    .where(TemplateLabel.template_id == self._id(s, name))
                    .order_by(TemplateLabel.label)
                )
                .tuples()
                .all()
            )

    def history(self, name: str) -> list[Version]:
        """Every version of `name`, newest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            rows = s.scalars(
                select(TemplateVersion)
                .where(TemplateVersion.template_id == self._id(s, name))
                .order_by(TemplateVersion.version.desc())
            )
            return [_version(name, r) for r in rows]

    def label_history(self, name: str) -> list[LabelChange]:
        """Every label move of `name`, newest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            rows = s.scalars(
                select(LabelMove).where(LabelMove.template_id == self._id(s, name)).order_by(LabelMove.id.desc())
            )
            return [LabelChange(r.label, r.from_version, r.to_version, r.moved_by, r.moved_at, r.note) for r in rows]

    def diff(self, name: str, a: int, b: int) -> list[SectionDiff]:
        """Side-by-side diff of versions `a` (left) and `b` (right)."""
        return diff_templates(self.get_version(name, a).template, self.get_version(name, b).template)

    # ---- writing -------------------------------------------------------------------------------

    def create(
        self, template: Template, author: str | None, note: str = "Created", labels: tuple[str, ...] = ()
    ) -> Version:
        """A new template saved as v1 (optionally with labels pointing at it)."""
        validate_for_save(template)
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                if s.scalar(select(PromptTemplate.id).where(PromptTemplate.name == template.name)):
                    raise TemplateExists(
                        f"A template named {template.name} already exists; open it and save a new version instead."
                    )
                tpl = PromptTemplate(
                    name=template.name, description=template.description, created_by=author, created_at=utcnow()
                )
                s.add(tpl)
                s.flush()
                row = self._add_version(s, tpl, template, 1, author, note)
                for label in labels:
                    self._move(s, tpl.id, label, 1, author, "created with the template")
        except IntegrityError as exc:
            raise TemplateExists(f"A template named {template.name} was just created by someone else.") from exc
        return _version(template.name, row)

    def save_version(self, template: Template, author: str | None, note: str = "") -> Version | None:
        """Save `template` as the next version; None when it equals the newest version (nothing saved)."""
        validate_for_save(template)
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                tpl = self._template(s, template.name, lock=True)
                last = s.scalar(
                    select(TemplateVersion)
                    .where(TemplateVersion.template_id == tpl.id)
                    .order_by(TemplateVersion.version.desc())
                    .limit(1)
                )
                if last is not None and last.content_hash == template.content_hash():
                    return None
                row = self._add_version(s, tpl, template, (last.version if last else 0) + 1, author, note)
                tpl.description = template.description
        except IntegrityError as exc:
            raise ConcurrentSave(
                f"Someone else saved {template.name} at the same moment. Reload the page, "
                "check their version, and save again."
            ) from exc
        return _version(template.name, row)

    def move_label(self, name: str, label: str, version: int, user: str | None, note: str = "") -> bool:
        """Point `label` at `version` (deploy or roll back), recording the move; False if already there."""
        if not LABEL.fullmatch(label or ""):
            raise InvalidTemplate(f"Label {label!r} must be lowercase letters, digits, '_' or '-' (e.g. staging).")
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            tpl = self._template(s, name, lock=True)
            exists = s.scalar(
                select(TemplateVersion.id).where(
                    TemplateVersion.template_id == tpl.id, TemplateVersion.version == version
                )
            )
            if exists is None:
                raise TemplateNotFound(f"{name} has no version {version}, so {label} cannot point at it.")
            return self._move(s, tpl.id, label, version, user, note)

    # ---- export and import ---------------------------------------------------------------------

    def export(self, name: str, fmt: str = "yaml") -> str:
        """`name` with all its versions, labels and label history as YAML or JSON text."""
        data = {
            "format": EXPORT_FORMAT,
            "name": name,
            "labels": self.labels(name),
            "versions": [
                {
                    "version": v.version,
                    "author": v.author,
                    "created_at": v.created_at.isoformat(),
                    "note": v.note,
                    **v.template.content(),
                }
                for v in reversed(self.history(name))
            ],
            "label_history": [
                {
                    "label": m.label,
                    "from_version": m.from_version,
                    "to_version": m.to_version,
                    "moved_by": m.moved_by,
                    "moved_at": m.moved_at.isoformat(),
                    "note": m.note,
                }
                for m in reversed(self.label_history(name))
            ],
        }
        if fmt == "json":
            return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if fmt == "yaml":
            return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
        raise ValueError(f"Export format must be yaml or json, not {fmt!r}.")

    def import_text(self, text: str, user: str | None) -> ImportReport:
        """Import an export (YAML or JSON); never overwrites a version: new content becomes new versions."""
        name, versions, labels = _parse_export(text)
        report = ImportReport(name)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            tpl = s.scalar(select(PromptTemplate).where(PromptTemplate.name == name).with_for_update())
            if tpl is None:
                report.created = True
                tpl = PromptTemplate(
                    name=name, description=versions[-1][1].description, created_by=user, created_at=utcnow()
                )
                s.add(tpl)
                s.flush()
                for number, template, meta in versions:
                    self._add_version(
                        s,
                        tpl,
                        template,
                        number,
                        meta.get("author"),
                        str(meta.get("note") or ""),
                        _when(meta.get("created_at")),
                    )
                    report.added.append((number, number))
                for label, number in labels.items():
                    self._move(s, tpl.id, label, number, user, "imported")
                    report.labels_set[label] = number
                return report
            present = set(s.scalars(select(TemplateVersion.content_hash).where(TemplateVersion.template_id == tpl.id)))
            last = s.scalar(select(func.max(TemplateVersion.version)).where(TemplateVersion.template_id == tpl.id)) or 0
            for number, template, meta in versions:
                if template.content_hash() in present:
                    report.skipped.append(number)
                    continue
                last += 1
                author = meta.get("author") or "unknown"
                note = f"Imported (v{number} by {author} in the file): {meta.get('note') or ''}"
                self._add_version(s, tpl, template, last, user, note.strip())
                present.add(template.content_hash())
                report.added.append((number, last))
                tpl.description = template.description
            report.labels_not_moved = dict(labels)
        return report

    # ---- internals -----------------------------------------------------------------------------

    def _id(self, s: Session, name: str) -> int:
        return self._template(s, name).id

    def _template(self, s: Session, name: str, lock: bool = False) -> PromptTemplate:
        query = select(PromptTemplate).where(PromptTemplate.name == name)
        tpl = s.scalar(query.with_for_update() if lock else query)
        if tpl is None:
            raise TemplateNotFound(f"There is no template named {name!r}.")
        return tpl

    def _label_version(self, name: str, label: str) -> int:
        with Session(self.engine, expire_on_commit=False) as s:
            version = s.scalar(
                select(TemplateLabel.version).where(
                    TemplateLabel.template_id == self._id(s, name), TemplateLabel.label == label
                )
            )
        if version is None:
            raise TemplateNotFound(f"{name} has no label {label!r}; point it at a version on the Prompts page.")
        return version

    @staticmethod
    def _add_version(
        s: Session,
        tpl: PromptTemplate,
        template: Template,
        number: int,
        author: str | None,
        note: str,
        created_at: datetime | None = None,
    ) -> TemplateVersion:
        row = TemplateVersion(
            template_id=tpl.id,
            version=number,
            content=template.content(),
            content_hash=template.content_hash(),
            author=author,
            note=note or "",
            created_at=created_at or utcnow(),
        )
        s.add(row)
        s.flush()
        return row

    @staticmethod
    def _move(s: Session, tid: int, label: str, version: int, user: str | None, note: str) -> bool:
        row = s.scalar(
            select(TemplateLabel)
            .where(TemplateLabel.template_id == tid, TemplateLabel.label == label)
            .with_for_update()
        )
        if row is not None and row.version == version:
            return False
        previous = row.version if row is not None else None
        if row is None:
            s.add(TemplateLabel(template_id=tid, label=label, version=version, updated_at=utcnow(), updated_by=user))
        else:
            row.version, row.updated_at, row.updated_by = version, utcnow(), user
        s.add(
            LabelMove(
                template_id=tid,
                label=label,
                from_version=previous,
                to_version=version,
                moved_by=user,
                moved_at=utcnow(),
                note=note or "",
            )
        )
        return True


def ensure_builtin_templates(engine: Engine) -> list[str]:
    """Create the templates the app runs (v1, labelled production) when they are missing; returns those made."""
    store, made = TemplateStore(engine), []
    existing = set(store.names())
    for name, (template, _) in BUILTINS.items():
        if name in existing:
            continue
        try:
            store.create(template, SYSTEM_USER, "Shipped with the workbench", labels=(PRODUCTION,))
            made.append(name)
        except TemplateExists:  # another process seeded it first
            pass
    return made


def _version(name: str, row: TemplateVersion) -> Version:
    return Version(
        name,
        row.version,
        template_from_content(name, row.content),
        row.author,
        row.note,
        row.created_at,
        row.content_hash,
    )


def _when(value: Any) -> datetime | None:
    """The time an exported version was saved, if the file says (in UTC when it names no zone)."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class _BlockDumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as readable `|` blocks (diffs well in git)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") and value == value.rstrip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)

_VERSION_META = ("version", "author", "created_at", "note")


MAX_VERSION = 2**31 - 1  # the version column is a 32-bit integer on PostgreSQL


def _is_version_number(value: Any) -> bool:
    """A whole number (not a boolean) that fits the version column."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VERSION


def _parse_export(text: str) -> tuple[str, list[tuple[int, Template, dict[str, Any]]], dict[str, int]]:
    """(name, [(version, template, meta)], labels) from export text; ImportFailed says what is wrong."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ImportFailed(f"The file is neither valid YAML nor JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ImportFailed(f"This is not a template export (expected format: {EXPORT_FORMAT}).")
    name, raw_versions, labels = data.get("name"), data.get("versions"), data.get("labels") or {}
    if not isinstance(name, str) or not isinstance(raw_versions, list) or not raw_versions:
        raise ImportFailed("The export needs a name and a non-empty list of versions.")
    versions, numbers = [], set()
    for raw in raw_versions:
        if not isinstance(raw, dict) or not _is_version_number(raw.get("version")):
            raise ImportFailed(f"Every version needs a whole version number from 1 to {MAX_VERSION}.")
        number = raw["version"]
        if number in numbers:
            raise ImportFailed(f"Version {number} appears twice in the file.")
        numbers.add(number)
        try:
            template = template_from_content(name, {k: v for k, v in raw.items() if k not in _VERSION_META})
            validate_for_save(template)
        except (TemplateError, TypeError) as exc:
            raise ImportFailed(f"Version {number} in the file cannot be imported: {exc}") from exc
        versions.append((number, template, {k: raw.get(k) for k in _VERSION_META}))
    if not isinstance(labels, dict) or any(not _is_version_number(v) or v not in numbers for v in labels.values()):
        raise ImportFailed("Labels must point at versions that are in the file.")
    for label in labels:
        if not LABEL.fullmatch(str(label)):
            raise ImportFailed(f"Label {label!r} is not a valid label name.")
    versions.sort(key=lambda v: v[0])
    return name, versions, labels


def history_table(versions: list[Version], labels: dict[str, int]) -> list[dict[str, Any]]:
    """Rows of the version history as shown to authors, newest first."""
    return [
        {
            "version": f"v{v.version}",
            "labels": ", ".join(k for k, n in labels.items() if n == v.version),
            "author": v.author,
            "saved (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M"),
            "note": v.note,
        }
        for v in versions
    ]


def label_table(moves: list[LabelChange]) -> list[dict[str, Any]]:
    """Rows of the label history as shown to authors, newest first."""
    return [
        {
            "label": m.label,
            "from": f"v{m.from_version}" if m.from_version else "(new)",
            "to": f"v{m.to_version}",
            "by": m.moved_by,
            "when (UTC)": m.moved_at.strftime("%Y-%m-%d %H:%M"),
            "note": m.note,
        }
        for m in moves
    ]
