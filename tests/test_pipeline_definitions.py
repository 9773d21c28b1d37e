"""Pipelines without a model: the condition language (and hostile input), definitions and their checks, structured
output, the versioned store, reading input rows, and the shipped examples."""

from __future__ import annotations

import json

import pytest

from lib.pipelines.conditions import ConditionError, parse_condition
from lib.pipelines.definition import GateStep, Pipeline, PipelineError, PromptStep
from lib.pipelines.examples import install_examples, load_examples, sample_file
from lib.pipelines.inputs import (
    MAX_ROWS,
    InputError,
    MissingColumns,
    check_rows,
    preview,
    read_rows,
    resolve_templates,
)
from lib.pipelines.output import OutputInvalid, parse_structured
from lib.pipelines.store import PipelineNotFound, PipelineStore
from lib.prompts.language import Template, TemplateSyntaxError, render, variables
from lib.prompts.store import TemplateStore

SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["category"],
}


# ---- conditions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ('classify.category == "complaint"', {"classify.category": "complaint"}, True),
        ('classify.category == "complaint"', {"classify.category": "praise"}, False),
        (
            'triage.urgency == "high" or draft.confidence < 0.7',
            {"triage.urgency": "low", "draft.confidence": 0.5},
            True,
        ),
        (
            'triage.urgency == "high" or draft.confidence < 0.7',
            {"triage.urgency": "low", "draft.confidence": 0.9},
            False,
        ),
        ('a in ["x", "y"] and not b', {"a": "y", "b": False}, True),
        ('a not in ["x", "y"]', {"a": "z"}, True),
        ("rating <= 2", {"rating": "2"}, True),  # CSV cells are text: compared as numbers
        ("rating <= 2", {"rating": "five"}, False),
        ("escalation.escalate == true", {"escalation.escalate": True}, True),
        ("x == null", {}, True),  # a missing field is null, not an error
        ("missing.field < 0.7", {}, False),  # null < 0.7 is not true
        ("1 < n <= 3", {"n": 3}, True),
        ("n == -1", {"n": -1}, True),
        ('"urgent" in subject', {"subject": "urgent: help"}, True),
    ],
)
def test_conditions_evaluate_comparisons_boolean_logic_and_membership(text, values, expected):
    assert parse_condition(text).evaluate(values) is expected


def test_a_condition_names_the_fields_it_reads():
    assert parse_condition("a.b == 1 and c in [1, 2] or not d").names == {"a.b", "c", "d"}


@pytest.mark.parametrize(
    "hostile",
    [
        "__import__('os').system('id')",
        "().__class__.__bases__[0].__subclasses__()",
        "a.__class__",
        "x._private == 1",
        "open('/etc/passwd').read()",
        "len(a) > 1",
        "a[0] == 1",
        "lambda: 1",
        "[x for x in y]",
        "a + 1 > 2",
        "a if b else c",
        "(a := 1)",
        "f'{a}' == 'x'",
        "b'x' == a",
        "a == {1: 2}",
        "-a == 1",
    ],
)
def test_calls_attribute_access_dunders_and_code_are_refused_before_anything_runs(hostile):
    with pytest.raises(ConditionError):
        parse_condition(hostile)


def test_huge_or_deeply_nested_conditions_are_refused_with_a_clear_error():
    with pytest.raises(ConditionError, match="limit is 1,000"):
        parse_condition("a == 1 or " * 500 + "a == 2")
    with pytest.raises(ConditionError, match="nested too deeply"):
        parse_condition("not " * 100 + "a")
    with pytest.raises(ConditionError, match=r"nested too deeply|cannot be read"):
        parse_condition("(" * 300 + "a" + ")" * 300)


def test_a_syntax_error_says_where():
    with pytest.raises(ConditionError, match=r"at character \d+"):
        parse_condition('a == "x" and')


# ---- definitions ---------------------------------------------------------------------------------------------


def two_steps(**gate) -> Pipeline:
    return Pipeline(
        "Triage",
        (
            PromptStep("classify", "t.classify", output_schema=SCHEMA),
            GateStep("review", gate.pop("rule", 'classify.category == "complaint"'), **gate),
        ),
    )


