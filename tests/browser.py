"""Browser-test support: the app started as a user starts it, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """Debian's chromium, if installed (make test installs it)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server the tests started; kill it if it has not stopped within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def running_app(env: dict[str, str], timeout: float = 120, port: int | None = None, args: tuple[str, ...] = ()):
    """`streamlit run app.py` on a free port (or `port`) with `env` and extra `args`; yields the base URL."""
    port = port or free_port()
    log = open(env["WORKBENCH_DATA_DIR"] + ".streamlit.log", "w")  # noqa: SIM115 - the server writes it until it stops
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the app did not start; see " + log.name) from None
                time.sleep(0.2)  # waiting for a server to come up, not pacing a test
        yield url
    finally:
        stop_process(proc)
        log.close()


@contextmanager
def browser_page(name: str = "page"):
    """A fresh headless Chromium page (Playwright, Debian's chromium; never a downloaded browser).

    On failure a screenshot `failed-<name>.png` is saved among the test artefacts.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            try:
                yield page
            except Exception:
                screenshot(page, f"failed-{name}")
                raise
        finally:
            browser.close()


def index_through_documents_page(page, base_url: str, collection: str, name: str, mime: str, data: bytes) -> None:
    """As a user: create `collection` on the Documents page, upload one file into it and wait until it is indexed."""
    page.goto(base_url + "/documents")
    page.get_by_label("New collection").fill(collection)
    page.get_by_label("New collection").press("Enter")
    page.get_by_role("button", name="Create collection").click()
    page.get_by_text("Into collection").wait_for()
    page.locator('input[type="file"]').set_input_files(files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.get_by_text(name).first.wait_for()
    page.get_by_role("button", name="Index").click()
    page.get_by_text(f"{name} — indexed").wait_for(timeout=120_000)


def assistant_messages(page):
    """The assistant's chat messages on the page, in order."""
    return page.locator('[data-testid="stChatMessage"]:has([data-testid="stChatMessageAvatarAssistant"])')


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the app has finished its rerun: no element is left over (stale) from the previous run."""
    page.wait_for_function("() => document.querySelectorAll('[data-stale=\"true\"]').length === 0", timeout=timeout_ms)


def require_chromium() -> None:
    """Skip (locally) or fail (in CI) when Debian's chromium is missing."""
    import pytest

    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: make test installs it with apt-get")
        pytest.skip("chromium is not installed (make test installs it)")


LIVE = '[data-testid="stElementContainer"]:not([data-stale="true"])'


def live(page):
    """The app's current elements: locators scoped to these never match a leftover (stale) copy from a rerun."""
    return page.locator(LIVE)


def idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the script is not running and no stale element is left: the current run has fully finished.

    Call it after waiting for something the rerun you expect shows (a message, a new widget): on its own it
    cannot tell a rerun that has not started yet from one that has finished.
    """
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app !== null && ['notRunning', 'compilationError'].includes(app.dataset.testScriptState)
                && app.dataset.testConnectionState === 'CONNECTED'
                && document.querySelectorAll('[data-stale="true"]').length === 0;
        }""",
        timeout=timeout_ms,
    )


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the current selectbox labelled `label`."""
    live(page).get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


# The checkout is written to while tests run (other tests, people saving files): with Streamlit's file watcher on,
# the app watches all of it (its log fills with "Inotify queue overflowed") and reacts to edits made mid-test.
NO_WATCHER = ("--server.fileWatcherType", "none")


def open_page(page, url: str, title: str) -> None:
    """Open the app's home page, then the page `title` from the sidebar navigation, as a user does.

    (A deep link such as /prompts as a server's very first request runs the file in pages/ without app.py.)
    """
    page.goto(url)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link").first.wait_for()
    idle(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    idle(page)
