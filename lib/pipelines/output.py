"""Structured step output: the JSON object in a model's answer, validated against the step's JSON schema."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

MAX_OUTPUT_CHARS = 200_000
_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


class OutputInvalid(ValueError):
    """An answer is not the JSON the step declared; `reason` says what is wrong (it is sent back to the model)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_output_schema(schema: Any) -> None:
    """OutputInvalid unless `schema` is a valid JSON schema for an object (its properties become columns)."""
    if not isinstance(schema, dict):
        raise OutputInvalid('The output schema must be a JSON object, like {"type": "object", "properties": ...}.')
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise OutputInvalid(f"The output schema is not valid: {exc.message}") from exc
    if schema.get("type") != "object":
        raise OutputInvalid(
            'A step\'s output schema must describe an object ("type": "object"), so later steps '
            "can use its fields by name."
        )


def parse_structured(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in `text` (bare, or inside a ```json fence), validated against `schema`; else OutputInvalid."""
    if len(text) > MAX_OUTPUT_CHARS:
        raise OutputInvalid(f"The answer is {len(text):,} characters; the limit is {MAX_OUTPUT_CHARS:,}.")
    body = text.strip()
    fence = _FENCE.search(body)
    if fence and not body.startswith("{"):
        body = fence.group(1).strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise OutputInvalid(f"The answer is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}).") from exc
    if not isinstance(data, dict):
        raise OutputInvalid(f"The answer must be a JSON object, not {type(data).__name__}.")
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise OutputInvalid(f"The JSON does not match the schema at {where}: {error.message}")
    return data


def output_fields(schema: dict[str, Any] | None) -> list[str]:
    """The fields a step's output has: its schema's properties, or `text` for a step without a schema."""
    if schema is None:
        return ["text"]
    return list((schema.get("properties") or {}).keys())
