"""Shared by the Pipelines and Review page tests: two templates, a two-step pipeline with a gate, a loopback model.

The loopback model answers the `classify` step with a label and a confidence read from the ticket (a ticket that
says "urgent" gets 0.4, below the gate's 0.7, so it waits for review) and the `reply` step with a short reply.
"""

from __future__ import annotations

import json
from typing import Any

from fake_openai import Reply

from lib.prompts.language import Template
from lib.prompts.store import TemplateStore

NAME = "Ticket desk"
CLASSIFY = Template(name="desk.classify", system="Classify support tickets.", user="Ticket: {{ ticket }}")
REPLY = Template(
    name="desk.reply",
    system="Write a one-line reply.",
    user="Ticket: {{ ticket }}\nLabel: {{ classify.label }}",
)
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["bug", "billing", "other"]}, "confidence": {"type": "number"}},
    "required": ["label", "confidence"],
    "additionalProperties": False,
}
DEFINITION = {
    "description": "Classify a ticket; a reviewer checks unsure ones; reply.",
    "steps": [
        {"kind": "prompt", "name": "classify", "template": "desk.classify", "output_schema": SCHEMA},
        {"kind": "gate", "name": "check", "rule": "classify.confidence < 0.7", "edits_step": "classify"},
        {"kind": "prompt", "name": "reply", "template": "desk.reply"},
    ],
}


def create_templates(store: TemplateStore) -> None:
    """The two templates the pipeline runs (v1, production)."""
    for template in (CLASSIFY, REPLY):
        store.create(template, "ada", labels=("production",))


def _last_user(body: dict[str, Any]) -> str:
    users = [m.get("content") for m in body.get("messages") or [] if m.get("role") == "user"]
    return str(users[-1] if users else "")


def answer(body: dict[str, Any]) -> Reply:
    """The loopback model's answer to one step of one row."""
    text = _last_user(body)
    if text.startswith("Ticket:") and "Label:" not in text:
        label = "billing" if "invoice" in text else "bug"
        confidence = 0.4 if "urgent" in text else 0.9
        return Reply(json.dumps({"label": label, "confidence": confidence}))
    label = text.rsplit("Label:", 1)[-1].strip()
    return Reply(f"Thanks, we are on it ({label}).")


def tickets(n: int, urgent: tuple[int, ...] = (2,)) -> list[dict[str, str]]:
    """`n` ticket rows; those at positions `urgent` say "urgent" and wait for review."""
    return [{"ticket": f"Ticket {i}: the app crashes{' - urgent' if i in urgent else ''}"} for i in range(n)]


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    """Rows as a CSV file."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def loopback_engine(server: Any, monkeypatch: Any) -> Any:
    """The app's engine (migrated, templates stored) with the loopback server as provider `acme` (model m1)."""
    from lib.core.db import make_engine, migrate
    from lib.core.settings import load_settings

    server.reset()
    server.responder = answer
    providers = {"acme": {"base_url": server.base_url, "api_key": "k", "models": ["m1"]}}
    monkeypatch.setenv("WORKBENCH_PROVIDERS", json.dumps(providers))
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    create_templates(TemplateStore(engine))
    return engine


def run_page(path: str) -> Any:
    """`path` under AppTest (with secrets of its own, not the machine's), run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(path, default_timeout=60)
    at.secrets["dummy"] = "not used"
    return at.run()


def button(at: Any, label: str) -> Any:
    """The first button whose label starts with `label`."""
    return next(b for b in at.button if b.label.startswith(label))
