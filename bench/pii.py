"""PII and secrets on realistic text: recall per kind and false positives, against the old detector in the same run.

Set: data/eval/pii_eval.json (seven locales, written by data/eval/make_pii_eval.py). A labelled value counts as
found when one detected span of its kind covers all of it; a string counts as a false positive when anything is
detected that overlaps no labelled value. Also times redact() on a 5 kB business text.
Target: recall >= 0.97 overall and >= 0.93 for every kind; false positives <= 1% of strings.
Run: `.venv/bin/python bench/pii.py`. The last line is one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench" / "baselines")]

import pii_regex as pii_baseline  # the detector before issue 13, kept verbatim

from lib.gateway import redaction

SET = ROOT / "data" / "eval" / "pii_eval.json"
RECALL_OVERALL, RECALL_PER_KIND, MAX_FP_RATE = 0.97, 0.93, 0.01
Finder = Callable[[str], list[tuple[int, int, str]]]


def load_cases() -> list[dict[str, Any]]:
    """The evaluation set."""
    return json.loads(SET.read_text(encoding="utf-8"))


def score(find: Finder, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall per kind and overall, false-positive rate over all strings, and the misses and false alarms."""
    hits, totals = Counter(), Counter()
    misses, false_alarms = [], []
    for case in cases:
        text, spans = case["text"], find(case["text"])
        labelled = []
        for value, kind in case["pii"]:
            at = text.index(value)
            labelled.append((at, at + len(value)))
            totals[kind] += 1
            if any(k == kind and s <= at and at + len(value) <= e for s, e, k in spans):
                hits[kind] += 1
            else:
                misses.append({"kind": kind, "value": value, "text": text})
        spurious = [(text[s:e], k) for s, e, k in spans if not any(s < le and ls < e for ls, le in labelled)]
        if spurious:
            false_alarms.append({"text": text, "found": spurious})
    recall = {k: hits[k] / totals[k] for k in sorted(totals)}
    overall = sum(hits.values()) / sum(totals.values())
    return {
        "recall": recall,
        "recall_overall": overall,
        "fp_rate": len(false_alarms) / len(cases),
        "misses": misses,
        "false_alarms": false_alarms,
    }


def meets_target(result: dict[str, Any]) -> bool:
    """The targets of issue 13."""
    return (
        result["recall_overall"] >= RECALL_OVERALL
        and min(result["recall"].values()) >= RECALL_PER_KIND
        and result["fp_rate"] <= MAX_FP_RATE
    )


def business_text(cases: list[dict[str, Any]], size: int = 5000) -> str:
    """About `size` characters of the set's strings, the way a pasted e-mail thread reads."""
    out, n = [], 0
    for case in cases:
        out.append(case["text"])
        n += len(case["text"]) + 1
        if n >= size:
            break
    return "\n".join(out)[:size]


def time_ms(fn: Callable[[], object], repeat: int = 30) -> float:
    """Median wall time of fn in milliseconds."""
    fn()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main() -> None:
    cases = load_cases()
    now, before = score(redaction.find_pii, cases), score(pii_baseline.find_pii, cases)
    print(f"{len(cases)} strings, {sum(len(c['pii']) for c in cases)} labelled values")
    print(f"{'kind':8} {'baseline':>9} {'now':>9}")
    for kind in now["recall"]:
        print(f"{kind:8} {before['recall'][kind]:9.3f} {now['recall'][kind]:9.3f}")
    print(f"{'overall':8} {before['recall_overall']:9.3f} {now['recall_overall']:9.3f}")
    print(f"{'FP rate':8} {before['fp_rate']:9.3f} {now['fp_rate']:9.3f}")
    for miss in now["misses"][:15]:
        print("miss", miss["kind"], repr(miss["value"]), "in", repr(miss["text"][:120]))
    for fa in now["false_alarms"][:15]:
        print("false alarm", fa["found"], "in", repr(fa["text"][:120]))
    text = business_text(cases)
    t_now = time_ms(lambda: redaction.find_pii(text))
    redaction.pii_numbers.phone_spans.cache_clear()
    t_cold = time_ms(lambda: (redaction.pii_numbers.phone_spans.cache_clear(), redaction.find_pii(text)))
    t_before = time_ms(lambda: pii_baseline.find_pii(text))
    print(
        f"redact() on {len(text)} characters: {t_cold:.1f} ms (phone cache cold), {t_now:.1f} ms (warm, as when"
        f" a conversation is sent again), baseline {t_before:.1f} ms"
    )
    worst = min(now["recall"].values())
    print(
        json.dumps(
            {
                "metric": "pii_recall_overall",
                "value": round(now["recall_overall"], 4),
                "baseline": round(before["recall_overall"], 4),
                "ratio": round(now["recall_overall"] / before["recall_overall"], 3),
                "target": RECALL_OVERALL,
                "met": meets_target(now),
                "min_kind_recall": round(worst, 4),
                "fp_rate": round(now["fp_rate"], 4),
                "baseline_fp_rate": round(before["fp_rate"], 4),
                "redact_5kb_ms": round(t_cold, 2),
                "baseline_redact_5kb_ms": round(t_before, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