def test_a_pipeline_round_trips_through_its_stored_form():
    p = two_steps(edits_step="classify", timeout_s=60, timeout_decision="approve")
    again = Pipeline.from_dict("Triage", json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert again.output_columns() == [
        "classify.category",
        "classify.confidence",
        "review.decision",
        "review.decided_by",
    ]


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        (Pipeline("T", (PromptStep("a", "t"), PromptStep("a", "t"))), "another step already has this name"),
        (Pipeline("T", (PromptStep("a", "t", condition="b.x == 1"), PromptStep("b", "t"))), "runs later"),
        (Pipeline("T", (PromptStep("a", "t", condition="zz.x == 1"),)), "does not exist"),
        (Pipeline("T", (PromptStep("a", "t", output_schema=SCHEMA), GateStep("g", "a.nope == 1"))), "no output field"),
        (Pipeline("T", (PromptStep("a", "t", condition="a ==="),)), "condition is not valid"),
        (Pipeline("T", (PromptStep("a", "t", output_schema={"type": "nonsense"}),)), "not valid"),
        (Pipeline("T", (PromptStep("a", "t", output_schema={"type": "string"}),)), "describe an object"),
        (Pipeline("T", (PromptStep("a", "t", max_attempts=0),)), "attempts"),
        (Pipeline("T", (GateStep("g", "x == 1", edits_step="later"), PromptStep("later", "t"))), "not a step before"),
        (Pipeline("T", (PromptStep("a", "t"), GateStep("g", "x == 1", timeout_decision="maybe"))), "approve or reject"),
        (Pipeline("T", ()), "at least one step"),
        (Pipeline("", (PromptStep("a", "t"),)), "Pipeline name"),
        (Pipeline("T", (PromptStep("Bad Name", "t"),)), "lowercase"),
    ],
)
def test_validation_names_the_step_and_the_problem(pipeline, message):
    with pytest.raises(PipelineError, match=message):
        pipeline.validate()


def test_unknown_fields_in_a_stored_step_are_refused():
    with pytest.raises(PipelineError, match="unknown fields: eval"):
        Pipeline.from_dict("T", {"steps": [{"kind": "prompt", "name": "a", "template": "t", "eval": "1"}]})


# ---- the template language: step.field is one plain key --------------------------------------------------------


def test_dotted_variables_are_plain_keys_and_attribute_tricks_stay_refused():
    assert variables("{{ classify.sentiment }} {{ ticket }}") == ["classify.sentiment", "ticket"]
    out = render(Template(name="t", user="{{ classify.sentiment }}!"), {"classify.sentiment": "negative"})
    assert out == [("user", "negative!")]
    for hostile in ("{{ a.__class__ }}", "{{ config.items }}", "{{ a.b() }}", "{{ a..b }}", "{{ a.b.c.d.e }}"):
        with pytest.raises(TemplateSyntaxError):
            variables(hostile)


# ---- structured output -------------------------------------------------------------------------------------------


def test_structured_output_is_parsed_from_bare_json_or_a_fence_and_validated():
    assert parse_structured('{"category": "bug"}', SCHEMA) == {"category": "bug"}
    assert parse_structured('Here:\n```json\n{"category": "bug"}\n```', SCHEMA) == {"category": "bug"}
    with pytest.raises(OutputInvalid, match="not JSON"):
        parse_structured("It is a bug.", SCHEMA)
    with pytest.raises(OutputInvalid, match="must be a JSON object, not str"):
        parse_structured('"bug"', SCHEMA)  # a string where an object was declared never passes
    with pytest.raises(OutputInvalid, match="'category' is a required property"):
        parse_structured('{"confidence": 0.4}', SCHEMA)


# ---- the store ---------------------------------------------------------------------------------------------------


