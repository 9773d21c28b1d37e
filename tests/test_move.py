"""`python -m lib.cli move`: a SQLite + embedded-Chroma install copied to PostgreSQL and a Chroma server.

Every table and collection arrives with the same counts, search gives the same results afterwards, new rows
get fresh ids (sequences reset), a non-empty target is refused unless --replace-target, and a copy whose
counts differ exits non-zero naming the table.
"""

from __future__ import annotations

import time

import pytest
from files import make_pdf
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.chat.conversations import add_message, create_session, set_feedback
from lib.cli import move as move_module
from lib.cli.main import main
from lib.cli.move import copied_tables
from lib.core.db import make_engine
from lib.core.settings import load_settings
from lib.core.tables import Budget, Collection, Feedback, LlmCall, PriceOverride
from lib.documents.indexing import get_collection
from lib.documents.jobs import create_job, run_job
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.prompts.store import ensure_builtin_templates
from lib.services import build_services
from lib.usage.demo import write_demo_calls

pytestmark = pytest.mark.postgres
CALLS = 3000
QUERIES = ["How many days of paid holiday?", "Where do I park my bike?", "finance portal receipts"]


@pytest.fixture
def install(data_dir, local_embeddings):
    """A SQLite + embedded Chroma install with documents in two collections, calls, chats and templates."""
    services = build_services(load_settings(), local_embeddings)
    engine = services.engine
    ensure_builtin_templates(engine)
    for name, files in {
        "HR": [
            (
                "handbook.pdf",
                make_pdf(
                    [
                        "Welcome.",
                        "Every employee gets 28 days of paid holiday.",
                        "Submit receipts via the finance portal.",
                    ]
                ),
            )
        ],
        "Facilities": [
            ("bikes.txt", b"Bikes go in the basement rack. " * 40),
            ("parking.txt", b"Cars park on level minus two. " * 40),
        ],
    }.items():
        col = get_collection(engine, name, create=True)
        job = create_job(engine, col, [n for n, _ in files], "ada")
        assert all(o.status == "indexed" for o in run_job(engine, services.indexer, job.id, files))
    write_demo_calls(engine, CALLS, 30)
    chat = create_session(engine, "ada", collection="HR")
    add_message(engine, chat.id, "user", "How many holidays? ✓ naïve")
    answer = add_message(
        engine, chat.id, "assistant", "28 days [1]", sources=[{"document": "handbook.pdf"}], request_id="r-1"
    )
    set_feedback(engine, answer.id, -1, "too short", "ada")
    with Session(engine) as s, s.begin():
        s.add(Budget(scope="global", subject="*", limit_usd=100.0))
        s.add(PriceOverride(model="acme/m", input_per_mtok=1.0, output_per_mtok=2.0))
    return services


def search_all(retriever: Retriever) -> list[list[tuple]]:
    out = []
    for collection, query in (("HR", QUERIES[0]), ("Facilities", QUERIES[1]), ("HR", QUERIES[2])):
        hits = retriever.search(collection, query, RetrievalSettings(k=3, mode="hybrid"))
        out.append([(h.document, h.page, h.chunk_index, h.text, round(h.score, 4)) for h in hits])
    return out


def test_an_install_moves_to_postgresql_and_a_chroma_server_with_the_same_counts_and_search(
    install, pg_url, chroma_server, capsys
):
    host, port = chroma_server
    before = search_all(install.retriever)
    started = time.perf_counter()
    assert main(["move", "--to-database-url", pg_url, "--to-chroma-host", host, "--to-chroma-port", str(port)]) == 0
    took = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "every count matches" in out, out

    target = make_engine(pg_url)
    source = install.engine
    with Session(source) as s, Session(target) as t:
        for table in copied_tables():
            assert s.scalar(select(func.count()).select_from(table)) == t.scalar(
                select(func.count()).select_from(table)
            ), table.name
        assert t.scalar(select(func.count()).select_from(LlmCall)) == CALLS
        assert t.scalar(select(Feedback.comment)) == "too short"
        # the rollups were rebuilt by the target's triggers
        assert t.scalar(select(func.sum(func.coalesce(LlmCall.cost_usd, 0)))) == pytest.approx(
            s.scalar(select(func.sum(func.coalesce(LlmCall.cost_usd, 0))))
        )
        tz = t.scalar(select(LlmCall.created_at).order_by(LlmCall.id).limit(1))
        assert tz.tzinfo is not None and tz.replace(tzinfo=None) == s.scalar(
            select(LlmCall.created_at).order_by(LlmCall.id).limit(1)
        ).replace(tzinfo=None)
        chroma_names = set(s.scalars(select(Collection.chroma_name)))
    server = move_module.chroma_server_client(host, port)
    for name in chroma_names:
        assert server.get_collection(name).count() == install.client.get_collection(name).count() > 0
    # the moved install, read through the same code as the app, answers the same
    moved = Retriever(target, server, install.embeddings)
    assert search_all(moved) == before
    # sequences continue after the copied ids
    with Session(target) as t, t.begin():
        t.add(
            LlmCall(
                request_id="after-move", feature="chat", provider="offline", model="offline/extractive", status="ok"
            )
        )
        t.add(Collection(name="New", chroma_name="wb_new_after_move", embedding_model="local/all-MiniLM-L6-v2"))
    with Session(target) as t:
        rows = sum(t.scalar(select(func.count()).select_from(tb)) for tb in copied_tables()) - 2
    print(f"moved {rows} rows and {sum(server.get_collection(n).count() for n in chroma_names)} chunks in {took:.1f} s")

    # a second move into the now non-empty targets is refused, then allowed with --replace-target
    assert main(["move", "--to-database-url", pg_url]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["move", "--to-chroma-host", host, "--to-chroma-port", str(port)]) == 2
    assert "already holds chunks" in capsys.readouterr().err
    assert (
        main(
            [
                "move",
                "--to-database-url",
                pg_url,
                "--to-chroma-host",
                host,
                "--to-chroma-port",
                str(port),
                "--replace-target",
            ]
        )
        == 0
    )
    with Session(target) as t:
        assert t.scalar(select(func.count()).select_from(LlmCall)) == CALLS
    assert search_all(Retriever(target, server, install.embeddings)) == before
    target.dispose()


def test_a_copy_whose_counts_differ_exits_non_zero_naming_the_table(install, pg_url, monkeypatch, capsys):
    copy = move_module.copy_tables

    def lossy(source, target, log, page=1000):
        copy(source, target, log, page)
        with Session(target) as t, t.begin():
            t.delete(t.scalar(select(Feedback)))  # as if a row were lost on the way

    monkeypatch.setattr(move_module, "copy_tables", lossy)
    assert main(["move", "--to-database-url", pg_url]) == 1
    err = capsys.readouterr().err
    assert "counts differ" in err and "table feedback: 1 rows in the source, 0 in the target" in err
