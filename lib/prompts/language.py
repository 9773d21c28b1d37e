"""Prompt templates: a deliberately tiny `{{ variable }}` syntax, validation and safe rendering.

Templates are written by people who are not engineers and run with the app's privileges, so the
syntax has no expressions at all: `{{ name }}` substitutes a value, `\\{{` writes a literal `{{`,
and anything else inside `{{ }}`, every `{% %}` and every `{# #}` is refused. Nothing is evaluated;
Jinja is never handed user text. Values are substituted in one pass and never re-read as template.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# `classify.sentiment` is one plain key (a pipeline step's output field), never attribute access: at most 4 parts.
VARIABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(?:\.[A-Za-z][A-Za-z0-9_]{0,63}){0,3}")
MAX_VARIABLES = 50  # each variable is a text box on Prompts and Compare; 10,000 of them never finish drawing
_TOKEN = re.compile(r"\\\{\{|\{\{(.*?)\}\}|\{\{|\{%|\{#", re.DOTALL)
ROLES = ("system", "user")
# Globals that reach server objects in Jinja/Flask/Django; harmless here, refused anyway so that a
# template never depends on them and a payload written for another engine is reported, not ignored.
RESERVED = frozenset(
    {
        "config",
        "self",
        "request",
        "session",
        "g",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "range",
        "dict",
        "url_for",
        "get_flashed_messages",
        "loop",
        "caller",
        "kwargs",
        "varargs",
        "super",
        "settings",
        "os",
        "sys",
    }
)


class TemplateError(ValueError):
    """A template (or the values given to it) cannot be used; the message says how to fix it."""


class TemplateSyntaxError(TemplateError):
    """A `{{ … }}`, `{% … %}` or `{# … #}` that is not a plain variable."""

    def __init__(self, message: str, *, snippet: str, line: int, role: str = ""):
        where = f"{role} message, line {line}" if role else f"line {line}"
        super().__init__(f"{message} ({where}: {snippet!r})")
        self.snippet, self.line, self.role = snippet, line, role


class MissingVariables(TemplateError):
    """The template uses variables that were given no value."""

    def __init__(self, names: list[str], context: str = ""):
        super().__init__(f"No value for {', '.join(names)}{context}. Fill in every variable.")
        self.names = names


class UnknownVariables(TemplateError):
    """Values were given for variables the template does not use (often a typo)."""

    def __init__(self, names: list[str], context: str = ""):
        super().__init__(f"Unknown variable {', '.join(names)}{context}.")
        self.names = names


class TooManyVariables(TemplateError):
    """A template uses more variables than a form can show."""

    def __init__(self, count: int):
        super().__init__(
            f"This template uses {count:,} variables; a template may use at most {MAX_VARIABLES}. "
            "Combine related values into one variable (e.g. one {{ details }} instead of a variable per field)."
        )


class InvalidTemplate(TemplateError):
    """A field of the template (name, parameters, JSON schema) is not acceptable."""


@dataclass(frozen=True)
class Template:
    """Everything one version of a prompt holds."""

    name: str
    description: str = ""
    system: str = ""
    user: str = ""
    model: str | None = None  # None: the feature's (or the app's) default model
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = None  # structured output: answers must match it

    def __post_init__(self) -> None:
        # 1 and 1.0 are the same temperature: keep one spelling so equal content hashes equal
        if isinstance(self.temperature, int) and not isinstance(self.temperature, bool):
            object.__setattr__(self, "temperature", float(self.temperature))

    def content(self) -> dict[str, Any]:
        """The versioned content (everything but the name), JSON-ready."""
        data = asdict(self)
        data.pop("name")
        return data

    def content_hash(self) -> str:
        """A hash of the content; equal content, equal hash."""
        canonical = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def params(self) -> dict[str, Any]:
        """Model parameters to hand to the gateway (only the ones that are set)."""
        out: dict[str, Any] = {}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out

    def messages(self) -> list[tuple[str, str]]:
        """(role, text) of the non-empty messages, system first."""
        return [(r, getattr(self, r)) for r in ROLES if getattr(self, r).strip()]


def template_from_content(name: str, content: Mapping[str, Any]) -> Template:
    """A Template from stored or imported content; unknown keys are refused."""
    allowed = set(Template.__dataclass_fields__) - {"name"}
    unknown = sorted(set(content) - allowed)
    if unknown:
        raise InvalidTemplate(
            f"Template {name!r} has unknown fields: {', '.join(unknown)}. Allowed: {', '.join(sorted(allowed))}."
        )
    return Template(name=name, **dict(content))


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _parse(text: str, role: str = "") -> list[str | tuple[str]]:
    """Literal strings and ("variable",) tuples; TemplateSyntaxError on anything else."""
    parts: list[str | tuple[str]] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        parts.append(text[pos : m.start()])
        pos = m.end()
        tok = m.group(0)
        if tok == "\\{{":
            parts.append("{{")
            continue
        snippet, line = tok[:80], _line(text, m.start())
        if tok in ("{%", "{#"):
            kind = "Statements ({% … %})" if tok == "{%" else "Comments ({# … #})"
            end = text.find("}", m.start())
            snippet = text[m.start() : end + 1 if end >= 0 else m.start() + 40][:80]
            raise TemplateSyntaxError(
                f"{kind} are not allowed; only {{{{ variable }}}} is", snippet=snippet, line=line, role=role
            )
        if tok == "{{":
            raise TemplateSyntaxError(
                "A '{{' is never closed; close it with '}}' or write \\{{ for a literal '{{'",
                snippet=text[m.start() : m.start() + 40],
                line=line,
                role=role,
            )
        inner = m.group(1).strip()
        if "{{" in inner or not VARIABLE.fullmatch(inner):
            raise TemplateSyntaxError(
                "Only plain variable names are allowed inside {{ }}: letters, digits "
                "and _, starting with a letter (a pipeline step's field is step.field); no "
                "brackets, filters, calls or operators",
                snippet=snippet,
                line=line,
                role=role,
            )
        if inner in RESERVED or inner.split(".", 1)[0] in RESERVED:
            raise TemplateSyntaxError(
                f"{inner!r} is a reserved name (it reaches server objects in other "
                "template engines); choose another variable name",
                snippet=snippet,
                line=line,
                role=role,
            )
        parts.append((inner,))
    parts.append(text[pos:])
    return parts


def variables(text: str) -> list[str]:
    """Variable names used in `text`, in order of first use; TemplateSyntaxError if unsafe."""
    seen: dict[str, None] = {}
    for part in _parse(text):
        if isinstance(part, tuple):
            seen.setdefault(part[0])
    return list(seen)


def template_variables(template: Template) -> list[str]:
    """Variables of all the template's messages, in order of first use."""
    seen: dict[str, None] = {}
    for role, text in template.messages():
        for part in _parse(text, role):
            if isinstance(part, tuple):
                seen.setdefault(part[0])
    return list(seen)


