"""Template syntax, validation, safe rendering, structured output and side-by-side diff (pure logic)."""

import pytest

from lib.prompts.diff import diff_templates
from lib.prompts.language import (
    InvalidTemplate,
    MissingVariables,
    Template,
    TemplateError,
    TemplateSyntaxError,
    UnknownVariables,
    parse_schema_text,
    parse_structured,
    render,
    render_text,
    validate,
    variables,
)

# Known server-side template-injection payloads (Jinja2, Twig, Mako, Tornado, Django, Freemarker,
# Velocity, ERB, Smarty). Each must be refused at save time and at render time.
SSTI_PAYLOADS = [
    "{{7*7}}",
    "{{ 7*'7' }}",
    "{{config}}",
    "{{ self }}",
    "{{ config.items() }}",
    "{{''.__class__.__mro__[1].__subclasses__()}}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ request.application.__globals__ }}",
    "{{ request['application']['__globals__'] }}",
    "{{ x|attr('__class__') }}",
    "{{ ()|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ url_for.__globals__['current_app'].config }}",
    "{{ get_flashed_messages.__globals__ }}",
    "{{ range.__class__ }}",
    "{{ name | safe }}",
    "{{ name ~ 'x' }}",
    "{{ __import__('os').system('id') }}",
    "{{ _self.env.registerUndefinedFilterCallback('exec') }}",
    "{{ dict(a=1) }}",
    "{{ [].pop }}",
    "{% import os %}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set x = 7*7 %}",
    "{% include '/etc/passwd' %}",
    "{% raw %}x{% endraw %}",
    "{# comment #}",
    "{{ {{ name }} }}",
    "{{ name",
    "{{}}",
]

# Syntaxes of other engines: in ours they are plain text, printed as written, never evaluated.
LITERAL_PAYLOADS = [
    "${7*7}",
    "#{7*7}",
    "<%= 7*7 %>",
    "${{7*7}}".replace("{{", "{"),
    "@(7*7)",
    "*{7*7}",
    "[[${7*7}]]",
    "{7*7}",
    "}}",
]


def test_there_are_at_least_twenty_injection_payloads():
    assert len(set(SSTI_PAYLOADS)) >= 20


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_injection_payloads_are_refused_when_a_template_is_saved(payload):
    with pytest.raises(TemplateSyntaxError) as err:
        validate(Template(name="attack", system="You are helpful.", user=f"Hello\n{payload}"))
    assert err.value.line == 2
    assert err.value.role == "user"
    assert err.value.snippet.strip() and err.value.snippet[:2] in payload


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_injection_payloads_are_refused_when_a_template_is_rendered(payload):
    with pytest.raises(TemplateSyntaxError):
        render_text(payload, {"name": "x", "x": "y", "config": "z", "self": "s", "request": "r"})


@pytest.mark.parametrize("payload", LITERAL_PAYLOADS)
def test_other_engines_syntax_is_printed_as_written_and_never_evaluated(payload):
    out = render(Template(name="t", user=f"{payload} {{{{ name }}}}"), {"name": "Ann"})
    assert out == [("user", f"{payload} Ann")]
    assert "49" not in out[0][1]


def test_a_value_that_looks_like_a_template_is_inserted_as_text_and_not_rendered_again():
    out = render(
        Template(name="t", user="Q: {{ question }}"), {"question": "{{ ''.__class__ }} {% import os %} {{ question }}"}
    )
    assert out == [("user", "Q: {{ ''.__class__ }} {% import os %} {{ question }}")]


def test_a_syntax_error_names_the_snippet_and_its_line():
    with pytest.raises(TemplateSyntaxError, match=r"system message, line 3: '\{\{ user\|title \}\}'"):
        validate(Template(name="t", system="one\ntwo\nHi {{ user|title }}!"))


def test_variables_are_found_in_order_of_first_use_with_or_without_spaces():
    assert variables("{{b}} and {{ a }} then {{  b  }}\n{{c_1}}") == ["b", "a", "c_1"]


def test_an_escaped_brace_pair_is_a_literal_and_not_a_variable():
    t = Template(name="t", user=r"Write \{{ name }} literally, then {{ name }}.")
    assert validate(t) == ["name"]
    assert render(t, {"name": "Ann"}) == [("user", "Write {{ name }} literally, then Ann.")]


def test_variables_are_collected_across_system_and_user_messages():
    t = Template(name="t", system="You help {{ team }}.", user="{{ question }} ({{ team }})")
    assert validate(t) == ["team", "question"]


def test_rendering_fills_every_message_and_keeps_the_roles():
    t = Template(name="t", system="You help {{ team }}.", user="{{ question }}")
    assert render(t, {"team": "sales", "question": "Price?"}) == [("system", "You help sales."), ("user", "Price?")]


