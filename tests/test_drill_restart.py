"""Drill: everything a team keeps survives a restart of the app.

A data dir (SQLite file + embedded Chroma) is filled through the app's own code: a saved conversation with
sources and feedback, a template with two versions and two labels, a test set, a batch run with its
results (against the loopback server) and an indexed document. Then every engine and client is closed and
a NEW PROCESS opens the same data dir the way the app does (lib.services.build_services, migrations
included), reads all of it back and searches the document.

Reproduce: .venv/bin/python -m pytest tests/test_drill_restart.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fake_openai import Reply
from files import make_pdf
from sqlalchemy import func, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "drill.answer"
USER = "ada@example.com"
HANDBOOK = [
    "Welcome to Acme. This handbook explains how we work.\nOur offices are in Leeds and Lyon.",
    "Holidays. Every employee gets 28 days of paid holiday per year.\nUnused days expire in March.",
    "Expenses. Submit receipts within 30 days through the finance portal.\nTaxis need approval.",
]
QUERY = "How many days of paid holiday do employees get?"


def snapshot(services: Any, run_id: int) -> dict[str, Any]:
    """Everything the drill stored, read back through the app's own functions (also run by the new process)."""
    from lib.chat.conversations import list_sessions, load_messages
    from lib.compare.runs import get_run, run_rows
    from lib.compare.test_sets import list_test_sets, load_cases
    from lib.core.tables import LlmCall
    from lib.documents.indexing import document_table, get_collection
    from lib.documents.retrieval import RetrievalSettings
    from lib.documents.vectorstore import get_all, open_store
    from lib.prompts.store import TemplateStore

    engine = services.engine
    store = TemplateStore(engine)
    sessions = list_sessions(engine, USER)
    with Session(engine) as s:
        calls = sorted(
            s.execute(select(LlmCall.request_id, LlmCall.status, LlmCall.experiment_id, LlmCall.variant)).all()
        )
    collection = get_collection(engine, "Handbook")
    chunks = get_all(open_store(services.client, collection.chroma_name, services.embeddings), ["metadatas"])
    hits = services.retriever.search("Handbook", QUERY, RetrievalSettings(k=3, mode="hybrid"))
    vector_hits = services.retriever.search("Handbook", QUERY, RetrievalSettings(k=3, mode="vector"))
    snap = {
        "sessions": [
            {
                "id": c.id,
                "title": c.title,
                "collection": c.collection,
                "messages": [
                    {k: m[k] for k in ("role", "content", "sources", "request_id", "rating")}
                    for m in load_messages(engine, c.id, USER)
                ],
            }
            for c in sessions
        ],
        "templates": {
            name: {
                "versions": [
                    (v.version, v.author, v.note, v.template.content(), v.content_hash) for v in store.history(name)
                ],
                "labels": store.labels(name),
                "label_moves": [(m.label, m.from_version, m.to_version, m.moved_by) for m in store.label_history(name)],
            }
            for name in store.names()
        },
        "test_sets": [
            {**t, "cases": [(c.values, c.expected) for c in load_cases(engine, t["id"])]}
            for t in list_test_sets(engine)
        ],
        "run": {k: v for k, v in get_run(engine, run_id).items() if k not in ("A", "B")},
        "run_rows": run_rows(engine, run_id),
        "calls": calls,
        "documents": document_table(engine),
        "chunks": sorted((m["document_id"], m["version"], m["chunk_index"], m["page"]) for m in chunks["metadatas"]),
        "search": [(h.document, h.page, h.text) for h in hits],
        "vector_search": [(h.document, h.page, h.text) for h in vector_hits],
    }
    return json.loads(json.dumps(snap, default=str))  # as it crosses the process boundary


