"""AI Workbench: navigation, page config, identity and the sidebar."""

# ruff: noqa: E402 (the collector is paused before the app's imports)
from pathlib import Path

from lib.ui import first_run

first_run.pause()  # no garbage collection while a fresh process loads the app for its first page (lib/ui/first_run.py)

import streamlit as st

from lib.core.identity import ROLE_LABELS
from lib.core.settings import ConfigError
from lib.ui.failures import run_guarded
from lib.ui.resources import (
    auth_enabled,
    current_identity,
    get_engine,
    get_settings,
    note_app_run,
    start_background,
    stop_misconfigured,
)
from lib.ui.untrusted import clean_name, untrusted_label

# A local SVG favicon: sent inline as a data URL. A :material/…: one is fetched from a Google CDN (issue 12 item 12),
# and an emoji one costs the first draw ~0.3-0.8 s (Streamlit imports its emoji catalogue to recognise it).
st.set_page_config(
    page_title="AI Workbench", page_icon=str(Path(__file__).parent / "lib/ui/favicon.svg"), layout="wide"
)

# (file, title, icon, section); a page appears once its file exists and the user has its role.
PAGES = [
    ("pages/chat.py", "Chat", ":material/chat:", "Staff"),
    ("pages/documents.py", "Documents", ":material/description:", "Staff"),
    ("pages/prompts.py", "Prompts", ":material/edit_note:", "Prompt authors"),
    ("pages/compare.py", "Compare", ":material/compare:", "Prompt authors"),
    ("pages/pipelines.py", "Pipelines", ":material/account_tree:", "Prompt authors"),
    ("pages/review.py", "Review", ":material/fact_check:", "Reviewers"),
    ("pages/usage.py", "Usage", ":material/monitoring:", "Managers"),
    ("pages/admin.py", "Settings", ":material/settings:", "Admin"),
]


def sign_in() -> None:
    st.title("AI Workbench")
    st.write("Sign in with your organisation account to continue.")
    st.button("Sign in", icon=":material/login:", on_click=st.login, type="primary")


def no_access() -> None:
    st.title("No access yet")
    if identity.problem:
        st.warning(identity.problem)
        return
    st.warning(
        f"You are signed in as {untrusted_label(identity.name)}, but no role is assigned to you. Ask an admin to "
        "add your email or domain to WORKBENCH_ROLES (" + "; ".join(f"{r}: {d}" for r, d in ROLE_LABELS.items()) + ")."
    )


try:
    settings = get_settings()
    get_engine(settings)  # applies migrations once per process
except ConfigError as exc:  # fail closed: unreadable settings never mean "no sign-in" or "no limit"
    stop_misconfigured(exc)

note_app_run()
identity = current_identity()
here = Path(__file__).parent
sections: dict[str, list] = {}
for path, title, icon, section in PAGES:
    if (here / path).exists() and identity.may_open(path):
        default = not sections  # the first page the user may open is the home page
        sections.setdefault(section, []).append(st.Page(path, title=title, icon=icon, default=default))
if auth_enabled() and not identity.signed_in:
    nav = st.navigation([st.Page(sign_in, title="Sign in", icon=":material/login:")])
elif not sections:
    nav = st.navigation([st.Page(no_access, title="No access", icon=":material/block:")])
else:
    nav = st.navigation(sections)

with st.sidebar:
    st.text(clean_name(identity.name))  # plain text, never markdown: a name from the sign-in provider
    if identity.signed_in:
        st.caption("Roles: " + (", ".join(sorted(identity.roles)) or "none"))
        st.button("Sign out", icon=":material/logout:", on_click=st.logout)
    elif not auth_enabled():
        st.caption("Sign-in is off: everyone here is the local user with every role.")
    st.caption(f"Default model: `{settings.default_model}`")
    if settings.default_model.startswith("offline/"):
        st.caption("No model is configured, so answers are offline extracts. See the README to add one.")

try:
    run_guarded(nav.run)
finally:  # also after st.stop or st.rerun: the page is drawn, so what the services run beside it may start
    first_run.resume()
    run_guarded(start_background)
