"""What a pipeline is: an ordered list of prompt steps and review gates, checked before it is saved or run.

A prompt step runs a stored template (by label or version number) on the row's fields and the earlier steps'
output fields, named `step.field` (e.g. `{{ classify.sentiment }}`); with an output schema its answer must be a
JSON object matching it. A gate sends the rows its rule matches to the review queue; the others pass straight on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.pipelines.conditions import ConditionError, parse_condition
from lib.pipelines.output import OutputInvalid, check_output_schema, output_fields

STEP_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
PIPELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}")
MAX_STEPS = 20
MAX_ATTEMPTS = 5
DECISIONS = ("approve", "reject")
PRODUCTION = "production"


class PipelineError(ValueError):
    """A pipeline cannot be saved or run as it is; the message says which step and how to fix it."""


@dataclass(frozen=True)
class PromptStep:
    """Run a stored template on the row; `template_ref` is a label ("production") or a version number."""

    name: str
    template: str
    template_ref: str | int = PRODUCTION
    model: str | None = None  # None: the template's model, else the app's default
    output_schema: dict[str, Any] | None = None  # None: the step's output is {"text": answer}
    condition: str | None = None  # run only when true (else the step is skipped and its fields are null)
    max_attempts: int = 3  # answers that do not match the schema are retried with the error, this many calls in all

    kind = "prompt"

    def fields(self) -> list[str]:
        """The output fields later steps may use as `name.field`."""
        return output_fields(self.output_schema)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in a version."""
        return {
            "kind": "prompt",
            "name": self.name,
            "template": self.template,
            "template_ref": self.template_ref,
            "model": self.model,
            "output_schema": self.output_schema,
            "condition": self.condition,
            "max_attempts": self.max_attempts,
        }


@dataclass(frozen=True)
class GateStep:
    """A review gate: rows matching `rule` wait for a reviewer, who may edit `edits_step`'s output."""

    name: str
    rule: str
    edits_step: str | None = None  # an earlier prompt step whose output the reviewer may edit
    timeout_s: float | None = None  # undecided this long: `timeout_decision` is taken for the reviewer
    timeout_decision: str = "reject"

    kind = "gate"

    def fields(self) -> list[str]:
        """A gate's own fields: the decision and who made it."""
        return ["decision", "decided_by"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in a version."""
        return {
            "kind": "gate",
            "name": self.name,
            "rule": self.rule,
            "edits_step": self.edits_step,
            "timeout_s": self.timeout_s,
            "timeout_decision": self.timeout_decision,
        }


Step = PromptStep | GateStep


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of steps; `version` is None until it is saved."""

    name: str
    steps: tuple[Step, ...]
    description: str = ""
    version: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # author, created_at… of a stored version

    def step(self, name: str) -> Step:
        """The step called `name`; PipelineError if there is none."""
        for s in self.steps:
            if s.name == name:
                return s
        raise PipelineError(f"Pipeline {self.name!r} has no step {name!r}.")

    def prompt_steps(self) -> list[PromptStep]:
        """The steps that call a model."""
        return [s for s in self.steps if isinstance(s, PromptStep)]

    def gates(self) -> list[GateStep]:
        """The review gates."""
        return [s for s in self.steps if isinstance(s, GateStep)]

    def output_columns(self) -> list[str]:
        """`step.field` for every output field of every step, in step order (the export's columns)."""
        return [f"{s.name}.{f}" for s in self.steps for f in s.fields()]

    def to_dict(self) -> dict[str, Any]:
        """The versioned content, JSON-ready (name and version are stored beside it)."""
        return {"description": self.description, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], version: int | None = None) -> Pipeline:
        """A Pipeline from stored or imported content; PipelineError on unknown or missing fields."""
        if not isinstance(data, Mapping):
            raise PipelineError("A pipeline must be an object with a list of steps.")
        unknown = sorted(set(data) - {"description", "steps", "name", "version"})
        if unknown:
            raise PipelineError(f"Unknown pipeline fields: {', '.join(unknown)}.")
        raw_steps = data.get("steps")
        if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, str):
            raise PipelineError("A pipeline needs a list of steps.")
        return cls(
            name,
            tuple(step_from_dict(s, i) for i, s in enumerate(raw_steps)),
            str(data.get("description") or ""),
            version,
        )

    def validate(self) -> None:
        """PipelineError naming the step when a name, reference, condition, rule or schema is wrong."""
        validate_pipeline(self)


def step_from_dict(data: Any, index: int = 0) -> Step:
    """One step from its stored form."""
    if not isinstance(data, Mapping):
        raise PipelineError(f"Step {index + 1} must be an object.")
    kind = data.get("kind", "prompt")
    body = {k: v for k, v in data.items() if k != "kind"}
    cls: type[PromptStep] | type[GateStep] = PromptStep if kind == "prompt" else GateStep
    if kind not in ("prompt", "gate"):
        raise PipelineError(f"Step {index + 1} has kind {kind!r}; a step is a prompt or a gate.")
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise PipelineError(f"Step {index + 1} has unknown fields: {', '.join(unknown)}.")
    try:
        return cls(**body)
    except TypeError as exc:
        raise PipelineError(f"Step {index + 1} is missing a field: {exc}.") from exc