def test_a_missing_variable_is_an_error_that_names_it():
    t = Template(name="t", user="{{ a }} {{ b }} {{ c }}")
    with pytest.raises(MissingVariables, match="No value for b, c") as err:
        render(t, {"a": "1"})
    assert err.value.names == ["b", "c"]


def test_an_unknown_variable_is_an_error_that_names_it():
    with pytest.raises(UnknownVariables, match="Unknown variable questoin") as err:
        render(Template(name="t", user="{{ question }}"), {"question": "q", "questoin": "typo"})
    assert err.value.names == ["questoin"]


def test_values_must_be_text_or_numbers_never_objects():
    with pytest.raises(TemplateError, match="must be text or a number"):
        render(Template(name="t", user="{{ x }}"), {"x": object()})
    assert render(Template(name="t", user="{{ n }}"), {"n": 3}) == [("user", "3")]


@pytest.mark.parametrize(
    "template, message",
    [
        (Template(name="Bad Name", user="x"), "must be lowercase"),
        (Template(name="t"), "template is empty"),
        (Template(name="t", user="x", temperature=2.5), "between 0 and 2"),
        (Template(name="t", user="x", max_tokens=0), "at least 1"),
        (Template(name="t", user="x", json_schema={"type": "nonsense"}), "JSON schema is not valid"),
    ],
)
def test_validation_explains_what_to_fix(template, message):
    with pytest.raises(InvalidTemplate, match=message):
        validate(template)


def test_a_schema_typed_as_text_must_be_valid_json_and_a_valid_schema():
    assert parse_schema_text("  ") is None
    assert parse_schema_text('{"type": "object"}') == {"type": "object"}
    with pytest.raises(InvalidTemplate, match="not valid JSON"):
        parse_schema_text("{type: object}")
    with pytest.raises(InvalidTemplate, match="must be an object"):
        parse_schema_text("[1]")


SCHEMA = {"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative"]}}, "required": ["sentiment"]}


def test_structured_output_is_parsed_and_validated_even_inside_a_code_fence():
    assert parse_structured('{"sentiment": "positive"}', SCHEMA) == {"sentiment": "positive"}
    assert parse_structured('```json\n{"sentiment": "negative"}\n```', SCHEMA) == {"sentiment": "negative"}


@pytest.mark.parametrize(
    "answer, message",
    [
        ("I think it is positive", "not JSON"),
        ('{"sentiment": "meh"}', "at sentiment: 'meh' is not one of"),
        ("{}", "'sentiment' is a required property"),
    ],
)
def test_invalid_structured_output_says_what_is_wrong(answer, message):
    with pytest.raises(ValueError, match=message):
        parse_structured(answer, SCHEMA)


def test_equal_content_has_an_equal_hash_and_any_change_changes_it():
    a = Template(name="a", user="x", temperature=0.2)
    assert a.content_hash() == Template(name="b", user="x", temperature=0.2).content_hash()
    assert a.content_hash() != Template(name="a", user="x", temperature=0.3).content_hash()
    assert a.content_hash() != Template(name="a", user="x ", temperature=0.2).content_hash()
    assert (
        Template(name="a", user="x", temperature=1).content_hash()
        == Template(name="a", user="x", temperature=1.0).content_hash()
    )


def test_the_diff_aligns_both_sides_and_marks_only_changed_lines():
    a = Template(name="t", system="keep\nold line\nkeep too", user="same", temperature=0.2)
    b = Template(name="t", system="keep\nnew line\nkeep too\nadded", user="same", temperature=0.7)
    system, user, params = diff_templates(a, b)
    assert [r.kind for r in system.rows] == ["equal", "changed", "equal", "added"]
    assert system.side("left").split("\n") == ["  keep", "- old line", "  keep too", ""]
    assert system.side("right").split("\n") == ["  keep", "+ new line", "  keep too", "+ added"]
    assert not user.changed
    changed = [(r.left, r.right) for r in params.rows if r.kind != "equal"]
    assert changed == [("temperature: 0.2", "temperature: 0.7")]


def test_template_messages_descriptions_and_values_have_size_limits():
    from lib.prompts.language import (
        MAX_MESSAGE_CHARS,
        MAX_VALUE_CHARS,
        InvalidTemplate,
        Template,
        TemplateError,
        render,
    )

    with pytest.raises(InvalidTemplate, match="at most 50,000"):
        validate(Template(name="big", system="x" * (MAX_MESSAGE_CHARS + 1)))
    with pytest.raises(InvalidTemplate, match="description"):
        validate(Template(name="big", user="hi", description="d" * 2_001))
    ok = Template(name="ok", user="Summarise {{ text }}")
    assert render(ok, {"text": "y" * MAX_VALUE_CHARS})
    with pytest.raises(TemplateError, match="value of text is 100,001 characters"):
        render(ok, {"text": "y" * (MAX_VALUE_CHARS + 1)})
