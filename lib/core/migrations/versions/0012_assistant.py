"""The tool-using assistant: its turns, every tool call (for replay and audit), per-tool-and-role policies, and
the read-only views its `query_usage` tool may read (the call log without prompt, response or error text).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

# What query_usage may read. No prompt, response, error_message or metadata: those may hold personal data or
# document text; `user` is renamed user_name so that no dialect needs it quoted.
USAGE_CALLS = """
CREATE VIEW usage_calls AS SELECT
    id, created_at, request_id, session_id, "user" AS user_name, feature, provider, model, template_name,
    template_version, experiment_id, variant, prompt_tokens, completion_tokens, cached_tokens, cost_usd, saved_usd,
    latency_ms, ttft_ms, status, error_type, attempts, run_id, step, pipeline_name, pipeline_version
FROM llm_calls
"""
USAGE_TOOL_CALLS = """
CREATE VIEW usage_tool_calls AS SELECT
    id, created_at, turn_id, step, tool, status, decision, result_chars, latency_ms, "user" AS user_name
FROM assistant_tool_calls
"""


def upgrade() -> None:
    op.create_table(
        "assistant_turns",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("user", sa.String(255)),
        sa.Column("roles", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # running, paused, done, stopped, error
        sa.Column("guard", sa.String(32)),  # step_cap, cost_cap, loop: the guard that stopped it
        sa.Column("guard_message", sa.Text),
        sa.Column("answer", sa.Text),
        sa.Column("steps", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_assistant_turns_created_at", "assistant_turns", ["created_at"])
    op.create_table(
        "assistant_tool_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("call_id", sa.String(128)),  # the model's tool-call id
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("arguments", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),  # ok, error, denied, refused
        sa.Column("decision", sa.String(16), nullable=False),  # auto, approved, edited, denied, off
        sa.Column("result_chars", sa.Integer, nullable=False, server_default="0"),
        sa.Column("result_preview", sa.Text),  # as WORKBENCH_LOG_CONTENT allows (redacted by default)
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Float),
        sa.Column("user", sa.String(255)),
    )
    op.create_index("ix_assistant_tool_calls_turn", "assistant_tool_calls", ["turn_id", "step"])
    op.create_index("ix_assistant_tool_calls_created_at", "assistant_tool_calls", ["created_at"])
    op.create_table(
        "assistant_policies",
        sa.Column("tool", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),  # auto, confirm, off
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("updated_by", sa.String(255)),
    )
    op.execute(USAGE_CALLS)
    op.execute(USAGE_TOOL_CALLS)


def downgrade() -> None:
    op.execute("DROP VIEW usage_tool_calls")
    op.execute("DROP VIEW usage_calls")
    op.drop_table("assistant_policies")
    op.drop_index("ix_assistant_tool_calls_created_at", "assistant_tool_calls")
    op.drop_index("ix_assistant_tool_calls_turn", "assistant_tool_calls")
    op.drop_table("assistant_tool_calls")
    op.drop_index("ix_assistant_turns_created_at", "assistant_turns")
    op.drop_table("assistant_turns")
