"""The rollup migrations run SQL frozen when they were written (lib/core/migrations/frozen), not the live generator:
these tests keep the frozen files readable and tell whoever changes lib/core/rollups.py to write a migration."""

from __future__ import annotations

import pytest

from lib.core import rollups
from lib.core.migrations import frozen
from lib.core.migrations.frozen import render, statements

MIGRATE_THE_CHANGE = (
    "lib/core/rollups.py no longer builds the rollups that migrations {name} built: the app would query a schema no "
    "migration creates. Write a migration that moves a database from the old shape to the new one, freeze the SQL "
    "it runs in lib/core/migrations/frozen/ (frozen.render), and point this test at that file."
)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("name", "create", "drop"),
    [
        ("0013_rollups", rollups.create_sql, rollups.drop_sql),
        ("0015_daily", rollups.create_daily_sql, rollups.drop_daily_sql),
    ],
)
def test_the_newest_frozen_rollup_sql_is_what_the_live_module_builds(name, create, drop, dialect):
    assert statements(name, dialect, "create") == create(dialect), MIGRATE_THE_CHANGE.format(name=name)
    assert statements(name, dialect, "drop") == drop(dialect), MIGRATE_THE_CHANGE.format(name=name)


def test_a_frozen_file_keeps_each_statement_on_its_own_line_under_its_section(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "FOLDER", tmp_path)
    text = render({"create": ("make t", ["CREATE TABLE t (a INT)", "INSERT INTO t VALUES (1)"]), "drop": ("", [])})
    (tmp_path / "9999_t_sqlite.sql").write_text(text)
    assert statements("9999_t", "sqlite", "create") == ["CREATE TABLE t (a INT)", "INSERT INTO t VALUES (1)"]
    assert statements("9999_t", "sqlite", "drop") == []
    assert statements("9999_t", "mysql", "create") == statements("9999_t", "sqlite", "create")  # as rollups.py does
    with pytest.raises(KeyError, match="no section 'upgrade'"):
        statements("9999_t", "sqlite", "upgrade")
    with pytest.raises(ValueError, match="one line"):
        render({"create": ("", ["CREATE TABLE t (\na INT)"])})
