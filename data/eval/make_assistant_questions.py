"""Writes data/eval/assistant_questions.json: questions for the assistant over the shipped demo usage data
(lib/usage/demo.py with a fixed seed and end date) and the license texts in /usr/share/common-licenses, each with
the tool calls a good model makes and the figures the tool results and the answer must carry.

The expected figures are computed here from the call-log rows in plain Python (not with the SQL the questions
run), so the check does not grade the SQL with itself. Run: `.venv/bin/python data/eval/make_assistant_questions.py`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lib.usage.demo import generate_calls  # noqa: E402

DEMO = {"calls": 3000, "days": 30, "end": "2026-11-02T00:00:00+00:00", "seed": 7}
LICENSE_QUESTIONS = [
    "apache-01", "apache-06", "gpl3-01", "gpl3-05", "gpl2-01", "gpl2-06", "lgpl21-01", "lgpl21-04", "lgpl3-01",
    "mpl-01", "mpl-05", "artistic-02", "bsd-01", "cc0-01", "cc0-06", "gfdl-05",
]  # fmt: skip
WEEK = ("2026-10-19", "2026-10-26")  # Monday to Monday
PREV = ("2026-10-12", "2026-10-19")


def q(qid: str, question: str, steps: list[list[dict]], figures: list, **extra) -> dict:
    kind = extra.pop("kind", "usage")
    question = in_period(question) if kind == "usage" else question
    return {"id": qid, "kind": kind, "question": question, "steps": steps, "figures": figures, **extra}


PERIOD = "created_at < '2026-11-02'"  # the demo's rows; the assistant's own calls come later


def usage(sql: str) -> dict:
    """A query_usage call over the demo period: its WHERE (or a new one) also keeps to PERIOD."""
    if " WHERE " in sql:
        sql = sql.replace(" WHERE ", f" WHERE {PERIOD} AND ", 1)
    else:
        for key in (" GROUP BY ", " ORDER BY ", " LIMIT "):
            if key in sql:
                sql = sql.replace(key, f" WHERE {PERIOD}{key}", 1)
                break
        else:
            sql = f"{sql} WHERE {PERIOD}"
    return {"name": "query_usage", "args": {"sql": sql}}


def in_period(question: str) -> str:
    """The question, said for the demo period."""
    return f"In the demo period (before 2026-11-02): {question[0].lower()}{question[1:]}"


def calc(expression: str) -> dict:
    return {"name": "calculator", "args": {"expression": expression}}


def r2(x: float) -> float:
    return round(x + 0.0, 2)


def main() -> None:
    end = datetime.fromisoformat(DEMO["end"])
    rows = list(generate_calls(DEMO["calls"], DEMO["days"], end, DEMO["seed"]))
    cost = lambda rs: sum(r["cost_usd"] or 0 for r in rs)  # noqa: E731
    day = lambda r: r["created_at"].strftime("%Y-%m-%d")  # noqa: E731
    by = lambda key, rs=rows: Counter(r[key] for r in rs)  # noqa: E731
    out: list[dict] = []

    out.append(
        q(
            "u01",
            "How many model calls are in the call log?",
            [[usage("SELECT count(*) AS calls FROM usage_calls")]],
            [len(rows)],
        )
    )
    spend = defaultdict(float)
    for r in rows:
        spend[r["feature"]] += r["cost_usd"] or 0
    top = max(spend, key=spend.get)
    out.append(
        q(
            "u02",
            "Which feature cost the most in total, and how much?",
            [
                [
                    usage(
                        "SELECT feature, round(sum(cost_usd), 2) AS cost FROM usage_calls GROUP BY feature ORDER BY cost DESC LIMIT 1"
                    )
                ]
            ],
            [top, r2(spend[top])],
        )
    )
    out.append(
        q(
            "u03",
            "How many calls ended with an error?",
            [[usage("SELECT count(*) AS errors FROM usage_calls WHERE status = 'error'")]],
            [by("status")["error"]],
        )
    )
    errs = Counter(r["error_type"] for r in rows if r["status"] == "error")
    et, en = errs.most_common(1)[0]
    out.append(
        q(
            "u04",
            "What is the most common error type among failed calls, and how often did it happen?",
            [
                [
                    usage(
                        "SELECT error_type, count(*) AS n FROM usage_calls WHERE status = 'error' GROUP BY error_type ORDER BY n DESC LIMIT 1"
                    )
                ]
            ],
            [et, en],
        )
    )
    m, mn = by("model").most_common(1)[0]
    out.append(
        q(
            "u05",
            "Which model handled the most calls?",
            [[usage("SELECT model, count(*) AS n FROM usage_calls GROUP BY model ORDER BY n DESC LIMIT 1")]],
            [m, mn],
        )
    )
    out.append(
        q(
            "u06",
            "What was the total spend in dollars over the whole period?",
            [[usage("SELECT round(sum(cost_usd), 2) AS spend FROM usage_calls")]],
            [r2(cost(rows))],
        )
    )
    out.append(
        q(
            "u07",
            "How many different people used the workbench?",
            [[usage("SELECT count(DISTINCT user_name) AS users FROM usage_calls")]],
            [len(by("user"))],
        )
    )
    per_user = defaultdict(float)
    for r in rows:
        per_user[r["user"]] += r["cost_usd"] or 0
    tu = max(per_user, key=per_user.get)
    out.append(
        q(
            "u08",
            "Who spent the most, and how much?",
            [
                [
                    usage(
                        "SELECT user_name, round(sum(cost_usd), 2) AS cost FROM usage_calls GROUP BY user_name ORDER BY cost DESC LIMIT 1"
                    )
                ]
            ],
            [tu, r2(per_user[tu])],
        )
    )
    out.append(
        q(
            "u09",
            "How many calls have no price (their cost is unknown)?",
            [[usage("SELECT count(*) AS unpriced FROM usage_calls WHERE cost_usd IS NULL")]],
            [sum(1 for r in rows if r["cost_usd"] is None)],
        )
    )
    emb = [r for r in rows if r["feature"] == "embed"]
    out.append(
        q(
            "u10",
            "How many input tokens did embedding calls use in total?",
            [[usage("SELECT sum(prompt_tokens) AS tokens FROM usage_calls WHERE feature = 'embed'")]],
            [sum(r["prompt_tokens"] for r in emb)],
        )
    )
    lat = [r["latency_ms"] for r in rows if r["model"] == "openai/gpt-4.1" and r["status"] == "ok"]
    out.append(
        q(
            "u11",
            "What is the average latency in milliseconds of successful openai/gpt-4.1 calls?",
            [
                [
                    usage(
                        "SELECT round(avg(latency_ms), 0) AS ms FROM usage_calls WHERE model = 'openai/gpt-4.1' AND status = 'ok'"
                    )
                ]
            ],
            [round(sum(lat) / len(lat))],
        )
    )
    out.append(
        q(
            "u12",
            "How many answers were served from the cache?",
            [[usage("SELECT count(*) AS cached FROM usage_calls WHERE status = 'cached'")]],
            [by("status")["cached"]],
        )
    )
    out.append(
        q(
            "u13",
            "How many calls did a budget block?",
            [[usage("SELECT count(*) AS blocked FROM usage_calls WHERE status = 'blocked'")]],
            [by("status")["blocked"]],
        )
    )
    wk = r2(cost([r for r in rows if WEEK[0] <= day(r) < WEEK[1]]))
    pv = r2(cost([r for r in rows if PREV[0] <= day(r) < PREV[1]]))
    change = round((wk - pv) / pv * 100, 2)
    out.append(
        q(
            "u14",
            f"How much did we spend in the week from {WEEK[0]} to 2026-10-25, compared with the week "
            "before, and what is the change in percent?",
            [
                [
                    usage(
                        f"SELECT round(sum(CASE WHEN created_at >= '{WEEK[0]}' AND created_at < '{WEEK[1]}' THEN cost_usd END), 2) AS this_week, "
                        f"round(sum(CASE WHEN created_at >= '{PREV[0]}' AND created_at < '{PREV[1]}' THEN cost_usd END), 2) AS week_before "
                        "FROM usage_calls"
                    )
                ],
                [calc(f"round(({wk} - {pv}) / {pv} * 100, 2)")],
            ],
            [wk, pv, change],
        )
    )
    ab = {v: r2(cost([r for r in rows if r["variant"] == v])) for v in ("A", "B")}
    out.append(
        q(
            "u15",
            "In the A/B test runs, what did variant A cost and what did variant B cost?",
            [
                [
                    usage(
                        "SELECT variant, round(sum(cost_usd), 2) AS cost FROM usage_calls WHERE variant IS NOT NULL GROUP BY variant ORDER BY variant"
                    )
                ]
            ],
            [ab["A"], ab["B"]],
        )
    )
    chat = [r for r in rows if r["feature"] == "chat"]
    ds = sum(1 for r in chat if r["model"] == "deepseek/deepseek-chat")
    out.append(
        q(
            "u16",
            "What share of chat calls, in percent, went to deepseek/deepseek-chat?",
            [
                [
                    usage(
                        "SELECT sum(CASE WHEN model = 'deepseek/deepseek-chat' THEN 1 ELSE 0 END) AS deepseek, count(*) AS chat FROM usage_calls WHERE feature = 'chat'"
                    )
                ],
                [calc(f"round({ds} / {len(chat)} * 100, 2)")],
            ],
            [ds, len(chat), round(ds / len(chat) * 100, 2)],
        )
    )
    bd, bn = Counter(day(r) for r in rows).most_common(1)[0]
    out.append(
        q(
            "u17",
            "Which day had the most calls, and how many?",
            [
                [
                    usage(
                        "SELECT date(created_at) AS day, count(*) AS n FROM usage_calls GROUP BY day ORDER BY n DESC LIMIT 1"
                    )
                ]
            ],
            [bd, bn],
        )
    )
    out.append(
        q(
            "u18",
            "How many calls ran version 4 of the rag.answer template?",
            [
                [
                    usage(
                        "SELECT count(*) AS n FROM usage_calls WHERE template_name = 'rag.answer' AND template_version = 4"
                    )
                ]
            ],
            [sum(1 for r in rows if r["template_name"] == "rag.answer" and r["template_version"] == 4)],
        )
    )
    out.append(
        q(
            "u19",
            "How many prompt tokens were read from the provider's cache in total?",
            [[usage("SELECT sum(cached_tokens) AS cached_tokens FROM usage_calls")]],
            [sum(r["cached_tokens"] for r in rows)],
        )
    )
    cm = cost([r for r in rows if r["feature"] == "chat"])
    out.append(
        q(
            "u20",
            "What did one chat call cost on average, in dollars (four decimals)?",
            [
                [
                    usage(
                        "SELECT round(sum(cost_usd), 4) AS cost, count(*) AS n FROM usage_calls WHERE feature = 'chat'"
                    )
                ],
                [calc(f"round({round(cm, 4)} / {len(chat)}, 4)")],
            ],
            [round(cm, 4), len(chat), round(round(cm, 4) / len(chat), 4)],
        )
    )
    out.append(q("c01", "What is 17.5% of 2,480?", [[calc("2480 * 17.5 / 100")]], [434], kind="calculator"))
    out.append(q("c02", "What is today's date?", [[{"name": "today", "args": {}}]], ["{today}"], kind="today"))

    evals = {e["id"]: e for e in json.loads((ROOT / "data" / "eval" / "license_qa.json").read_text())["questions"]}
    for qid in LICENSE_QUESTIONS:
        e = evals[qid]
        search = {"name": "search_documents", "args": {"collection": "licenses", "query": e["question"], "k": 5}}
        out.append(q(f"d-{qid}", e["question"], [[search]], [e["evidence"]], kind="documents", document=e["document"]))

    doc = {
        "description": "Assistant questions over the demo usage data (lib/usage/demo.py, settings in 'demo') and the "
        "license texts of /usr/share/common-licenses (collection 'licenses'); each with the tool calls a good model "
        "makes, step by step, and the figures the tool results and the final answer must carry. Written by "
        "make_assistant_questions.py; scored by tests/test_assistant_eval.py.",
        "demo": DEMO,
        "collection": {
            "name": "licenses",
            "source_dir": "/usr/share/common-licenses",
            "documents": sorted({x["document"] for x in out if x.get("document")}),
        },
        "questions": out,
    }
    path = ROOT / "data" / "eval" / "assistant_questions.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"{len(out)} questions -> {path}")


if __name__ == "__main__":
    main()
