"""PostgreSQL: a role that may read only the usage views, for the assistant's `query_usage` tool.

`query_usage` switches to this role (`SET LOCAL ROLE`) inside its READ ONLY transaction, so the database itself
refuses the raw call log, every other table and the superuser-only functions (pg_read_file), not only the SQL
parser in front of it. Creating a role needs the CREATEROLE privilege: where the migrating user lacks it (some
managed databases), the migration goes on without the role and the tool keeps its other guards; the role's absence
is reported by `lib.assistant.usage_sql.reader_role_present`. SQLite needs nothing: its connection is read-only and
guarded by an authorizer.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ROLE = "workbench_usage_reader"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Roles belong to the whole server: several workbench databases on one server share it.
    op.execute(
        f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE;
    END IF;
    EXECUTE format('GRANT {ROLE} TO %I', current_user);
    GRANT USAGE ON SCHEMA public TO {ROLE};
    GRANT SELECT ON usage_calls, usage_tool_calls TO {ROLE};
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'query_usage runs without its own role: the migrating user may not create roles';
END
$$;
"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        REVOKE SELECT ON usage_calls, usage_tool_calls FROM {ROLE};
        REVOKE USAGE ON SCHEMA public FROM {ROLE};
    END IF;
END
$$;
"""
    )
