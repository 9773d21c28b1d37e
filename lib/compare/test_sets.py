"""Test sets for Compare: cases from CSV or typed in, and cases taken from a 👎 answer in Chat."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lib.core.tables import ChatMessage, TestCase, TestSet

EXPECTED = "expected"  # the optional column holding the expected answer
MAX_CASES = 5000
MAX_NAME = 255  # test_sets.name is VARCHAR(255)


class TestSetError(ValueError):
    """A test set or its CSV cannot be used; the message says how to fix it."""

    __test__ = False


@dataclass(frozen=True)
class Case:
    """One input of a test set."""

    id: int | None
    values: dict[str, str]
    expected: str | None = None


def parse_csv(data: bytes, variables: list[str]) -> list[Case]:
    """Cases from CSV bytes whose columns are exactly `variables` (any order) plus optional `expected`."""
    if not data.strip():
        raise TestSetError("The CSV file is empty. Put the column names on the first line and one case per line.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TestSetError(
            f"The CSV file is not UTF-8 (byte {exc.start} cannot be read). In your spreadsheet "
            "choose 'CSV UTF-8' when saving, then upload it again."
        ) from exc
    if "\x00" in text:  # PostgreSQL text cannot hold NUL, and no spreadsheet writes one into a CSV
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise TestSetError(
            f"The CSV file contains a NUL character (line {line}), so it is probably not a text CSV. "
            "In your spreadsheet choose 'CSV UTF-8' when saving, then upload it again."
        )
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip() for h in next(reader, [])]
        body = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise TestSetError(f"The CSV file cannot be read: {exc}. Check its quotes.") from exc
    wanted = set(variables)
    missing = [v for v in variables if v not in header]
    unknown = [h for h in header if h not in wanted and h != EXPECTED]
    if missing or unknown or len(set(header)) != len(header):
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unexpected {', '.join(repr(h) for h in unknown)}")
        if len(set(header)) != len(header):
            problems.append("a repeated column")
        raise TestSetError(
            f"The CSV columns do not fit ({'; '.join(problems)}). The first line must name "
            f"{', '.join(variables) or 'no variables'}, plus optionally {EXPECTED}."
        )
    if not body:
        raise TestSetError("The CSV file has column names but no cases. Add one case per line under them.")
    if len(body) > MAX_CASES:
        raise TestSetError(f"The CSV file has {len(body)} cases; a test set holds at most {MAX_CASES}.")
    cases = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise TestSetError(
                f"Line {line} has {len(row)} values but the header has {len(header)} columns. "
                "Quote values that contain commas."
            )
        cells = dict(zip(header, row))
        expected = cells.pop(EXPECTED, "").strip() or None
        cases.append(Case(None, {v: cells[v] for v in variables}, expected))
    return cases


def create_test_set(
    engine: Engine, name: str, variables: list[str], user: str | None, cases: Iterable[Case] = ()
) -> int:
    """A new test set (optionally with cases); TestSetError when the name is taken or empty."""
    name = name.strip()
    if not name:
        raise TestSetError("Give the test set a name.")
    if len(name) > MAX_NAME or "\x00" in name:  # the column holds 255 characters; PostgreSQL refuses NUL
        raise TestSetError(f"Give the test set a shorter name: at most {MAX_NAME} characters, no control characters.")
    cases = list(cases)
    _check_no_nul(cases)
    try:
        with Session(engine) as s, s.begin():
            ts = TestSet(name=name, variables=list(variables), created_by=user)
            s.add(ts)
            s.flush()
            _add_cases(s, ts.id, cases, 0)
            return ts.id
    except IntegrityError as exc:
        raise TestSetError(f"A test set named {name!r} already exists; choose another name.") from exc


def list_test_sets(engine: Engine) -> list[dict[str, Any]]:
    """Every test set with its variables and number of cases, newest first."""
    with Session(engine) as s:
        counts = dict(s.execute(select(TestCase.test_set_id, func.count()).group_by(TestCase.test_set_id)).all())
        return [
            {"id": t.id, "name": t.name, "variables": t.variables, "cases": counts.get(t.id, 0)}
            for t in s.scalars(select(TestSet).order_by(TestSet.id.desc()))
        ]


def get_variables(engine: Engine, test_set_id: int) -> list[str]:
    """The variables (columns) of a test set."""
    with Session(engine) as s:
        ts = s.get(TestSet, test_set_id)
        if ts is None:
            raise TestSetError("That test set no longer exists.")
        return list(ts.variables)


def load_cases(engine: Engine, test_set_id: int) -> list[Case]:
    """The cases of a test set, in order."""
    with Session(engine) as s:
        rows = s.scalars(
            select(TestCase).where(TestCase.test_set_id == test_set_id).order_by(TestCase.position, TestCase.id)
        )
        return [Case(r.id, dict(r.values), r.expected) for r in rows]


def load_case(engine: Engine, test_set_id: int, case_id: int) -> Case | None:
    """One case of a test set (None if it was deleted): a queued run's item reads only its own row."""
    with Session(engine) as s:
        r = s.scalar(select(TestCase).where(TestCase.id == case_id, TestCase.test_set_id == test_set_id))
        return None if r is None else Case(r.id, dict(r.values), r.expected)


