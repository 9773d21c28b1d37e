"""Sign-in in a real browser against a real OpenID Connect provider on 127.0.0.1 (oidc-provider-mock)."""

import pytest
from browser import browser_page, free_port, require_chromium, running_app, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def signin_app(tmp_path_factory):
    require_chromium()
    from oidc_provider_mock import User, run_server_in_thread

    root = tmp_path_factory.mktemp("signin")
    port = free_port()
    verified = [  # other subjects typed in get {"email": sub} and no email_verified claim
        User(sub=email, claims={"email": email, "email_verified": True})
        for email in ("ada@example.com", "root@example.com", "stranger@elsewhere.org")
    ]
    verified.append(User(sub="impostor", claims={"email": "root@example.com", "email_verified": False}))
    with run_server_in_thread(user_claims=verified) as oidc:
        secrets = root / "secrets.toml"
        secrets.write_text(f"""
WORKBENCH_ROLES = '{{"ada@example.com": ["staff"], "root@example.com": ["admin"]}}'
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "test-only-cookie-secret-0123456789abcdef"
client_id = "workbench-test"
client_secret = "workbench-test-secret"
server_metadata_url = "http://127.0.0.1:{oidc.server_port}/.well-known/openid-configuration"
""")
        env = {"WORKBENCH_DATA_DIR": str(root / "data")}
        with running_app(env, port=port, args=("--secrets.files", str(secrets))) as url:
            yield url


def sign_in(page, url: str, who: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_placeholder("sub").fill(who)
    page.get_by_role("button", name="Authorize").click()
    page.get_by_text(who).first.wait_for()


def test_a_staff_user_signs_in_and_sees_only_the_staff_pages(signin_app):
    with browser_page("signin-staff") as page:
        sign_in(page, signin_app, "ada@example.com")
        page.get_by_text("Roles: staff").wait_for()
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Chat" in nav and "Documents" in nav
        assert "Usage" not in nav and "Settings" not in nav and "Prompts" not in nav
        page.get_by_role("heading", name="Chat").wait_for()
        screenshot(page, "signin-staff")
        page.goto(signin_app + "/admin")  # not in this user's navigation: the app will not open it
        page.get_by_role("heading", name="Chat").wait_for()
        assert page.get_by_role("heading", name="Settings").count() == 0


def test_a_user_without_a_role_is_told_so_and_sees_no_page(signin_app):
    with browser_page("signin-norole") as page:
        sign_in(page, signin_app, "stranger@elsewhere.org")
        page.get_by_text("No access yet").wait_for()
        page.get_by_text("no role is assigned to you").wait_for()  # drawn just after the heading, as the run goes on
        assert page.get_by_role("heading", name="Chat").count() == 0


def test_an_admin_opens_the_settings_page(signin_app):
    with browser_page("signin-admin") as page:
        sign_in(page, signin_app, "root@example.com")
        page.get_by_role("link", name="Settings").click()
        page.get_by_role("heading", name="Settings").wait_for()
        page.get_by_text("Providers come from the environment").wait_for()


def test_an_account_claiming_the_admins_address_unverified_gets_no_role(signin_app):
    with browser_page("signin-unverified") as page:
        page.goto(signin_app)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_placeholder("sub").fill("impostor")
        page.get_by_role("button", name="Authorize").click()
        page.get_by_text("No access yet").wait_for()
        assert "has not verified the address root@example.com" in page.inner_text("body")
        assert page.get_by_role("link", name="Settings").count() == 0
