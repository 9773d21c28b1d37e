"""Every page of the app in a real headless Chromium: each renders its heading without an exception."""

import pytest
from browser import NO_WATCHER, browser_page, idle, require_chromium, running_app, screenshot

pytestmark = pytest.mark.browser

# (navigation title = heading, URL path, what the page shows once it has rendered past its heading)
PAGES = [
    ("Chat", "", '[data-testid="stChatInput"]'),
    ("Documents", "/documents", 'label:has-text("New collection")'),
    ("Prompts", "/prompts", "text=newest v1 · production → v1"),
    ("Compare", "/compare", 'role=tab[name="Side by side"]'),
    ("Pipelines", "/pipelines", 'role=tab[name="Build"]'),
    ("Review", "/review", "text=Nothing is waiting for review here."),
    ("Usage", "/usage", "text=No calls are logged yet"),
    ("Settings", "/admin", "text=Circuit breakers:"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("pages") / "data"
    with running_app({"WORKBENCH_DATA_DIR": str(data), "WORKBENCH_USER": "visitor"}, args=NO_WATCHER) as url:
        yield url


def test_every_page_opens_from_the_navigation_and_renders_without_an_exception(app_url):
    with browser_page("pages") as page:
        page.goto(app_url)
        nav = page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_role("link").first.wait_for()
        idle(page)
        for title, path, marker in PAGES:
            nav.get_by_role("link", name=title, exact=True).click()
            page.get_by_role("heading", name=title, exact=True).wait_for()
            page.locator(marker).first.wait_for()
            idle(page)
            assert page.url.rstrip("/") == app_url + path
            exceptions = page.locator('[data-testid="stException"]')
            assert exceptions.count() == 0, exceptions.first.inner_text()
            assert page.get_by_role("heading", level=1).all_inner_texts() == [title]  # nothing left of the last page
            screenshot(page, f"page-{title.lower()}")


def test_a_deep_link_right_after_the_server_starts_opens_the_page_inside_the_app(tmp_path):
    require_chromium()
    env = {"WORKBENCH_DATA_DIR": str(tmp_path / "data"), "WORKBENCH_USER": "visitor"}
    with running_app(env, args=NO_WATCHER) as url, browser_page("deep-link") as page:
        page.goto(url + "/prompts")
        page.get_by_role("heading", name="Prompts", exact=True).wait_for()
        idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("visitor", exact=True).wait_for(timeout=10_000)
        assert "Prompt authors" in sidebar.inner_text() and page.url.endswith("/prompts")
