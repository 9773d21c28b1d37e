"""`python -m lib.cli demo-usage` writes synthetic calls into a marked demo dir, never into real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from lib.cli.main import main
from lib.core.db import make_engine
from lib.core.tables import LlmCall
from lib.usage.demo import DEMO_MARKER

ROOT = Path(__file__).resolve().parent.parent


def count_calls(path: Path) -> tuple[int, int, int]:
    engine = make_engine(f"sqlite:///{path / 'workbench.db'}")
    with engine.connect() as c:
        t = LlmCall.__table__.c
        got = c.execute(
            select(
                func.count(),
                func.count(func.distinct(t.user)),
                func.sum(t.cost_usd.is_(None).cast(LlmCall.__table__.c.prompt_tokens.type)),
            )
        ).one()
    engine.dispose()
    return tuple(got)


def test_demo_usage_writes_the_asked_number_of_calls_into_a_marked_dir(tmp_path, capsys):
    target = tmp_path / "demo"
    assert main(["demo-usage", "--days", "5", "--calls", "300", "--data-dir", str(target)]) == 0
    assert (target / DEMO_MARKER).exists()
    calls, users, unpriced = count_calls(target)
    assert calls == 300 and users > 5 and unpriced > 0  # realistic: many users, some unpriced calls
    assert "WORKBENCH_DATA_DIR=" in capsys.readouterr().out


def test_demo_usage_refuses_a_directory_with_real_data(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "workbench.db").write_bytes(b"")
    assert main(["demo-usage", "--calls", "10", "--data-dir", str(real)]) == 2
    assert "not demo data" in capsys.readouterr().err
    assert not (real / DEMO_MARKER).exists()


def test_demo_usage_runs_as_a_module_with_help():
    out = subprocess.run(
        [sys.executable, "-m", "lib.cli", "demo-usage", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "--calls" in out and "--days" in out


def test_demo_calls_use_the_features_templates_and_error_types_real_calls_log():
    from datetime import UTC, datetime

    from lib.compare.runs import JUDGE_FEATURE, RUN_FEATURE
    from lib.gateway import errors
    from lib.prompts.builtin import BUILTINS
    from lib.usage.demo import USER_TEMPLATE, generate_calls

    real_errors = {
        cls.error_type
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.GatewayError)
    }
    builtin = set(BUILTINS)
    calls = list(generate_calls(3000, 30, datetime(2026, 3, 1, tzinfo=UTC)))
    assert {c["feature"] for c in calls} == {"chat", "embed", "prompts", RUN_FEATURE, JUDGE_FEATURE}
    app_templates = {c["template_name"] for c in calls if c["feature"] in ("chat", RUN_FEATURE)}
    assert app_templates <= builtin and app_templates  # before: "rag-answer", which no real call logs
    assert {c["template_name"] for c in calls if c["feature"] == "prompts"} == {USER_TEMPLATE}
    error_types = {c["error_type"] for c in calls if c["status"] in ("error", "blocked")}
    assert len(error_types) > 2 and error_types <= real_errors  # before: "RateLimitError", "Timeout", …
    assert {c["error_type"] for c in calls if c["status"] == "blocked"} == {errors.BudgetExceeded.error_type}
