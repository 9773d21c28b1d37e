"""Drill: Hypothesis throws random and malformed input at every place the workbench reads user files or text.

- parsing: random bytes, truncated and bit-flipped PDFs and DOCX zips, wrong extensions, huge lines, NULs →
  pages of text or a ParseError, nothing else; a handful go through the whole Indexer (real MiniLM, embedded
  Chroma in tmp_path): indexed with its chunks stored, or failed with a reason and no chunk left behind;
- templates: random template text, fields and values → validate/render work or raise a TemplateError;
  random export files → import works or raises ImportFailed and changes nothing;
- test sets: random CSV bytes and names → a test set with exactly the parsed cases, or a TestSetError and
  no row left behind (SQLite and PostgreSQL);
- saved conversations: any question, answer and comment text is stored and read back (SQLite and PostgreSQL).

Examples are derandomized (the same inputs on every run, so CI is reproducible) and bounded in number.
Reproduce the figures: .venv/bin/python -m pytest tests/test_drill_fuzz.py -s
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import zipfile
from collections import Counter

import pytest
import yaml
from files import make_docx, make_pdf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.compare.test_sets import TestSetError, create_test_set, load_cases, parse_csv
from lib.core.tables import Document, PromptTemplate, TemplateLabel, TemplateVersion, TestCase, TestSet
from lib.documents.parsing import Page, ParseError, parse_file
from lib.prompts.language import Template, TemplateError, render, render_text, validate, variables
from lib.prompts.store import EXPORT_FORMAT, TemplateStore

FIGURES: Counter[str] = Counter()  # examples per target, printed at the end of each test


def drill(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def mostly(good, bad):
    """`good` three times in four, else `bad` (one_of would let the many kinds of `bad` crowd `good` out)."""
    return st.sampled_from("ggbg").flatmap(lambda pick: good if pick == "g" else bad)


# ---- files ------------------------------------------------------------------------------------------

PDF = make_pdf(["Holidays. Every employee gets 28 days of paid holiday.", "Expenses within 30 days."])
DOCX = make_docx(["Travel policy", "Book trains at least a week ahead."])
NAMES = [
    "handbook.pdf",
    "policy.docx",
    "notes.txt",
    "readme.md",
    "page.html",
    "page.htm",
    "table.csv",
    "SCAN.PDF",
    "LICENSE",
    "archive.zip",
    "setup.exe",
    "report.pdf.docx",
    "../../etc/passwd.txt",
    "weird name \u00e9\u4e2d.md",
    ".hidden",
    "data.CSV",
]


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf)


def _zip_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, body in members:
            z.writestr(name, body)
    return out.getvalue()


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=30)
text_bytes = st.text(st.characters(codec="utf-8"), max_size=2000).map(str.encode)
FILE_BYTES = st.one_of(
    st.binary(max_size=3000),
    st.sampled_from([PDF, DOCX]).flatmap(lambda d: st.integers(0, len(d)).map(lambda n: d[:n])),  # truncated
    st.builds(_mutate, st.sampled_from([PDF, DOCX]), edits),  # bit-flipped
    st.builds(
        lambda a, b: a + b,
        st.sampled_from([b"%PDF-1.4\n", b"PK\x03\x04", b"\xef\xbb\xbf", b"<html>"]),
        st.binary(max_size=2000),
    ),  # a believable header, then garbage
    st.builds(
        _zip_of,
        st.lists(
            st.tuples(st.sampled_from(["word/document.xml", "[Content_Types].xml", "x"]), st.binary(max_size=300)),
            max_size=3,
            unique_by=lambda m: m[0],
        ),
    ),  # zips that are not DOCX
    text_bytes,
    st.builds(lambda t, n: t.replace(b" ", b"\x00" * n), text_bytes, st.integers(1, 3)),  # NULs in text
    st.builds(
        lambda c, n, tail: c * n + tail,
        st.sampled_from([b"a", b"word ", b"\xff", b",", b"<p>"]),
        st.integers(10_000, 400_000),
        st.binary(max_size=50),
    ),  # huge lines
)


@given(name=st.one_of(st.sampled_from(NAMES), st.text(max_size=40)), data=FILE_BYTES)
@drill(max_examples=400)
def test_parsing_random_and_broken_files_gives_text_or_a_parse_error(name, data):
    FIGURES["parse"] += 1
    try:
        pages = parse_file(name, data, max_bytes=300_000)
    except ParseError as exc:
        assert str(exc).strip(), "an empty error message"
        assert "Traceback" not in str(exc)
        FIGURES["parse: ParseError"] += 1
        return
    assert pages and all(isinstance(p, Page) and isinstance(p.text, str) and p.text.strip() for p in pages)
    FIGURES["parse: pages"] += 1


@pytest.fixture
def indexing(data_dir, fresh_engine, local_embeddings):
    from lib.core.settings import load_settings
    from lib.documents.indexing import ChunkingSettings, Indexer, get_collection
    from lib.documents.vectorstore import make_chroma_client

    client = make_chroma_client(load_settings())
    indexer = Indexer(
        fresh_engine, client, local_embeddings, data_dir / "originals", ChunkingSettings(400, 80, 200_000)
    )
    return indexer, get_collection(fresh_engine, "Fuzz", create=True)


_serial = itertools.count()
SMALL_FILE_BYTES = FILE_BYTES.filter(lambda d: len(d) <= 20_000)


@given(name=st.sampled_from(NAMES), data=SMALL_FILE_BYTES)
@drill(max_examples=25)
def test_indexing_broken_files_indexes_them_or_fails_with_a_reason_and_no_chunks(indexing, name, data):
    from lib.documents.vectorstore import open_store

    indexer, collection = indexing
    FIGURES["index"] += 1
    name = f"{next(_serial)}-{name.rsplit('/', 1)[-1]}"  # a new document every time
    outcome = indexer.index_file(collection, name, data)  # never raises: failures are outcomes
    store = open_store(indexer.client, collection.chroma_name, indexer.embeddings)
    stored = store.get(where={"document_id": outcome.document_id}, include=["metadatas"])["metadatas"]
    with Session(indexer.engine) as s:
        doc = s.get(Document, outcome.document_id)
    assert doc.status == outcome.status
    if outcome.status == "failed":
        assert outcome.error and doc.error == outcome.error
        assert not outcome.error.startswith("Indexing failed"), f"not a ParseError: {outcome.error}"
        assert stored == [], "a failed document left chunks behind"
        FIGURES["index: failed with a reason, 0 chunks"] += 1
    else:
        assert outcome.status == "indexed" and outcome.chunks > 0
        assert len(stored) == outcome.chunks and {m["version"] for m in stored} == {outcome.version}
        FIGURES["index: indexed"] += 1


# ---- templates ---------------------------------------------------------------------------------------

TEMPLATE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(list("{}%#\\ \n_.|()[]'\"")),
        st.sampled_from(
            [
                "{{",
                "}}",
                "{{ name }}",
                "{{name}}",
                "\\{{",
                "{%",
                "{#",
                "{{ config }}",
                "{{ a.b }}",
                "{{ x|upper }}",
                "{{ ''.__class__ }}",
                "{{ 7*7 }}",
                "{{{{",
                "}}}}",
                "{{ question }}",
                "{{x}}",
            ]
        ),
        st.text(max_size=6),
    ),
    max_size=25,
).map("".join)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@given(
    text=TEMPLATE_TEXT,
    values=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True),
        st.one_of(st.text(max_size=30), ANY_VALUE),
        max_size=4,
    ),
)
@drill(max_examples=400)
def test_random_template_text_renders_or_raises_a_template_error(text, values):
    FIGURES["template text"] += 1
    try:
        names = variables(text)
    except TemplateError:
        FIGURES["template text: refused"] += 1
        return
    try:
        out = render_text(text, values)
    except TemplateError:
        FIGURES["template text: values refused"] += 1
        return
    assert isinstance(out, str) and set(names) <= set(values)
    # values are substituted once and never re-read as template
    marked = render_text(text, {n: f"\u0001{n}\u0001" for n in names})
    assert all(f"\u0001{n}\u0001" in marked for n in names)
    FIGURES["template text: rendered"] += 1


PLAIN = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=40)
TEMPLATE_FIELDS = st.fixed_dictionaries(
    {
        "name": mostly(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True), ANY_VALUE),
        "system": mostly(TEMPLATE_TEXT, ANY_VALUE),
    },
    optional={
        "description": mostly(st.text(max_size=20), ANY_VALUE),
        "user": mostly(TEMPLATE_TEXT, ANY_VALUE),
        "model": mostly(st.just("openai/gpt-4o-mini"), ANY_VALUE),
        "temperature": mostly(st.floats(0, 2), st.one_of(st.floats(), ANY_VALUE)),
        "max_tokens": mostly(st.integers(1, 4000), ANY_VALUE),
        "json_schema": mostly(
            st.none(),
            st.one_of(
                ANY_VALUE,
                st.sampled_from(
                    [{"type": "object"}, {"type": 12}, {"pattern": "["}, {"$schema": "nope", "type": "string"}]
                ),
            ),
        ),
    },
)


def _values_for(fields: dict):
    """Values for the template's variables (when it parses), sometimes one short or one too many."""
    try:
        names = variables(str(fields.get("system", ""))) + variables(str(fields.get("user", "")))
    except TemplateError:
        names = []
    exact = st.fixed_dictionaries({n: mostly(st.text(max_size=20), ANY_VALUE) for n in names})
    return mostly(
        exact, st.one_of(exact.map(lambda v: {**v, "extra": "x"}), exact.map(lambda v: dict(list(v.items())[1:])))
    )


