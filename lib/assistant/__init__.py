"""The tool-using assistant: LangChain agent over the gateway, a typed tool registry, policies and guards.

For the UI (lib.ui, pages):
- `turn.start_turn(services.assistant, services, user, roles, question, history, model=...)` -> `AssistantTurn`;
  iterate it for event dicts (see turn.py: step, step_done, text, tool_call, tool_result, confirm, guard, error,
  done). When it pauses (`turn.status == "paused"`, `turn.pending`), call `turn.resume("run" | "edit" | "deny",
  args=..., reason=..., call_id=...)` and iterate it again. Keep the turn object (session state) between reruns:
  its checkpoints live in `services.assistant` (in memory, per process). With no model configured the turn's
  status is "offline" and its one event says the offline answerer cannot call tools.
- `turn.answer`, `turn.guard`, `turn.cited()` / `turn.sources` (passages, numbered as cited), `turn.tables`
  (query_usage results); `results.records(table)` and `results.time_series(table)` for the table and the chart.
- `policies.policy_table(engine)`, `policies.set_policy(engine, tool, role, mode, user)`, `reset_policies`:
  the Settings page; `policies.TOOLS`, `MODES`, `ALLOWED_ROLES`.
- `records.load_turn(engine, turn_id)` and `recent_turns(engine, user)`: replay and audit.

Imports core, gateway, documents, prompts (and nothing on its own level).
"""
