"""Unexpected errors on a page: logged with an id for the admin; the visitor sees the id, never a traceback
(tracebacks name hosts, ports and paths). Streamlit's own `client.showErrorDetails = "none"` covers the rest."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import streamlit as st

log = logging.getLogger("workbench.ui")


class UnexpectedError(Exception):
    """Shown in place of an unexpected error: an apology and the id under which the server log has the details."""


def error_notice(error_id: str) -> str:
    """What a visitor reads when a page fails unexpectedly."""
    return (
        f"Something went wrong on our side (error id {error_id}). Try again; if it keeps happening, give the id "
        "to your admin, who finds the details in the server log."
    )


def run_guarded(run: Callable[[], object]) -> None:
    """Run a page; an unexpected exception is logged with a new error id and shown as that id only."""
    try:
        run()
    except Exception:  # st.stop and st.rerun are BaseExceptions and pass through
        error_id = uuid.uuid4().hex[:12]
        log.exception("unexpected error %s", error_id)
        st.exception(UnexpectedError(error_notice(error_id)))  # not raised: no traceback to show