@given(case=TEMPLATE_FIELDS.flatmap(lambda f: st.tuples(st.just(f), _values_for(f))))
@example(case=({"name": 1, "system": "Hi"}, {}))  # found by this drill: a TypeError escaped validate()
@example(case=({"name": "a", "system": None}, {}))  # found by this drill: an AttributeError escaped
@example(case=({"name": "a", "system": "Hi", "temperature": "hot"}, {}))  # a ValueError escaped
@drill(max_examples=400)
def test_random_template_fields_validate_and_render_or_raise_a_template_error(case):
    fields, values = case
    FIGURES["template fields"] += 1
    try:
        template = Template(**fields)
        validate(template)
        out = render(template, values)
    except TemplateError:
        FIGURES["template fields: refused"] += 1
        return
    assert [role for role, _ in out] == [role for role, _ in template.messages()]
    FIGURES["template fields: rendered"] += 1


OUT_OF_RANGE = st.sampled_from([0, -1, 2**31, 2**63, True])  # past the 32-bit version column, or not a number
VERSION = st.fixed_dictionaries(
    {
        "version": mostly(st.integers(1, 4), st.one_of(ANY_VALUE, OUT_OF_RANGE)),
        "system": mostly(PLAIN, st.one_of(TEMPLATE_TEXT, ANY_VALUE)),
    },
    optional={
        "description": mostly(st.text(max_size=20), ANY_VALUE),
        "user": mostly(st.one_of(PLAIN, TEMPLATE_TEXT), ANY_VALUE),
        "temperature": mostly(st.floats(0, 2), ANY_VALUE),
        "max_tokens": mostly(st.integers(1, 4000), ANY_VALUE),
        "author": mostly(st.text(max_size=10), ANY_VALUE),
        "note": mostly(st.text(max_size=10), ANY_VALUE),
        "created_at": mostly(st.just("2024-01-01T10:00:00+02:00"), st.one_of(ANY_VALUE, st.just("2024-02-30T10:00"))),
        "json_schema": mostly(st.just({"type": "object"}), st.one_of(ANY_VALUE, st.just({"type": 12}))),
    },
)
EXPORT = st.fixed_dictionaries(
    {
        "format": mostly(st.just(EXPORT_FORMAT), st.just("other")),
        "name": mostly(st.sampled_from(["fuzz.import", "fuzz.other"]), st.one_of(st.just("Bad Name"), ANY_VALUE)),
        "versions": mostly(st.lists(VERSION, min_size=1, max_size=2), ANY_VALUE),
    },
    optional={
        "labels": mostly(
            st.dictionaries(st.sampled_from(["production", "staging"]), st.integers(1, 4), max_size=2),
            st.one_of(ANY_VALUE, st.just({"Bad Label": 1}), st.just({"x": True})),
        )
    },
)


