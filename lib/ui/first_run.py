"""The garbage collector waits while a fresh app process draws its first page.

The first script run imports most of the app (SQLAlchemy, LangChain, pydantic, the lib packages): hundreds of
thousands of new objects, which set off about four full collections in that run, each walking every object loaded
so far (~0.2 s of a ~1.5 s first draw on 2 cores, measured with gc.callbacks). `pause()` turns automatic collection
off for that one run, once per process; `resume()` (app.py calls it when the run ends, whatever way it ends, and a
timer does after RESUME_AFTER_S in any case) turns it back on, and the next collection runs beside the pages
instead of before the first paint. Nothing is freed later than it would be by reference counting; only cycles wait.
"""

from __future__ import annotations

import gc
import threading

RESUME_AFTER_S = 30.0
_lock = threading.Lock()
_state = {"paused": False, "done": False}


def pause() -> None:
    """Turn automatic collection off, the first time it is called in this process only (and only if it was on)."""
    with _lock:
        if _state["done"] or not gc.isenabled():
            _state["done"] = True
            return
        _state["done"] = _state["paused"] = True
        gc.disable()
    timer = threading.Timer(RESUME_AFTER_S, resume)
    timer.daemon = True
    timer.start()


def resume() -> None:
    """Turn automatic collection back on if `pause` turned it off (any later call does nothing)."""
    with _lock:
        if _state["paused"]:
            _state["paused"] = False
            gc.enable()
