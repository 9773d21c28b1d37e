"""A fresh app process draws the Chat page without the heavy imports it does not need (issue 18, cold start).

The page's first draw is what a user waits for: the queue (Huey, psycopg), Chroma, torch and sentence-transformers,
pandas and Streamlit's emoji catalogue load after it, when app.py's run ends (start_background), or on first use.
Each check runs in a new interpreter, as a fresh `streamlit run` would: this test process has imported them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAVY = (
    "chromadb",
    "torch",
    "sentence_transformers",
    "langchain_openai",
    "huey",
    "psycopg",
    "pandas",
    "streamlit.emojis",
    "openai",  # the gateway maps SDK errors with it: imported when a provider is called, or an error is mapped
    "transformers",
    "sklearn",
    "jsonschema",  # template output schemas: checked when a template has one
)

# Records which heavy modules are imported when app.py's run ends (the page has been drawn), then lets it go on.
SCRIPT = """
import gc, json, os, sys, threading
from streamlit.testing.v1 import AppTest
from lib.ui import first_run, resources

HEAVY = {heavy!r}
seen = {{}}
start = resources.start_background

def recording_start():
    seen["drawn_with"] = [m for m in HEAVY if m in sys.modules]
    seen["collector_on"] = gc.isenabled()
    seen["page_ran"] = "lib.chat.turn" in sys.modules
    start()
    seen["after"] = [m for m in HEAVY if m in sys.modules]

resources.start_background = recording_start
resume = first_run.resume

def recording_resume():
    seen.setdefault("collector_on_while_drawing", gc.isenabled())
    resume()

first_run.resume = recording_resume
at = AppTest.from_file({app!r}, default_timeout=120)
at.secrets["WORKBENCH_TEST"] = "1"
at.run()
seen["exception"] = [str(e.value) for e in at.exception]
seen["question_box"] = len(at.chat_input)
seen["threads"] = sorted(t.name for t in threading.enumerate())
print(json.dumps(seen), flush=True)
os._exit(0)  # the queue workers' threads would keep the interpreter alive
"""


def first_run(tmp_path: Path, **env: str) -> dict:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "OPENAI_", "DATABASE_", "CHROMA_"))
    }
    environ.update({"WORKBENCH_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **env})
    code = SCRIPT.format(heavy=HEAVY, app=str(ROOT / "app.py"))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_chat_page_is_drawn_before_the_queue_chroma_the_model_and_pandas_are_imported(tmp_path):
    seen = first_run(tmp_path, WORKBENCH_PRELOAD_EMBEDDINGS="0", WORKBENCH_APP_WORKERS="1")
    assert seen["exception"] == []
    assert seen["page_ran"] and seen["question_box"] == 1  # the Chat page was drawn, question box included
    assert seen["drawn_with"] == []  # none of the heavy modules
    assert "huey" in seen["after"]  # then the queue workers start, once the page is drawn
    assert "workbench-heartbeat" in seen["threads"], seen["threads"]  # the embedded queue consumer runs
    assert "chromadb" not in seen["after"]  # no collection yet: Chroma opens on first use
    # the garbage collector waited while the page was drawn (~0.3 s of it), and is back on once it is
    assert seen["collector_on_while_drawing"] is False and seen["collector_on"] is True


def test_with_preloading_on_the_model_starts_loading_only_once_the_page_is_drawn(tmp_path):
    seen = first_run(tmp_path, WORKBENCH_PRELOAD_EMBEDDINGS="1", WORKBENCH_APP_WORKERS="0")
    assert seen["exception"] == [] and seen["question_box"] == 1
    assert seen["drawn_with"] == []  # torch and sentence-transformers were not imported for the draw
    assert "workbench-embeddings-preload" in seen["threads"]  # the load runs in the background after it
