"""SQL that migrations run, frozen as it was generated when each migration was written.

A migration must do the same thing whenever it runs: on a database created today and on one upgraded years later.
The rollup migrations (0013, 0015) build long generated DDL (tables, backfills, triggers for two dialects) from
lib/core/rollups.py; run from the live module, a later change to it would silently change what those migrations
build, and the migration written for that change would then find its work already done, or half done. So each keeps
the SQL it ran in a file here, one statement per line, in sections (`-- create`, `-- drop`), for `sqlite` and
`postgresql`. tests/test_migrations_frozen.py checks that the newest of them still equals what lib/core/rollups.py
builds, i.e. that the app's queries and the schema the migrations build agree.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def statements(name: str, dialect: str, section: str) -> list[str]:
    """The statements of `section` in the frozen file `name` for `dialect` (PostgreSQL's, or else SQLite's, as
    lib/core/rollups.py decides)."""
    path = FOLDER / f"{name}_{'postgresql' if dialect == 'postgresql' else 'sqlite'}.sql"
    current, found = None, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-- "):
            current = line[3:].split(":", 1)[0].strip()
            found[current] = []
        elif line.strip():
            if current is None:
                raise ValueError(f"{path.name}: a statement before any section")
            found[current].append(line)
    if section not in found:
        raise KeyError(f"{path.name} has no section {section!r}")
    return found[section]


def render(sections: dict[str, tuple[str, list[str]]]) -> str:
    """A frozen file's text: each section's `-- name: what it does` line, then its statements, one a line."""
    out = []
    for name, (about, stmts) in sections.items():
        if any("\n" in s for s in stmts):
            raise ValueError("a frozen statement must fit on one line")
        out += [f"-- {name}: {about}", *stmts, ""]
    return "\n".join(out)
