"""The Prompts page's form without Streamlit: the draft its fields describe, and the lines it shows."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lib.chat.turn import describe_result
from lib.gateway.client import CallContext, Gateway
from lib.gateway.errors import GatewayError
from lib.prompts.diff import SectionDiff
from lib.prompts.language import Template, TemplateError, parse_schema_text
from lib.prompts.runs import run_template
from lib.prompts.store import TemplateStore, Version, validate_for_save

DEFAULT_MODEL = "(default)"


def draft_from_form(
    name: str,
    description: str,
    system: str,
    user: str,
    model: str,
    temperature: float | None,
    max_tokens: float | None,
    schema_text: str,
) -> tuple[Template | None, list[str], str | None]:
    """(the template the form describes, its variables, None), or (None, [], why it cannot be saved)."""
    try:
        draft = Template(
            name.strip(),
            description,
            system,
            user,
            None if model == DEFAULT_MODEL else model,
            temperature,
            None if max_tokens is None else int(max_tokens),
            parse_schema_text(schema_text),
        )
        return draft, validate_for_save(draft), None
    except TemplateError as err:
        return None, [], str(err)


def summary(template: Template, newest: int, labels: dict[str, int]) -> str:
    """Description, newest version and where each label points, e.g. `… · newest v2 · production → v1`."""
    parts = [
        template.description,
        f"newest v{newest}",
        ", ".join(f"{k} → v{v}" for k, v in labels.items()) or "no labels",
    ]
    return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class Trial:
    """What Try it shows: the answer and its numbers, a warning when it is invalid, or only an error."""

    text: str = ""
    caption: str = ""
    warning: str | None = None
    error: str | None = None


def try_template(
    gateway: Gateway, draft: Template, values: dict[str, str], user: str | None, version: int | None, model: str | None
) -> Trial:
    """Run `draft` (saved as `version`, or an unsaved draft) on the filled-in values, logged as feature prompts."""
    try:
        run = run_template(
            gateway,
            draft,
            {n: v for n, v in values.items() if v},
            CallContext(feature="prompts", user=user),
            version,
            model,
        )
    except TemplateError as err:
        return Trial(error=str(err))
    except GatewayError as err:
        return Trial(error=f"{err}\n\nRequest id: `{err.request_id}`")
    return Trial(
        run.result.text,
        describe_result(run.result) + (" · retried once" if len(run.calls) > 1 else ""),
        None if run.valid else f"Invalid answer, even after one retry: {run.problem}",
    )


def option_index(options: list[str], value: str | None) -> int:
    """Where a select box starts: on `value` when it is one of the options, else on the first option."""
    return options.index(value) if value in options else 0


def schema_text(template: Template) -> str:
    """The template's JSON schema as the form shows it: indented JSON, or empty when it has none."""
    return json.dumps(template.json_schema, indent=2) if template.json_schema else ""


def variables_line(found: list[str]) -> str:
    """The caption under the form naming the draft's variables, e.g. `Variables: `customer``."""
    return "Variables: " + (", ".join(f"`{v}`" for v in found) or "none")


def trial_version(saved: Version | None, draft: Template) -> int | None:
    """The saved version Try it runs (logged with the call), or None when the form differs from it."""
    return saved.version if saved and draft == saved.template else None


def trial_caption(version: int | None) -> str:
    """What Try it says it is running: a saved version, or the unsaved draft."""
    return f"Trying v{version}." if version else "Trying the unsaved draft (logged without a version)."


def section_heading(section: SectionDiff) -> str:
    """A diff section's bold title, noting when that part did not change."""
    return f"**{section.title}**" + ("" if section.changed else " · no changes")


def label_caption(label: str, labels: dict[str, int]) -> str:
    """Where the chosen label points now, or that it is new."""
    return f"{label} now points at v{labels[label]}." if label in labels else f"{label} is a new label."


def move_message(label: str, target: int, moved: bool) -> str:
    """What moving a label did: pointed it at `target`, or nothing because it already pointed there."""
    return f"{label} now points at v{target}." if moved else f"{label} already pointed at v{target}."


def save_draft(
    store: TemplateStore, saved: Version | None, draft: Template, user: str | None, note: str
) -> tuple[Version | None, str]:
    """Save the form as a new template or its next version: (the version, or None when nothing changed; what to say).

    TemplateError when it cannot be saved.
    """
    if saved is None:
        version: Version | None = store.create(draft, user, note or "Created")
    else:
        version = store.save_version(draft, user, note)
    if version is None:
        return None, f"Nothing changed since v{saved.version if saved else 0}, so no version was saved."
    return version, f"Saved {version.name} v{version.version}. Labels did not move: deploy it on the Labels tab."


def label_options(labels: dict[str, int]) -> list[str]:
    """The labels a template can move: production and staging always, then its own, sorted."""
    return sorted({"production", "staging", *labels})
