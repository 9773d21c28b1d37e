"""The assistant's question set (data/eval/assistant_questions.json), scored against the loopback server.

The server plays a good model: at each step it makes the tool calls the question lists, then answers from what
the tools returned (the rows of each query, the calculator's result, the passage that holds the evidence, cited
[n]). A question scores when the agent ran exactly those tool calls, the tool results carry the expected figures
(computed from the demo rows apart from the SQL), and the final answer carries them too.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from assistant_script import MODEL, loopback_services
from fake_openai import Reply, ToolCall, turn_step
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.assistant.turn import Assistant, start_turn
from lib.core.tables import AssistantToolCall, LlmCall
from lib.documents.indexing import get_collection
from lib.usage.demo import write_demo_calls

EVAL = Path(__file__).resolve().parent.parent / "data" / "eval" / "assistant_questions.json"
DATA = json.loads(EVAL.read_text())
QUESTIONS = DATA["questions"]
TARGET = 0.9  # share of questions that must score (measured: see the printed score)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # bounded: digits, at most one fraction


def _squash(text: str) -> str:
    return " ".join(text.split())


def _has(text: str, figure: Any) -> bool:
    """True when `text` carries the figure: a number within rounding of it, or the words."""
    if isinstance(figure, (int, float)) and not isinstance(figure, bool):
        tol = 0.006 if isinstance(figure, float) else 0.5
        return any(abs(float(n) - figure) < tol for n in _NUMBER.findall(text.replace(",", "")))
    return _squash(str(figure)) in _squash(text)


def _answer(question: dict[str, Any], tool_texts: list[str]) -> str:
    """The good model's final answer, from the tool results only."""
    if question["kind"] == "documents":
        evidence = _squash(question["figures"][0])
        for text in tool_texts:
            for block in re.split(r"\n\n(?=\[\d{1,3}\] \()", text):
                head = re.match(r"\[(\d{1,3})\] \(([^)\n]{1,200})\)", block)
                if head and evidence in _squash(block):
                    return f'{head.group(2)} says: "{question["figures"][0]}" [{head.group(1)}].'
        return "I don't know: the passages I found do not say."
    parts = []
    for text in tool_texts:
        try:
            result = json.loads(text)
        except json.JSONDecodeError:
            result = None
        if not isinstance(result, dict):
            parts.append(text)  # calculator and today answer in plain text
            continue
        for row in result.get("rows", [])[:20]:
            parts.append(", ".join(f"{c} = {v}" for c, v in zip(result["columns"], row, strict=False)))
    return "From the tools: " + "; ".join(parts) + "."


def good_model(body: dict[str, Any]) -> Reply:
    messages = body.get("messages") or []
    question_text = next(m["content"] for m in reversed(messages) if m.get("role") == "user")
    question = next(q for q in QUESTIONS if q["question"] == question_text)
    step = turn_step(body)
    if step < len(question["steps"]):
        calls = tuple(
            ToolCall(c["name"], c["args"], id=f"call_{step}_{i}") for i, c in enumerate(question["steps"][step])
        )
        return Reply("", tool_calls=calls)
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    tool_texts = [str(m.get("content") or "") for m in messages[last_user:] if m.get("role") == "tool"]
    return Reply(_answer(question, tool_texts))


@pytest.fixture(scope="module")
def setup(server, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('eval') / 'eval.db'}"
    services = loopback_services(url, server, data_dir=tmp_path_factory.mktemp("data"))
    demo = DATA["demo"]
    write_demo_calls(services.engine, demo["calls"], demo["days"], datetime.fromisoformat(demo["end"]), demo["seed"])
    col = get_collection(
        services.engine, DATA["collection"]["name"], create=True, embedding_model=services.settings.embedding_model
    )
    for name in DATA["collection"]["documents"]:
        services.indexer.index_file(col, name, (Path(DATA["collection"]["source_dir"]) / name).read_bytes())
    return services


def score(services, server, question: dict[str, Any], assistant: Assistant) -> dict[str, bool]:
    server.reset()
    server.responder = good_model
    roles = ["manager", "staff"]
    turn = start_turn(assistant, services, "eval", roles, question["question"], model=MODEL)
    events = list(turn)
    with Session(services.engine) as s:
        tools = s.scalars(
            select(AssistantToolCall).where(AssistantToolCall.turn_id == turn.id).order_by(AssistantToolCall.id)
        ).all()
        model_calls = s.scalars(select(LlmCall).where(LlmCall.run_id == turn.id)).all()
    expected_calls = [(c["name"], c["args"]) for step in question["steps"] for c in step]
    ran = [(t.tool, t.arguments) for t in tools if t.status == "ok"]
    last = server.requests[-1]["json"]["messages"]  # what the model was given for its final answer
    results = " ".join(str(m.get("content") or "") for m in last if m.get("role") == "tool")
    figures = [
        f.replace("{today}", datetime.now(UTC).strftime("%Y-%m-%d")) if isinstance(f, str) else f
        for f in question["figures"]
    ]
    cited_ok = True
    if question["kind"] == "documents":
        cited = turn.cited()
        cited_ok = bool(cited) and cited[0].document == question["document"]
    if ran != expected_calls or turn.status != "done":
        print(question["id"], turn.status, [(t.tool, t.arguments, t.status, t.error) for t in tools], turn.answer[:300])
    return {
        "executed": ran == expected_calls and turn.status == "done",
        "logged": len(model_calls) == len(question["steps"]) + 1 and all(c.feature == "assistant" for c in model_calls),
        "in_results": all(_has(results, f) for f in figures) and len(events) > 2,
        "in_answer": all(_has(turn.answer, f) for f in figures) and cited_ok,
    }


def test_the_question_set_has_at_least_30_questions_over_usage_and_licenses():
    kinds = [q["kind"] for q in QUESTIONS]
    assert len(QUESTIONS) >= 30 and kinds.count("usage") >= 10 and kinds.count("documents") >= 10
    assert len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)


def test_the_assistant_scores_on_the_question_set(setup, server):
    assistant = Assistant()
    outcomes = {q["id"]: score(setup, server, q, assistant) for q in QUESTIONS}
    passed = [qid for qid, o in outcomes.items() if all(o.values())]
    failed = {qid: [k for k, ok in o.items() if not ok] for qid, o in outcomes.items() if not all(o.values())}
    total = len(QUESTIONS)
    print(f"\nassistant eval: {len(passed)}/{total} = {len(passed) / total:.2f} (target {TARGET}); failed: {failed}")
    for part in ("executed", "logged", "in_results", "in_answer"):
        print(f"  {part}: {sum(o[part] for o in outcomes.values())}/{total}")
    assert all(o["executed"] and o["logged"] for o in outcomes.values()), failed  # the plumbing never misses
    assert len(passed) / total >= TARGET, failed
