"""Identity and roles: who the user is, what they may open. Pure logic; Streamlit's login lives in ui_resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("staff", "author", "manager", "admin")
ROLE_LABELS = {
    "staff": "Chat and Documents",
    "author": "Prompts and Compare",
    "manager": "Usage",
    "admin": "Settings: providers, prices, budgets",
}
PAGE_ROLES = {
    "pages/chat.py": "staff",
    "pages/documents.py": "staff",
    "pages/prompts.py": "author",
    "pages/compare.py": "author",
    "pages/usage.py": "manager",
    "pages/admin.py": "admin",
}


@dataclass(frozen=True)
class Identity:
    """The person using the app and their roles."""

    name: str
    email: str | None
    roles: frozenset[str]
    signed_in: bool  # through OIDC; False for the local user when sign-in is off

    def may_open(self, page: str) -> bool:
        """True when the page's role is among the user's (admins may open everything)."""
        needed = PAGE_ROLES.get(page)
        return needed is None or needed in self.roles or "admin" in self.roles


def roles_for(email: str | None, role_map: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """Roles from the map: the exact email, then '@domain', then '*' (everyone signed in); unknown names dropped."""
    if not email:
        return frozenset()
    email = email.strip().lower()
    domain = "@" + email.rsplit("@", 1)[-1] if "@" in email else None
    roles: set[str] = set()
    for key, granted in role_map.items():
        k = key.strip().lower()
        if k == email or (domain and k == domain) or k == "*":
            roles.update(r for r in granted if r in ROLES)
    return frozenset(roles)


def local_identity(name: str) -> Identity:
    """With sign-in off: the one local user, with every role."""
    return Identity(name=name, email=None, roles=frozenset(ROLES), signed_in=False)


def signed_in_identity(user: Mapping[str, object], role_map: Mapping[str, tuple[str, ...]]) -> Identity:
    """An OIDC user (st.user's claims) with roles from the map."""
    email = str(user.get("email") or "") or None
    name = str(user.get("name") or email or user.get("sub") or "unknown")
    return Identity(name=email or name, email=email, roles=roles_for(email, role_map), signed_in=True)


def not_allowed_message(identity: Identity, page: str) -> str:
    """What a user without the page's role is told."""
    needed = PAGE_ROLES.get(page, "?")
    have = ", ".join(sorted(identity.roles)) or "none"
    return (
        f"Not allowed: this page needs the {needed!r} role ({ROLE_LABELS.get(needed, '')}). You are signed in as "
        f"{identity.name} with roles: {have}. Ask an admin to add you to WORKBENCH_ROLES."
    )
