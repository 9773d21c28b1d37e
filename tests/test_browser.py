"""The main paths in a real headless Chromium, against the app started as a user would start it."""

import pytest
from browser import (
    assistant_messages,
    browser_page,
    index_through_documents_page,
    require_chromium,
    running_app,
    screenshot,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("browser") / "data"
    with running_app({"WORKBENCH_DATA_DIR": str(data), "WORKBENCH_USER": "browser-user"}) as url:
        yield url


def test_a_user_opens_the_app_asks_a_question_and_sees_the_answer_stream_in(app_url):
    with browser_page("chat") as page:
        page.goto(app_url)
        page.get_by_text("Offline extracts.", exact=True).wait_for()
        box = page.get_by_placeholder("Ask anything")
        box.fill("The library is on the third floor. It opens at nine.")
        box.press("Enter")
        page.get_by_text("Offline extract ·").first.wait_for()
        box.fill("Which floor is the library on?")
        box.press("Enter")
        answer = assistant_messages(page).filter(has_text="The library is on the third floor.")
        answer.wait_for()
        answer.get_by_text("offline/extractive", exact=False).wait_for()
        assert "$0" in answer.inner_text()
        screenshot(page, "chat")


def test_a_user_uploads_a_pdf_waits_for_indexing_and_gets_an_answer_citing_its_page(app_url, tmp_path):
    from files import make_pdf

    pdf = make_pdf(
        [
            "Acme travel policy.",
            "Trains are booked in second class.\nFlights need director approval.",
            "Hotels up to 120 EUR a night.",
        ]
    )
    with browser_page("upload") as page:
        index_through_documents_page(page, app_url, "Travel", "travel.pdf", "application/pdf", pdf)
        screenshot(page, "documents")
        page.goto(app_url)
        page.get_by_text("Answer from collection").wait_for()
        page.locator('[data-testid="stSelectbox"]').nth(1).click()
        page.get_by_role("option", name="Travel").click()
        box = page.get_by_placeholder("Ask a question")
        box.fill("Who has to approve flights?")
        box.press("Enter")
        page.get_by_text("Flights need director approval.").first.wait_for()
        citation = page.get_by_text("[1] travel.pdf, p. 2")
        citation.wait_for()
        screenshot(page, "chat-citation")