def _template_counts(engine) -> tuple[int, ...]:
    with Session(engine) as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t)) for t in (PromptTemplate, TemplateVersion, TemplateLabel)
        )


@given(
    doc=st.one_of(
        EXPORT.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        EXPORT.map(lambda d: json.dumps(d)),
        TEMPLATE_TEXT,
        st.text(max_size=200),
    )
)
@example(doc=f"format: {EXPORT_FORMAT}\nname: fuzz.import\nversions:\n- version: 1\n  system: null\n")  # AttributeError
@example(doc=f"format: {EXPORT_FORMAT}\nname: fuzz.import\nversions:\n- version: 2147483648\n  system: hi\n")
@example(doc=f"format: {EXPORT_FORMAT}\nname: fuzz.import\nversions:\n- version: 9223372036854775808\n  system: hi\n")
@drill(max_examples=150)
def test_random_template_exports_import_or_fail_without_changing_anything(fresh_engine, doc):
    FIGURES["template import"] += 1
    store = TemplateStore(fresh_engine)
    before = _template_counts(fresh_engine)
    try:
        store.import_text(doc, "fuzzer")
    except TemplateError:
        assert _template_counts(fresh_engine) == before, "a failed import left rows behind"
        FIGURES["template import: refused, nothing changed"] += 1
        return
    assert _template_counts(fresh_engine) != before or before[0] > 0
    FIGURES["template import: imported"] += 1


# ---- test sets ---------------------------------------------------------------------------------------


def _csv(header: list[str], rows: list[list[str]], newline: str, raw: bool) -> str:
    if raw:  # no quoting: commas, quotes and newlines in cells break the shape of the file
        return newline.join([",".join(header), *(",".join(r) for r in rows)])
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows([header, *rows])
    return out.getvalue()