def validate_pipeline(p: Pipeline) -> None:
    """The checks of Pipeline.validate (no template is looked up; see lib.pipelines.inputs for that)."""
    if not isinstance(p.name, str) or not PIPELINE_NAME.fullmatch(p.name):
        raise PipelineError(
            f"Pipeline name {p.name!r} must be 1-80 letters, digits, spaces, '.', '_' or '-', starting with a letter "
            "or digit."
        )
    if not p.steps:
        raise PipelineError("A pipeline needs at least one step.")
    if len(p.steps) > MAX_STEPS:
        raise PipelineError(f"A pipeline has at most {MAX_STEPS} steps; this one has {len(p.steps)}.")
    if len(p.description) > 2_000:
        raise PipelineError("The description is longer than 2,000 characters.")
    seen: dict[str, Step] = {}
    for i, s in enumerate(p.steps):
        where = f"Step {i + 1} ({s.name!r})"
        if not isinstance(s.name, str) or not STEP_NAME.fullmatch(s.name):
            raise PipelineError(
                f"Step {i + 1}: the name {s.name!r} must be lowercase letters, digits or _, starting with a letter "
                "(at most 32), e.g. classify."
            )
        if s.name in seen:
            raise PipelineError(f"{where}: another step already has this name.")
        all_names = {x.name for x in p.steps}
        if isinstance(s, PromptStep):
            _check_prompt_step(s, where)
            if s.condition:
                _check_refs(_parse(s.condition, where, "condition"), seen, all_names, where)
        else:
            _check_gate(s, where, seen)
            _check_refs(_parse(s.rule, where, "rule"), seen, all_names, where)
        seen[s.name] = s


def _check_prompt_step(s: PromptStep, where: str) -> None:
    if not isinstance(s.template, str) or not s.template.strip():
        raise PipelineError(f"{where}: choose a template.")
    ref = s.template_ref
    if isinstance(ref, bool) or not isinstance(ref, (str, int)) or (isinstance(ref, int) and ref < 1) or ref == "":
        raise PipelineError(f"{where}: the template is chosen by a label (e.g. production) or a version number.")
    if s.model is not None and (not isinstance(s.model, str) or "/" not in s.model):
        raise PipelineError(f"{where}: the model must look like provider/model.")
    if (
        isinstance(s.max_attempts, bool)
        or not isinstance(s.max_attempts, int)
        or not 1 <= s.max_attempts <= MAX_ATTEMPTS
    ):
        raise PipelineError(f"{where}: attempts must be a whole number from 1 to {MAX_ATTEMPTS}.")
    if s.output_schema is not None:
        try:
            check_output_schema(s.output_schema)
        except OutputInvalid as exc:
            raise PipelineError(f"{where}: {exc.reason}") from exc


def _check_gate(s: GateStep, where: str, earlier: Mapping[str, Step]) -> None:
    if s.edits_step is not None:
        target = earlier.get(s.edits_step)
        if target is None:
            raise PipelineError(f"{where}: it edits {s.edits_step!r}, which is not a step before it.")
        if not isinstance(target, PromptStep):
            raise PipelineError(f"{where}: a reviewer can edit only a prompt step's output, not {s.edits_step!r}.")
    if s.timeout_s is not None and (
        isinstance(s.timeout_s, bool) or not isinstance(s.timeout_s, (int, float)) or s.timeout_s <= 0
    ):
        raise PipelineError(f"{where}: the timeout must be a positive number of seconds.")
    if s.timeout_decision not in DECISIONS:
        raise PipelineError(f"{where}: the decision on timeout is approve or reject, not {s.timeout_decision!r}.")


def _parse(text: Any, where: str, what: str) -> frozenset[str]:
    try:
        return parse_condition(text).names
    except ConditionError as exc:
        raise PipelineError(f"{where}: the {what} is not valid: {exc}.") from exc


def _check_refs(names: frozenset[str], earlier: Mapping[str, Step], all_names: set[str], where: str) -> None:
    """Names `step.field` must be a field of an earlier step; other names are row columns."""
    for name in sorted(names):
        check_reference(name, earlier, all_names, where)


def check_reference(name: str, earlier: Mapping[str, Step], all_names: set[str], where: str) -> None:
    """PipelineError when `name` points at a later step, an unknown step's field or a field the step lacks."""
    if "." not in name:
        return  # a column of the row
    step_name, rest = name.split(".", 1)
    if step_name not in earlier:
        if step_name in all_names:
            raise PipelineError(f"{where}: {name!r} refers to step {step_name!r}, which runs later.")
        raise PipelineError(f"{where}: {name!r} refers to step {step_name!r}, which does not exist.")
    fields = earlier[step_name].fields()
    if rest not in fields and not (isinstance(earlier[step_name], PromptStep) and _open_schema(earlier[step_name])):
        raise PipelineError(f"{where}: step {step_name!r} has no output field {rest!r} (it has {', '.join(fields)}).")


def _open_schema(step: Step) -> bool:
    schema = getattr(step, "output_schema", None)
    return isinstance(schema, dict) and not schema.get("properties")


def row_columns(p: Pipeline, template_variables: Mapping[str, list[str]]) -> list[str]:
    """Row fields the pipeline reads (template variables, conditions and rules without a step prefix), in order.

    `template_variables` maps each prompt step's name to its template's variables.
    """
    step_names = {s.name for s in p.steps}
    out: dict[str, None] = {}
    for s in p.steps:
        names: list[str] = list(template_variables.get(s.name, []))
        text = s.condition if isinstance(s, PromptStep) else s.rule
        if text:
            names += sorted(parse_condition(text).names)
        for n in names:
            if "." not in n or n.split(".", 1)[0] not in step_names:
                out.setdefault(n)
    return list(out)