def check_schema(schema: Any) -> None:
    """InvalidTemplate unless `schema` is a usable JSON schema (an object)."""
    if not isinstance(schema, dict):
        raise InvalidTemplate('The JSON schema must be an object, like {"type": "object", ...}.')
    import jsonschema  # here: ~0.1 s a fresh app's first page does not need (issue 18)

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidTemplate(f"The JSON schema is not valid: {exc.message}") from exc


def parse_schema_text(text: str) -> dict[str, Any] | None:
    """The JSON schema typed into a text box (empty: none); InvalidTemplate if it is not valid."""
    if not text.strip():
        return None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTemplate(f"The JSON schema is not valid JSON: {exc.msg} at line {exc.lineno}.") from exc
    check_schema(schema)
    return schema


MAX_MESSAGE_CHARS = 50_000  # per system/user message of a template
MAX_DESCRIPTION_CHARS = 2_000
MAX_VALUE_CHARS = 100_000  # per variable value filled in at run time


def validate(template: Template) -> list[str]:
    """Check name, messages and parameters; return the variables, or raise a TemplateError."""
    for name in ("name", "description", *ROLES):  # an imported file can hold anything (null, a number, a list)
        value = getattr(template, name)
        if not isinstance(value, str):
            raise InvalidTemplate(f"The {name} of a template must be text, not {_kind(value)}.")
    if template.model is not None and not isinstance(template.model, str):
        raise InvalidTemplate(f"The model of a template must be a provider/model name, not {_kind(template.model)}.")
    if template.temperature is not None and (
        isinstance(template.temperature, bool) or not isinstance(template.temperature, (int, float))
    ):
        raise InvalidTemplate(f"Temperature must be a number between 0 and 2, not {_kind(template.temperature)}.")
    if isinstance(template.max_tokens, bool):
        raise InvalidTemplate("Max output tokens must be a whole number of at least 1, not true/false.")
    if not NAME.fullmatch(template.name or ""):
        raise InvalidTemplate(
            f"Template name {template.name!r} must be lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. support.reply)."
        )
    if not template.messages():
        raise InvalidTemplate("Write a system or a user message: the template is empty.")
    if template.temperature is not None and not 0 <= float(template.temperature) <= 2:
        raise InvalidTemplate(f"Temperature must be between 0 and 2, not {template.temperature}.")
    if template.max_tokens is not None and (not isinstance(template.max_tokens, int) or template.max_tokens < 1):
        raise InvalidTemplate(f"Max output tokens must be a whole number of at least 1, not {template.max_tokens}.")
    if template.json_schema is not None:
        check_schema(template.json_schema)
    names = template_variables(template)
    if len(names) > MAX_VARIABLES:
        raise TooManyVariables(len(names))
    limits = {"description": MAX_DESCRIPTION_CHARS, **dict.fromkeys(ROLES, MAX_MESSAGE_CHARS)}
    for name, limit in limits.items():
        size = len(getattr(template, name))
        if size > limit:
            raise InvalidTemplate(f"The {name} is {size:,} characters; a template allows at most {limit:,}.")
    return names


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:60]


def render_text(text: str, values: Mapping[str, Any], role: str = "") -> str:
    """`text` with each `{{ variable }}` replaced by its value (values are never re-parsed)."""
    parts = _parse(text, role)
    missing = sorted({p[0] for p in parts if isinstance(p, tuple) and p[0] not in values})
    if missing:
        raise MissingVariables(missing)
    return "".join(p if isinstance(p, str) else _as_text(p[0], values[p[0]]) for p in parts)


def _as_text(name: str, value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise TemplateError(f"The value of {name} is {len(text):,} characters; the limit is {MAX_VALUE_CHARS:,}.")
        return text
    raise TemplateError(f"The value of {name} must be text or a number, not {type(value).__name__}.")


def render(template: Template, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, text) messages with the values filled in; Missing/UnknownVariables name the culprits."""
    names = validate(template)
    missing = [n for n in names if n not in values]
    if missing:
        raise MissingVariables(missing, f" in template {template.name}")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UnknownVariables(unknown, f": template {template.name} uses only {', '.join(names) or 'no variables'}")
    return [(role, render_text(text, values, role)) for role, text in template.messages()]


def parse_structured(text: str, schema: dict[str, Any]) -> Any:
    """The JSON value in a model's answer, validated against `schema`; ValueError says what is wrong."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)  # models like code fences
    if fence:
        body = fence.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"The answer is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}).") from exc
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ValueError(f"The JSON does not match the schema at {where}: {error.message}")
    return data