CELL = mostly(st.text(max_size=12), st.sampled_from(['"', '""', ",", "\n", "\r\n", "\x00", "a,b", '"x"y', " ", ""]))
COLUMNS = st.sampled_from([["question"], ["question", "context"], ["context", "question"], []])


def csv_bytes(columns: list[str]):
    """CSV bytes for a test set of `columns`: mostly well formed, else with the faults people make."""
    header = mostly(
        st.permutations([*columns, "expected"]).flatmap(
            lambda h: st.sampled_from([h, [c for c in h if c != "expected"]])
        ),
        st.lists(
            st.sampled_from(["question", "context", "expected", "Question", " question ", "other", ""]), max_size=4
        ),
    )
    text = header.flatmap(
        lambda h: st.builds(
            _csv,
            st.just(h),
            st.lists(
                mostly(st.lists(CELL, min_size=len(h), max_size=len(h)), st.lists(CELL, max_size=5)),
                min_size=1,
                max_size=6,
            ),
            st.sampled_from(["\n", "\r\n", "\r"]),
            mostly(st.just(False), st.just(True)),
        )
    )
    return mostly(
        mostly(text.map(str.encode), text.map(lambda t: ("\ufeff" + t).encode())),
        st.one_of(st.binary(max_size=400), text.map(lambda t: t.encode("utf-16")), st.just(b" \n")),
    )


SET_NAME = mostly(
    st.builds(lambda t: f"{t} {next(_serial)}", st.text(max_size=12)),  # unique, but "dup" repeats
    st.one_of(st.text(min_size=250, max_size=300), st.sampled_from(["", "  ", "dup", "a\x00b"])),
)


def _set_counts(engine) -> tuple[int, int]:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(TestSet)), s.scalar(select(func.count()).select_from(TestCase))


@given(case=COLUMNS.flatmap(lambda cols: st.tuples(st.just(cols), csv_bytes(cols))), name=SET_NAME)
@example(case=(["question"], b"question\nhello\x00world\n"), name="nul")  # DataError on PostgreSQL, found here
@example(case=(["question"], b"question\nhello\n"), name="n" * 300)  # VARCHAR(255) on PostgreSQL
@drill(max_examples=150)
def test_random_csv_makes_a_whole_test_set_or_a_test_set_error_and_no_rows(any_engine, case, name):
    columns, data = case
    FIGURES[f"test-set CSV [{any_engine.dialect.name}]"] += 1
    before = _set_counts(any_engine)
    try:
        cases = parse_csv(data, columns)
        set_id = create_test_set(any_engine, name, columns, "fuzzer", cases)
    except TestSetError as exc:
        assert str(exc).strip()
        assert _set_counts(any_engine) == before, "a failed import left rows behind"
        FIGURES[f"test-set CSV [{any_engine.dialect.name}]: refused, no rows"] += 1
        return
    assert _set_counts(any_engine) == (before[0] + 1, before[1] + len(cases))
    stored = load_cases(any_engine, set_id)
    assert [(c.values, c.expected) for c in stored] == [(c.values, c.expected) for c in cases]
    FIGURES[f"test-set CSV [{any_engine.dialect.name}]: created"] += 1


# ---- saved conversations -----------------------------------------------------------------------------


@given(question=st.text(max_size=300), answer=st.text(max_size=300), comment=st.text(max_size=40))
@example(question="", answer="", comment="")  # found by this drill: IndexError titling the conversation
@example(question="a\x00b", answer="\x00", comment="\x00")  # found by this drill: DataError on PostgreSQL
@drill(max_examples=40)
def test_any_chat_text_is_saved_and_read_back(any_engine, question, answer, comment):
    """Whatever a user types (or a model answers) is saved, NUL characters dropped (PostgreSQL refuses them)."""
    from lib.chat.conversations import add_message, create_session, load_messages, set_feedback

    FIGURES[f"chat text [{any_engine.dialect.name}]"] += 1
    chat = create_session(any_engine, "fuzzer")
    add_message(any_engine, chat.id, "user", question)
    answer_id = add_message(any_engine, chat.id, "assistant", answer, request_id="r1").id
    set_feedback(any_engine, answer_id, -1, comment, "fuzzer")
    stored = load_messages(any_engine, chat.id, "fuzzer")
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", question.replace("\x00", "")),
        ("assistant", answer.replace("\x00", "")),
    ]
    assert stored[1]["rating"] == -1


@pytest.fixture(autouse=True, scope="module")
def _print_figures():
    yield
    print("\nDRILL fuzz: " + "; ".join(f"{k}: {v}" for k, v in sorted(FIGURES.items())))
