"""The two example pipelines shipped in data/pipelines ("Support triage", "Review intelligence"), their templates
and a small sample CSV each; installed on request (`python -m lib.cli pipeline install-examples`, or a button)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.pipelines.definition import Pipeline, PipelineError
from lib.pipelines.store import PipelineNotFound, PipelineStore
from lib.prompts.language import template_from_content
from lib.prompts.store import PRODUCTION, TemplateExists, TemplateStore

EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "data" / "pipelines"
FORMAT = "ai-workbench/pipeline@1"
AUTHOR = "workbench"


@dataclass(frozen=True)
class Example:
    """A shipped pipeline: its definition, the templates it runs, and its sample rows file."""

    pipeline: Pipeline
    templates: list[dict[str, Any]]
    sample: Path


def load_examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """Every example in `folder`, by file name; PipelineError when one cannot be read (a broken shipped file)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise PipelineError(f"{path.name} is not a pipeline file ({FORMAT}).")
        pipeline = Pipeline.from_dict(raw["name"], {k: raw[k] for k in ("description", "steps")})
        pipeline.validate()
        out.append(Example(pipeline, list(raw.get("templates") or []), folder / raw["sample"]))
    return out


def install_examples(pipelines: PipelineStore, templates: TemplateStore, user: str | None = AUTHOR) -> list[str]:
    """Create the examples' templates (v1, production) and pipelines when missing; returns the pipelines made.

    An existing template or pipeline of the same name is left as it is (never overwritten).
    """
    made = []
    existing = set(templates.names())
    for example in load_examples():
        for spec in example.templates:
            if spec["name"] in existing:
                continue
            template = template_from_content(spec["name"], {k: v for k, v in spec.items() if k != "name"})
            with contextlib.suppress(TemplateExists):  # another process made it first
                templates.create(template, user, "Shipped with the example pipelines", labels=(PRODUCTION,))
        try:
            pipelines.get(example.pipeline.name)
        except PipelineNotFound:
            pipelines.save(example.pipeline, user, "Shipped with the workbench")
            made.append(example.pipeline.name)
    return made


def sample_file(name: str) -> tuple[str, bytes]:
    """(file name, bytes) of the sample rows of the example pipeline `name`."""
    for example in load_examples():
        if example.pipeline.name == name:
            return example.sample.name, example.sample.read_bytes()
    raise PipelineNotFound(f"There is no example pipeline named {name!r}.")