def replace_cases(engine: Engine, test_set_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Replace a test set's cases with edited rows (dicts of variables plus `expected`); returns how many."""
    variables = get_variables(engine, test_set_id)
    cases = []
    for i, row in enumerate(rows, start=1):
        values = {v: "" if row.get(v) is None else str(row.get(v)) for v in variables}
        if not any(values.values()):
            continue  # an empty line left in the editor
        if missing := [v for v in variables if not values[v].strip()]:
            raise TestSetError(f"Row {i} has no value for {', '.join(missing)}. Fill it in or delete the row.")
        expected = row.get(EXPECTED)
        cases.append(Case(None, values, str(expected).strip() if expected and str(expected).strip() else None))
    _check_no_nul(cases)
    with Session(engine) as s, s.begin():
        s.execute(delete(TestCase).where(TestCase.test_set_id == test_set_id))
        _add_cases(s, test_set_id, cases, 0)
    return len(cases)


def add_case_from_message(engine: Engine, test_set_id: int, message_id: int) -> int:
    """Add the question behind a Chat answer (and the context it was given) to a test set; returns the case id."""
    from lib.documents.citations import Source, context_values  # the Chat side's own formatting of retrieved passages

    variables = get_variables(engine, test_set_id)
    if "question" not in variables or not set(variables) <= {"question", "context"}:
        raise TestSetError(
            f"Chat answers give a question and their context, but this test set needs "
            f"{', '.join(variables)}. Pick a test set with the columns question (and context)."
        )
    with Session(engine) as s, s.begin():
        answer = s.get(ChatMessage, message_id)
        if answer is None or answer.role != "assistant":
            raise TestSetError("That answer no longer exists.")
        question = s.scalars(
            select(ChatMessage)
            .where(ChatMessage.session_id == answer.session_id, ChatMessage.role == "user", ChatMessage.id < message_id)
            .order_by(ChatMessage.id.desc())
            .limit(1)
        ).first()
        if question is None:
            raise TestSetError("No question was found before that answer.")
        values = context_values(question.content, [Source(**src) for src in answer.sources or []])
        values = {v: values[v] for v in variables}
        position = s.scalar(
            select(func.coalesce(func.max(TestCase.position), 0)).where(TestCase.test_set_id == test_set_id)
        )
        case = TestCase(
            test_set_id=test_set_id,
            position=(position or 0) + 1,
            values=values,
            source={"message_id": message_id, "request_id": answer.request_id, "answer": answer.content},
        )
        s.add(case)
        s.flush()
        return case.id


def _add_cases(s: Session, test_set_id: int, cases: list[Case], start: int) -> None:
    for i, case in enumerate(cases, start=start + 1):
        s.add(TestCase(test_set_id=test_set_id, position=i, values=case.values, expected=case.expected))


def _check_no_nul(cases: list[Case]) -> None:
    """TestSetError for a NUL character in a case: PostgreSQL cannot store one (SQLite would, silently)."""
    for i, case in enumerate(cases, start=1):
        if any("\x00" in v for v in case.values.values()) or "\x00" in (case.expected or ""):
            raise TestSetError(f"Case {i} contains a NUL character, which cannot be stored. Remove it and save again.")
