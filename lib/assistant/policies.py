"""Per tool and role: `auto` (runs), `confirm` (the turn pauses until the user runs, edits or denies the call) or
`off` (the model is not offered the tool). Stored in assistant_policies; tools and roles without a row use DEFAULTS.

A user with several roles gets the most permissive mode among them (as pages open to any of a user's roles).
`query_usage` is for managers and admins whatever the table says: its rows for staff and authors are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.orm import Session

from lib.core.identity import ROLES
from lib.core.tables import AssistantPolicy, utcnow

MODES = ("auto", "confirm", "off")
_RANK = {"off": 0, "confirm": 1, "auto": 2}
TOOLS = ("search_documents", "query_usage", "run_template", "calculator", "today")
# Roles a tool may ever be on for, whatever the stored policy says.
ALLOWED_ROLES: Mapping[str, frozenset[str]] = {
    "query_usage": frozenset({"manager", "admin"}),
    "run_template": frozenset({"author", "admin"}),
}
# The shipped defaults. Reading tools run on their own: they only read what the role may already see. run_template
# asks first: it is the one tool that spends money by itself (its own model call, on whatever model the template
# names) and runs text someone else wrote, so the user sees which template and values before it runs.
DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "search_documents": {"staff": "auto", "author": "auto", "manager": "auto", "admin": "auto"},
    "query_usage": {"staff": "off", "author": "off", "manager": "auto", "admin": "auto"},
    "run_template": {"staff": "off", "author": "confirm", "manager": "off", "admin": "confirm"},
    "calculator": {"staff": "auto", "author": "auto", "manager": "auto", "admin": "auto"},
    "today": {"staff": "auto", "author": "auto", "manager": "auto", "admin": "auto"},
}


class PolicyError(ValueError):
    """An unknown tool, role or mode, or a mode a role may not have for a tool."""


def policy_table(engine: Engine | Connection) -> dict[str, dict[str, str]]:
    """{tool: {role: mode}} in force: stored rows over the defaults (for the Settings page). Given a connection,
    read in its transaction (a turn reads its modes in the one that stores it)."""
    table = {tool: dict(DEFAULTS[tool]) for tool in TOOLS}
    query = select(AssistantPolicy.tool, AssistantPolicy.role, AssistantPolicy.mode)  # Core: no ORM session
    if isinstance(engine, Connection):
        rows = engine.execute(query).all()
    else:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    for tool, role, mode in rows:
        if tool in table and role in ROLES and mode in MODES:
            table[tool][role] = mode
    for tool, roles in ALLOWED_ROLES.items():
        for role in ROLES:
            if role not in roles:
                table[tool][role] = "off"
    return table


def modes_for(engine: Engine | Connection, roles: Iterable[str]) -> dict[str, str]:
    """{tool: mode} for a user with `roles`: the most permissive of their roles' modes."""
    roles = [r for r in roles if r in ROLES]
    table = policy_table(engine)
    # a role without a shipped default (a role added later) is off until a policy is stored for it
    return {
        tool: max((table[tool].get(r, "off") for r in roles), key=_RANK.__getitem__, default="off") for tool in TOOLS
    }


def set_policy(engine: Engine, tool: str, role: str, mode: str, user: str | None) -> None:
    """Store `mode` for `tool` and `role` (PolicyError when the combination is not allowed)."""
    if tool not in TOOLS:
        raise PolicyError(f"Unknown tool {tool!r}; the tools are {', '.join(TOOLS)}.")
    if role not in ROLES:
        raise PolicyError(f"Unknown role {role!r}; the roles are {', '.join(ROLES)}.")
    if mode not in MODES:
        raise PolicyError(f"A policy is one of {', '.join(MODES)}, not {mode!r}.")
    allowed = ALLOWED_ROLES.get(tool)
    if allowed is not None and role not in allowed and mode != "off":
        raise PolicyError(f"{tool} is only for the roles {', '.join(sorted(allowed))}; it stays off for {role}.")
    with Session(engine) as s, s.begin():
        row = s.get(AssistantPolicy, (tool, role))
        if row is None:
            s.add(AssistantPolicy(tool=tool, role=role, mode=mode, updated_at=utcnow(), updated_by=user))
        else:
            row.mode, row.updated_at, row.updated_by = mode, utcnow(), user


def reset_policies(engine: Engine) -> None:
    """Back to the shipped defaults."""
    with Session(engine) as s, s.begin():
        s.execute(delete(AssistantPolicy))