CHILD = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
from lib.core.settings import load_settings
from lib.services import build_services
from test_drill_restart import snapshot
services = build_services(load_settings())  # as the app starts: migrations run, Chroma reopened
print("SNAPSHOT " + json.dumps(snapshot(services, {run_id})))
"""


def populate(services, server) -> int:
    """Fill the data dir through the app's code; returns the batch run's id."""
    from lib.chat.conversations import add_message, create_session, set_feedback
    from lib.compare.runs import Checks, Variant, execute_run, start_run
    from lib.compare.test_sets import create_test_set, parse_csv
    from lib.core.settings import load_settings
    from lib.documents.indexing import get_collection
    from lib.gateway.client import Gateway
    from lib.prompts.language import Template
    from lib.prompts.store import PRODUCTION, STAGING, TemplateStore

    engine = services.engine
    # a document
    collection = get_collection(engine, "Handbook", create=True)
    outcome = services.indexer.index_file(collection, "handbook.pdf", make_pdf(HANDBOOK))
    assert outcome.status == "indexed" and outcome.pages == 3
    # a conversation with a cited answer and a 👍
    chat = create_session(engine, USER, collection="Handbook")
    add_message(engine, chat.id, "user", QUERY)
    answer = add_message(
        engine,
        chat.id,
        "assistant",
        "28 days of paid holiday a year [1].",
        sources=[{"number": 1, "document": "handbook.pdf", "page": 2, "text": HANDBOOK[1]}],
        request_id="req-restart-1",
        summary="28 days",
    )
    set_feedback(engine, answer.id, 1, "Clear and cited", USER)
    # a template with two versions, production on v1 and staging on v2
    store = TemplateStore(engine)
    store.create(
        Template(name=TEMPLATE, system="Answer briefly.", user="Question: {{ question }}"), USER, labels=(PRODUCTION,)
    )
    store.save_version(
        Template(
            name=TEMPLATE,
            system="Answer in one sentence, citing the handbook.",
            user="Question: {{ question }}",
            temperature=0.2,
        ),
        "bob@example.com",
        "One sentence",
    )
    store.move_label(TEMPLATE, STAGING, 2, "bob@example.com", "try it")
    # a test set, and a batch run of v1 against v2 over it
    cases = parse_csv(
        b"question,expected\nHow many holidays?,28\nWhere are the offices?,Leeds\nWhen do unused days expire?,March\n",
        ["question"],
    )
    set_id = create_test_set(engine, "Handbook questions", ["question"], USER, cases)
    providers = {
        "openai": {"kind": "openai", "base_url": server.base_url, "api_key": "test-key", "models": ["gpt-4o-mini"]}
    }
    settings = load_settings(env={**os.environ, "WORKBENCH_PROVIDERS": json.dumps(providers)})
    server.default_reply = Reply("Twenty-eight days, per the handbook.")
    run_id = start_run(
        engine,
        TEMPLATE,
        set_id,
        Variant(1, "openai/gpt-4o-mini"),
        Variant(2, "openai/gpt-4o-mini"),
        Checks(max_chars=200),
        USER,
    )
    progress = execute_run(Gateway(settings, engine), store, run_id, concurrency=2)
    assert (progress.total, progress.done, progress.failed) == (6, 6, 0)
    return run_id


def test_a_new_process_finds_everything_the_last_one_stored(data_dir, local_embeddings, fake):
    import chromadb.api.client

    from lib.core.settings import load_settings
    from lib.core.tables import LlmCall
    from lib.services import build_services

    began = time.perf_counter()
    services = build_services(load_settings(), embeddings=local_embeddings)
    run_id = populate(services, fake)
    before = snapshot(services, run_id)
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(LlmCall)) == 6

    # what was stored, before the restart
    [chat] = before["sessions"]
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"] and chat["messages"][1]["rating"] == 1
    assert chat["messages"][1]["sources"][0]["page"] == 2 and chat["collection"] == "Handbook"
    tpl = before["templates"][TEMPLATE]
    assert [v[0] for v in tpl["versions"]] == [2, 1] and tpl["labels"] == {"production": 1, "staging": 2}
    [test_set] = before["test_sets"]
    assert test_set["name"] == "Handbook questions" and len(test_set["cases"]) == 3
    assert before["run"]["status"] == "done"
    assert [(r["A"]["status"], r["B"]["status"]) for r in before["run_rows"]] == [("ok", "ok")] * 3
    assert [d["status"] for d in before["documents"]] == ["indexed"] and len(before["chunks"]) > 0
    top = before["search"][0]
    assert (top[0], top[1]) == ("handbook.pdf", 2) and "28 days" in top[2]
    populated = time.perf_counter() - began

    # the restart: close everything this process holds, then a new process opens the same data dir
    services.engine.dispose()
    del services  # the embedding cache's SQLite connections go with it
    chromadb.api.client.SharedSystemClient.clear_system_cache()  # closes the embedded Chroma of this process
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    code = CHILD.format(root=str(ROOT), tests=str(ROOT / "tests"), run_id=run_id)
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    restarted = time.perf_counter() - started
    assert child.returncode == 0, child.stderr[-3000:]
    [line] = [ln for ln in child.stdout.splitlines() if ln.startswith("SNAPSHOT ")]
    after = json.loads(line.removeprefix("SNAPSHOT "))

    for part in before:
        assert after[part] == before[part], f"{part} differs after the restart"
    print(
        f"\nDRILL restart: populated a data dir in {populated:.1f} s (1 conversation, 2 messages with "
        f"sources and a rating; template {TEMPLATE} v1+v2 with production/staging; a test set of 3 cases; "
        f"a batch run with 6 results and 6 call-log rows; handbook.pdf in {len(before['chunks'])} chunks); "
        f"a new process reopened it in {restarted:.1f} s and found all of it, search still answers from "
        f"handbook.pdf p. 2"
    )