def test_versions_are_immutable_labels_move_and_production_runs_by_default(any_engine):
    store = PipelineStore(any_engine)
    assert store.save(two_steps(), "ada") == 1
    assert store.save(two_steps(), "ada") == 1  # same content: nothing new
    changed = two_steps(rule='classify.category == "bug"')
    assert store.save(changed, "bob", "bugs instead") == 2
    assert store.get("Triage").version == 1  # production still points at v1
    assert store.get("Triage", 2).gates()[0].rule == 'classify.category == "bug"'
    assert store.get("Triage", 1).gates()[0].rule == 'classify.category == "complaint"'
    assert store.set_label("Triage", "production", 2, "ada") is True
    assert store.get("Triage").version == 2 and store.labels("Triage") == {"production": 2}
    assert [(i.name, i.latest) for i in store.list()] == [("Triage", 2)]
    diff = {d.title: d for d in store.diff("Triage", 1, 2)}
    assert diff["Step review"].changed and not diff["Step classify"].changed
    with pytest.raises(PipelineNotFound):
        store.get("Triage", 9)
    with pytest.raises(PipelineNotFound):
        store.get("Nope")


# ---- input rows --------------------------------------------------------------------------------------------------


def test_csv_and_jsonl_rows_are_read_and_bad_files_get_a_clear_error():
    assert read_rows(b'ticket,id\n"Hi, there",1\n\nBye,2\n', "t.csv") == [
        {"ticket": "Hi, there", "id": "1"},
        {"ticket": "Bye", "id": "2"},
    ]
    assert read_rows(b'{"ticket": "Hi", "n": 3}\n\n{"ticket": "Yo"}\n', "t.jsonl") == [
        {"ticket": "Hi", "n": 3},
        {"ticket": "Yo"},
    ]
    for data, name, message in [
        (b"a,b\n1\n", "x.csv", "Line 2 has 1 values"),
        (b'{"a": 1}\nnot json\n', "x.jsonl", "Line 2 is not JSON"),
        (b"[1, 2]\n", "x.jsonl", "must be a JSON object"),
        (b"\xff\xfe", "x.csv", "not UTF-8"),
        (b"a\n1\n", "x.xlsx", "upload a .csv or .jsonl"),
        (b"a,a\n1,2\n", "x.csv", "no two columns"),
        (b"a\n" + b"1\n" * (MAX_ROWS + 1), "x.csv", "more than"),
    ]:
        with pytest.raises(InputError, match=message):
            read_rows(data, name)


def test_a_preview_maps_rows_to_the_variables_and_names_missing_columns(fresh_engine):
    templates = TemplateStore(fresh_engine)
    templates.create(Template(name="t.classify", user="{{ subject }}: {{ body }}"), "ada", labels=("production",))
    resolved = resolve_templates(two_steps(rule='classify.category == "x" and priority == "p1"'), templates)
    assert resolved.columns() == ["subject", "body", "priority"]
    rows = [{"subject": "S", "body": "B", "priority": "p1", "extra": 1}]
    assert preview(resolved, rows) == [{"subject": "S", "body": "B", "priority": "p1"}]
    with pytest.raises(MissingColumns, match=r"no column 'body'.*Columns found: subject, priority"):
        check_rows(resolved, [{"subject": "S", "priority": "p1"}])


def test_a_step_reading_an_unknown_field_of_an_earlier_step_is_refused_on_resolve(fresh_engine):
    templates = TemplateStore(fresh_engine)
    templates.create(Template(name="t.classify", user="{{ subject }}"), "ada", labels=("production",))
    templates.create(Template(name="t.reply", user="{{ classify.colour }}"), "ada", labels=("production",))
    p = Pipeline("T", (PromptStep("classify", "t.classify", output_schema=SCHEMA), PromptStep("reply", "t.reply")))
    with pytest.raises(PipelineError, match="no output field 'colour'"):
        resolve_templates(p, templates)


# ---- shipped examples --------------------------------------------------------------------------------------------


def test_the_examples_install_with_their_templates_and_their_samples_have_every_column(fresh_engine):
    pipelines, templates = PipelineStore(fresh_engine), TemplateStore(fresh_engine)
    examples = load_examples()
    assert {e.pipeline.name for e in examples} == {"Support triage", "Review intelligence"}
    assert sorted(install_examples(pipelines, templates)) == ["Review intelligence", "Support triage"]
    assert install_examples(pipelines, templates) == []  # idempotent
    for e in examples:
        resolved = resolve_templates(pipelines.get(e.pipeline.name), templates)
        name, data = sample_file(e.pipeline.name)
        rows = read_rows(data, name)
        assert 15 <= len(rows) <= 30
        check_rows(resolved, rows)
        assert resolved.pipeline.gates()  # each has a review gate
