"""Prompt-injection screening: detection and false positives on data/eval/injection_eval.json, against the single
regular expression the workbench screened with before (copied below), run on the same texts in the same run.

Run: .venv/bin/python bench/injection.py   (last line: one JSON object)
Targets: detection >= 0.9 and false positives <= 2%, on the dev split (patterns were tuned on it) and the held-out
split (measured, not tuned on) each.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.documents.screening import injection_reasons

EVAL_SET = ROOT / "data" / "eval" / "injection_eval.json"
DETECTION_TARGET, FALSE_POSITIVE_TARGET = 0.9, 0.02

# The screen before issue 12 item 10 (lib/documents/indexing.py at 9e9ade9), kept here as the baseline.
OLD_INJECTION = re.compile(
    r"(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+)?(previous|prior|above|earlier|preceding)\s+"
    r"(instructions?|prompts?|rules|directions)|"
    r"(^|\n)\s*(system|assistant)\s*:|<\|?(im_start|system|endoftext)\|?>|\byou are now\b|"
    r"\bnew instructions\s*:|\bdo not (tell|inform) the user\b|[\u200b\u200c\u200d\u2060\ufeff]{3,}",
    re.IGNORECASE,
)


def old_screen(text: str) -> bool:
    return bool(OLD_INJECTION.search(text))


def new_screen(text: str) -> bool:
    return bool(injection_reasons(text))


def rates(cases: list[dict], screen) -> dict[str, float]:
    """Detection (share of injections flagged) and false-positive rate (share of ordinary passages flagged)."""
    injections = [c["text"] for c in cases if c["injection"]]
    ordinary = [c["text"] for c in cases if not c["injection"]]
    return {
        "detection": sum(map(screen, injections)) / len(injections),
        "false_positives": sum(map(screen, ordinary)) / len(ordinary),
        "injections": len(injections),
        "ordinary": len(ordinary),
    }


def main() -> None:
    cases = json.loads(EVAL_SET.read_text())
    splits = {
        "dev": [c for c in cases if c["split"] == "dev"],
        "held_out": [c for c in cases if c["split"] == "held_out"],
    }
    splits["all"] = cases
    started = time.perf_counter()
    ours = {name: rates(part, new_screen) for name, part in splits.items()}
    spent = time.perf_counter() - started
    old = {name: rates(part, old_screen) for name, part in splits.items()}
    print(f"{'split':9s} {'n inj':>5s} {'n ok':>5s} {'detect':>7s} {'FP':>6s} {'old detect':>10s} {'old FP':>7s}")
    for name in splits:
        o, b = ours[name], old[name]
        print(
            f"{name:9s} {o['injections']:5d} {o['ordinary']:5d} {o['detection']:7.3f} {o['false_positives']:6.3f} "
            f"{b['detection']:10.3f} {b['false_positives']:7.3f}"
        )
    kinds = sorted({c["form"] for c in cases if c["injection"]})
    for form in kinds:
        part = [c for c in cases if c["injection"] and c["form"] == form]
        print(
            f"  {form:12s} {len(part):4d} injections: detect {sum(new_screen(c['text']) for c in part) / len(part):.3f}"
        )
    print(f"screening {len(cases)} texts took {spent:.2f} s")
    met = all(
        ours[s]["detection"] >= DETECTION_TARGET and ours[s]["false_positives"] <= FALSE_POSITIVE_TARGET
        for s in ("dev", "held_out")
    )
    value, baseline = ours["all"]["detection"], old["all"]["detection"]
    print(
        json.dumps(
            {
                "metric": "injection detection (all cases)",
                "value": round(value, 3),
                "baseline": round(baseline, 3),
                "ratio": round(value / baseline, 2) if baseline else None,
                "target": f"detection >= {DETECTION_TARGET} and false positives <= {FALSE_POSITIVE_TARGET} on dev and held_out",
                "false_positives": round(ours["all"]["false_positives"], 3),
                "baseline_false_positives": round(old["all"]["false_positives"], 3),
                "held_out_detection": round(ours["held_out"]["detection"], 3),
                "held_out_false_positives": round(ours["held_out"]["false_positives"], 3),
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
