"""Identity and roles: who the user is, what they may open. Pure logic; Streamlit's login lives in ui_resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("staff", "author", "reviewer", "manager", "admin")
ROLE_LABELS = {
    "staff": "Chat and Documents",
    "author": "Prompts, Compare and Pipelines",
    "reviewer": "Review: approve, edit or reject pipeline rows held at a review gate",
    "manager": "Usage",
    "admin": "Settings: providers, prices, budgets",
}
PAGE_ROLES = {
    "pages/chat.py": "staff",
    "pages/documents.py": "staff",
    "pages/prompts.py": "author",
    "pages/compare.py": "author",
    "pages/pipelines.py": "author",
    "pages/review.py": "reviewer",
    "pages/usage.py": "manager",
    "pages/admin.py": "admin",
}


@dataclass(frozen=True)
class Identity:
    """The person using the app and their roles."""

    name: str  # shown, and written to the call log: the verified email, or the local user's name
    email: str | None  # verified (unverified addresses grant nothing and are not kept here)
    roles: frozenset[str]
    signed_in: bool  # through OIDC; False for the local user when sign-in is off
    key: str = ""  # whose data this is (conversations): the provider's issuer and subject, never the email
    problem: str | None = None  # why a signed-in user has no roles although the map may name them

    @property
    def owner(self) -> str:
        """The key that owns this person's data (the name for the local user)."""
        return self.key or self.name

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


def signed_in_identity(
    user: Mapping[str, object], role_map: Mapping[str, tuple[str, ...]], require_verified_email: bool = True
) -> Identity:
    """An OIDC user (st.user's claims) with roles from the map.

    Roles are granted only to an email the provider says it verified (`email_verified` true), unless
    `require_verified_email` is off for a provider that never sends the claim. The user's data is keyed by the
    provider's issuer and subject, which no one else can claim, not by the email.
    """
    raw_email = str(user.get("email") or "").strip() or None
    verified = user.get("email_verified") in (True, "true", "True")
    subject, issuer = str(user.get("sub") or ""), str(user.get("iss") or "")
    key = f"oidc:{issuer}|{subject}" if subject else ""
    problem = None
    email = raw_email
    if raw_email and require_verified_email and not verified:
        email = None
        problem = (
            f"Your identity provider has not verified the address {raw_email}, so no roles are granted for it. "
            "Verify it with your provider, then sign in again."
        )
    if not key:  # a provider without a subject claim: nothing stable to own data by
        problem = (
            problem or "Your identity provider sent no subject (sub) claim, so the workbench cannot tell who you are."
        )
    name = email or raw_email or str(user.get("name") or subject or "unknown")
    roles = roles_for(email, role_map) if key else frozenset()
    return Identity(name=name, email=email, roles=roles, signed_in=True, key=key, problem=problem)


def not_allowed_message(identity: Identity, page: str) -> str:
    """What a user without the page's role is told."""
    needed = PAGE_ROLES.get(page, "?")
    have = ", ".join(sorted(identity.roles)) or "none"
    return (
        f"Not allowed: this page needs the {needed!r} role ({ROLE_LABELS.get(needed, '')}). You are signed in as "
        f"{identity.name} with roles: {have}. Ask an admin to add you to WORKBENCH_ROLES."
    )
