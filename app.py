"""AI Workbench: navigation, page config, identity and the sidebar."""

from pathlib import Path

import streamlit as st

from lib.config import ConfigError
from lib.ui_resources import current_user, get_engine, get_settings

st.set_page_config(page_title="AI Workbench", page_icon=":material/smart_toy:", layout="wide")

# (file, title, icon, section); a page appears once its file exists.
PAGES = [
    ("pages/chat.py", "Chat", ":material/chat:", "Staff"),
    ("pages/documents.py", "Documents", ":material/description:", "Staff"),
    ("pages/prompts.py", "Prompts", ":material/edit_note:", "Prompt authors"),
    ("pages/compare.py", "Compare", ":material/compare:", "Prompt authors"),
    ("pages/usage.py", "Usage", ":material/monitoring:", "Managers"),
    ("pages/admin.py", "Settings", ":material/settings:", "Admin"),
]
here = Path(__file__).parent
sections: dict[str, list] = {}
for i, (path, title, icon, section) in enumerate(PAGES):
    if (here / path).exists():
        sections.setdefault(section, []).append(st.Page(path, title=title, icon=icon, default=i == 0))
nav = st.navigation(sections)

try:
    settings = get_settings()
    get_engine(settings)  # applies migrations once per process
except ConfigError as exc:
    st.error(f"The workbench is misconfigured: {exc}")
    st.stop()

with st.sidebar:
    st.markdown(f"**{current_user()}**")
    st.caption("Sign-in is off: everyone here is the local user with every role.")
    st.caption(f"Default model: `{settings.default_model}`")
    if settings.default_model.startswith("offline/"):
        st.caption("No model is configured, so answers are offline extracts. See the README to add one.")

nav.run()
