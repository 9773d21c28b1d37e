"""Scale-out: two `streamlit run app.py` processes share one PostgreSQL database and one Chroma server.

A document uploaded and indexed through one process is listed and answered from (with its citation) through
the other, in headless Chromium, and the calls made through both processes land in the one call log.
Each process has its own data dir, as on separate machines (embedding cache, kept originals).
"""

from __future__ import annotations

import time

import pytest
from browser import (
    assistant_messages,
    browser_page,
    index_through_documents_page,
    require_chromium,
    running_app,
    screenshot,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.core.db import make_engine, migrate
from lib.core.tables import Document, LlmCall

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.chroma_server]

NOTE = (
    "Acme badge policy.\n\nLost badges are replaced at the front desk on floor one for a fee of 15 EUR.\n\n"
    "Visitors wear a red badge and are escorted at all times.\n"
)


def ask(page, question: str, wait_for: str) -> str:
    box = page.get_by_placeholder("Ask a question")
    box.fill(question)
    box.press("Enter")
    answer = assistant_messages(page).filter(has_text=wait_for)
    answer.first.wait_for()
    return answer.first.inner_text()


def pick_collection(page, name: str) -> None:
    page.get_by_text("Answer from collection").wait_for()
    page.locator('[data-testid="stSelectbox"]').nth(1).click()
    page.get_by_role("option", name=name).click()


def test_two_app_processes_share_documents_and_one_call_log(tmp_path, pg_url, chroma_server):
    require_chromium()
    host, port = chroma_server
    engine = make_engine(pg_url)
    migrate(engine)  # as the first app process would; both then start on a ready schema
    shared = {"DATABASE_URL": pg_url, "CHROMA_HOST": host, "CHROMA_PORT": str(port)}
    started = time.perf_counter()
    with (
        running_app({**shared, "WORKBENCH_DATA_DIR": str(tmp_path / "a"), "WORKBENCH_USER": "user-a"}) as a,
        running_app({**shared, "WORKBENCH_DATA_DIR": str(tmp_path / "b"), "WORKBENCH_USER": "user-b"}) as b,
    ):
        with browser_page("scale-out-a") as page:  # process A: create a collection and index a file
            index_through_documents_page(page, a, "Badges", "badges.txt", "text/plain", NOTE.encode())
        with browser_page("scale-out-b") as page:  # process B: sees it and answers from it, citing it
            page.goto(b + "/documents")
            page.get_by_text("badges.txt").first.wait_for()
            page.goto(b)
            pick_collection(page, "Badges")
            text = ask(page, "Where are lost badges replaced?", "front desk")
            assert "15 EUR" in text
            page.get_by_text("[1] badges.txt").first.wait_for()
            screenshot(page, "scale-out-b")
        with browser_page("scale-out-a2") as page:  # process A answers too
            page.goto(a)
            pick_collection(page, "Badges")
            ask(page, "What colour badge do visitors wear?", "red badge")
    with Session(engine) as s:
        by_user = dict(
            s.execute(select(LlmCall.user, func.count()).where(LlmCall.feature == "chat").group_by(LlmCall.user)).all()
        )
        docs = s.scalars(select(Document)).all()
    engine.dispose()
    print(f"two processes: {by_user} in {time.perf_counter() - started:.1f} s")
    assert [(d.name, d.status, d.version) for d in docs] == [("badges.txt", "indexed", 1)]
    assert by_user.get("user-a", 0) >= 1 and by_user.get("user-b", 0) >= 1
