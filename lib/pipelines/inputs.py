"""A run's input rows: read from CSV or JSONL (or a test set), checked against what the pipeline reads, previewed.

Also resolves each prompt step's template (by label or version) once, so a run pins the versions it started with.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from lib.pipelines.definition import Pipeline, PipelineError, PromptStep, Step, check_reference, row_columns
from lib.prompts.language import TemplateError, template_variables
from lib.prompts.store import TemplateStore, Version

MAX_INPUT_BYTES = 20 * 2**20
MAX_ROWS = 20_000
MAX_COLUMNS = 200
MAX_CELL_CHARS = 100_000


class InputError(PipelineError):
    """The input rows cannot be read; the message says which line and why."""


class MissingColumns(PipelineError):
    """The rows lack fields the pipeline reads."""

    def __init__(self, names: Sequence[str], have: Sequence[str]):
        super().__init__(
            f"The rows have no column {', '.join(repr(n) for n in names)}, which the pipeline reads. "
            f"Columns found: {', '.join(have) or 'none'}."
        )
        self.names = list(names)


@dataclass(frozen=True)
class ResolvedPipeline:
    """A pipeline with each prompt step's template version fixed (what a run stores and executes)."""

    pipeline: Pipeline
    templates: dict[str, Version]  # prompt step name -> template version

    def variables(self, step: str) -> list[str]:
        """The variables the step's template uses."""
        return template_variables(self.templates[step].template)

    def columns(self) -> list[str]:
        """Row fields the pipeline reads, in order of first use."""
        return row_columns(self.pipeline, {n: self.variables(n) for n in self.templates})


def resolve_templates(pipeline: Pipeline, store: TemplateStore) -> ResolvedPipeline:
    """Look up every prompt step's template and check its variables; PipelineError naming the step otherwise."""
    pipeline.validate()
    versions: dict[str, Version] = {}
    earlier: dict[str, Step] = {}
    all_names = {s.name for s in pipeline.steps}
    for i, step in enumerate(pipeline.steps):
        if isinstance(step, PromptStep):
            where = f"Step {i + 1} ({step.name!r})"
            try:
                ref = step.template_ref
                version = (
                    store.get_version(step.template, ref)
                    if isinstance(ref, int)
                    else store.get_by_label(step.template, ref)
                )
                names = template_variables(version.template)
            except TemplateError as exc:
                raise PipelineError(f"{where}: {exc}") from exc
            for name in names:
                check_reference(name, earlier, all_names, where)
            versions[step.name] = version
        earlier[step.name] = step
    return ResolvedPipeline(pipeline, versions)


def pinned_templates(resolved: ResolvedPipeline) -> dict[str, int]:
    """step -> template version, as a run stores it."""
    return {name: v.version for name, v in resolved.templates.items()}


def resolve_pinned(pipeline: Pipeline, store: TemplateStore, pinned: Mapping[str, int]) -> ResolvedPipeline:
    """The ResolvedPipeline a run started with (its template versions, whatever the labels say now)."""
    versions = {}
    for step in pipeline.prompt_steps():
        versions[step.name] = store.get_version(step.template, int(pinned[step.name]))
    return ResolvedPipeline(pipeline, versions)


def _cell(value: Any, where: str) -> Any:
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        raise InputError(f"{where}: a value is {len(value):,} characters; the limit is {MAX_CELL_CHARS:,}.")
    return value


def read_rows(data: bytes, filename: str) -> list[dict[str, Any]]:
    """Rows of a CSV (header row first) or JSONL (one object a line) file; InputError naming the line otherwise."""
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"The file is {len(data) / 2**20:.1f} MB; the limit is {MAX_INPUT_BYTES // 2**20} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"The file is not UTF-8 text (byte {exc.start}). Save it as UTF-8 and upload it again."
        ) from exc
    lower = filename.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        rows = _read_jsonl(text)
    elif lower.endswith((".csv", ".txt")):
        rows = _read_csv(text)
    else:
        raise InputError(f"{filename!r}: upload a .csv or .jsonl file.")
    if not rows:
        raise InputError("The file has no rows.")
    return rows


def _read_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            return []
        header = [h.strip() for h in header]
        if len(header) > MAX_COLUMNS:
            raise InputError(f"The file has {len(header)} columns; the limit is {MAX_COLUMNS}.")
        if len(set(header)) != len(header) or "" in header:
            raise InputError("Every column needs a name, and no two columns may share one (check the header row).")
        rows: list[dict[str, Any]] = []
        for line_no, record in enumerate(reader, start=2):
            if not any(c.strip() for c in record):
                continue
            if len(record) != len(header):
                raise InputError(f"Line {line_no} has {len(record)} values; the header has {len(header)} columns.")
            if len(rows) >= MAX_ROWS:
                raise InputError(f"The file has more than {MAX_ROWS:,} rows; split it into several runs.")
            rows.append({h: _cell(v, f"Line {line_no}") for h, v in zip(header, record, strict=True)})
    except csv.Error as exc:
        raise InputError(f"The CSV cannot be read: {exc}.") from exc
    return rows


def _read_jsonl(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"Line {line_no} is not JSON: {exc.msg} (column {exc.colno}).") from exc
        if not isinstance(value, dict):
            raise InputError(f'Line {line_no} must be a JSON object like {{"ticket": "..."}}.')
        if len(value) > MAX_COLUMNS:
            raise InputError(f"Line {line_no} has {len(value)} fields; the limit is {MAX_COLUMNS}.")
        if len(rows) >= MAX_ROWS:
            raise InputError(f"The file has more than {MAX_ROWS:,} rows; split it into several runs.")
        rows.append({str(k): _cell(v, f"Line {line_no}") for k, v in value.items()})
    return rows


def rows_from_test_set(engine: Engine, test_set_id: int) -> list[dict[str, Any]]:
    """The cases of a Compare test set as rows (their variables; `expected` too when a case has one)."""
    from lib.compare.test_sets import load_cases

    rows: list[dict[str, Any]] = []
    for case in load_cases(engine, test_set_id):
        row = dict(case.values)
        if case.expected:
            row.setdefault("expected", case.expected)
        rows.append(row)
    if not rows:
        raise InputError("That test set has no cases.")
    return rows


def missing_columns(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns the pipeline reads that the rows lack (checked on every row's keys)."""
    have: set[str] = set()
    for row in rows:
        have.update(row)
    return [c for c in columns if c not in have]


def check_rows(resolved: ResolvedPipeline, rows: Sequence[Mapping[str, Any]]) -> None:
    """MissingColumns when a column the pipeline reads is in no row; InputError when there are none or too many."""
    if not rows:
        raise InputError("There are no rows to run.")
    if len(rows) > MAX_ROWS:
        raise InputError(f"{len(rows):,} rows; a run takes at most {MAX_ROWS:,}.")
    missing = missing_columns(resolved.columns(), rows)
    if missing:
        have: dict[str, None] = {}
        for row in rows[:50]:
            have.update(dict.fromkeys(row))
        raise MissingColumns(missing, list(have))


def preview(resolved: ResolvedPipeline, rows: Sequence[Mapping[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The first `n` rows mapped to the pipeline's variables (column -> value); MissingColumns first if any lack."""
    check_rows(resolved, rows)
    columns = resolved.columns()
    return [{c: row.get(c) for c in columns} for row in rows[:n]]
