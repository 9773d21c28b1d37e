"""Who may read what of a logged call: its text (prompt, response, error message) only for admins and the caller.

Everyone who may open Usage sees a call's metadata: time, user, feature, model, tokens, cost, latency, status and
error type. The queries take a Viewer and leave the text columns out of the SQL for a viewer who may not read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.core.identity import Identity

# Columns whose text comes from users, documents or models (an error message can quote the prompt).
CONTENT_COLUMNS = ("prompt", "response", "error_message")
# The free-form "metadata" column is read whole only with the content; otherwise only these keys, which the
# gateway writes as types, counts, ids and model names (a feature's own keys, such as a chat's collection, are not).
OPERATIONAL_META_KEYS = (
    "fallback_from",
    "degraded_from",
    "primary_error",
    "retry_of",
    "tokens_estimated",
    "redacted_items",
    "texts",
)
HIDDEN_CONTENT_NOTE = (
    "Prompt, response and error text are shown only to admins and to the person who made the call; "
    "you see its metadata."
)


@dataclass(frozen=True)
class Viewer:
    """Who looks at the call log: their name as the call log records it (`user`), and whether they are an admin.

    Hashable, so a cached query result is kept per viewer.
    """

    name: str
    admin: bool = False

    def may_read(self, user: str | None) -> bool:
        """True when this viewer may read the text of a call that `user` made."""
        return self.admin or (bool(self.name) and user == self.name)


def viewer_of(identity: Identity) -> Viewer:
    """The Viewer for a signed-in (or local) identity: the call log records calls under Identity.name."""
    return Viewer(name=identity.name, admin="admin" in identity.roles)
