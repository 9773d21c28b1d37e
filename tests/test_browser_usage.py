"""Usage in a real headless Chromium: the manager's charts render from the call log."""

import pytest
from browser import browser_page, require_chromium, running_app, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_chromium()
    from lib.core.db import make_engine, migrate
    from lib.usage.demo import write_demo_calls

    data = tmp_path_factory.mktemp("pages") / "data"
    engine = make_engine(f"sqlite:///{data / 'workbench.db'}")
    migrate(engine)
    write_demo_calls(engine, 3000, 30)
    engine.dispose()
    with running_app({"WORKBENCH_DATA_DIR": str(data), "WORKBENCH_USER": "manager"}) as url:
        yield url


def test_a_manager_opens_usage_and_the_charts_render(app_url):
    with browser_page("usage") as page:
        page.goto(app_url + "/usage")
        page.get_by_role("heading", name="Usage", exact=True).wait_for()
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
        page.locator(".js-plotly-plot .main-svg").first.wait_for()
        page.locator('[data-testid="stPlotlyChart"]').nth(2).wait_for(state="attached")  # drawn one by one, in tabs
        assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3
        screenshot(page, "usage")
